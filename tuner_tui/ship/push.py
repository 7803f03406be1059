"""Push a run to the Hugging Face Hub: the card, the recipe and the adapter (and, when asked, the
merged model or a GGUF), through huggingface_hub's HfApi (create_repo, upload_folder).

The token comes from HF_TOKEN or the login cache (`hf auth login`), read by huggingface_hub's
`get_token`, and is handed to HfApi in memory only: it is never written to a file, an event or a
log, and the export folder that is uploaded is built in a temporary folder outside the run.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuner_tui.errors import TunerError

REPO_ID = re.compile(
    r"^(?P<owner>[A-Za-z0-9][A-Za-z0-9_.-]{0,95})/(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]{0,95})$"
)


@dataclass(frozen=True)
class Pushed:
    """What `push_run` uploaded."""

    repo: str
    url: str
    files: list[str]
    private: bool


def check_repo(repo: str) -> str:
    """`repo` as OWNER/NAME, the hub's rules for names.

    Raises:
        TunerError: anything else, with an example.
    """
    match = REPO_ID.match(repo.strip())
    bad = (
        not match
        or any(part.endswith((".", "-")) or ".." in part or "--" in part for part in match.groups())
        or match["name"].endswith(".git")
    )
    if bad:
        raise TunerError(
            f"--repo {repo!r} is not a hub repository id: write OWNER/NAME (your user or organisation, a "
            "slash, and the model's name), using letters, digits, '-', '_' and '.', e.g. --repo "
            "alice/support-intents-lora."
        )
    return repo.strip()


def _offline() -> bool:
    return any(
        os.environ.get(key, "").strip().lower() in ("1", "true", "yes", "on")
        for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _token() -> str:
    from huggingface_hub import get_token

    token = get_token()
    if not token:
        raise TunerError(
            "No Hugging Face token: set HF_TOKEN to a token with write access (huggingface.co/settings/"
            "tokens), or log in once with `hf auth login`. tuner reads it from there and never writes it "
            "anywhere."
        )
    return token


def _unreachable(repo: str, exc: BaseException) -> TunerError:
    return TunerError(
        f"Could not reach the Hugging Face Hub to push {repo} ({type(exc).__name__}): this machine seems "
        "to be offline or behind a proxy. Nothing was uploaded. Push from a machine with network access "
        "(copy the run directory there), or export here with `tuner export RUN_DIR` and upload the "
        "folder later with `hf upload OWNER/NAME FOLDER`."
    )


def push_run(
    run_dir: Path,
    repo: str,
    private: bool = False,
    merged: bool = False,
    gguf: bool = False,
    quant: str = "q8_0",
) -> Pushed:
    """Export the run into a temporary folder and upload it to `repo` (created when missing).

    Raises:
        TunerError: a bad repo id, a run that has not completed, no token, offline, or the hub
            refused (the hub's message is kept: e.g. no write access to that owner).
    """
    from tuner_tui.modeling.export import merge_and_export
    from tuner_tui.ship.card import read_run

    repo = check_repo(repo)
    facts = read_run(run_dir)  # a run that has not completed is refused before any network
    if gguf:
        from tuner_tui.ship.gguf import check_gguf_run

        check_gguf_run(facts.root, quant)
    if _offline():
        raise TunerError(
            f"HF_HUB_OFFLINE is set, so tuner cannot push {repo} to the Hugging Face Hub: nothing was "
            "uploaded. Unset HF_HUB_OFFLINE on a machine with network access and push again, or export "
            "here with `tuner export RUN_DIR` and upload the folder later with `hf upload OWNER/NAME FOLDER`."
        )
    token = _token()
    import httpx
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    network_errors = (httpx.TransportError, OfflineModeIsEnabled, ConnectionError, TimeoutError)

    with tempfile.TemporaryDirectory(prefix="tuner-push-") as scratch:
        folder = merge_and_export(facts.root, Path(scratch) / "export", merge=merged)
        if gguf:
            from tuner_tui.ship.gguf import add_gguf

            add_gguf(facts.root, folder, quant, merged_dir=folder if merged else None)
        files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        api = HfApi(token=token)
        try:
            created: Any = api.create_repo(repo_id=repo, repo_type="model", private=private, exist_ok=True)
            api.upload_folder(
                repo_id=repo,
                repo_type="model",
                folder_path=str(folder),
                commit_message=f"tuner: run {facts.run_id}",
                commit_description=f"Recipe hash {facts.env.get('recipe_hash', 'unknown')}.",
            )
        except network_errors as exc:
            raise _unreachable(repo, exc) from None
        except HfHubHTTPError as exc:
            raise TunerError(
                f"The Hugging Face Hub refused the push to {repo}: {str(exc).splitlines()[0]} Nothing "
                "more was uploaded. Check that the token can write to that owner (your user, or an "
                "organisation you belong to with write rights)."
            ) from None
    url = str(getattr(created, "url", "") or f"https://huggingface.co/{repo}")
    return Pushed(repo, url, files, private)
