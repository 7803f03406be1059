"""The `tuner` subcommands of this stage, registered on the app by `tuner_tui.cli`.

Import-light like cli.py: typer and rich at module scope, the engine inside each command.
(`tuner export` itself, with --gguf, lives in cli.py beside the other run commands.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

QUANT_HELP = (
    "GGUF type: q8_0 (default), f16, bf16, f32; k-quants (q4_k_m, q5_k_m, q6_k, ...) need llama-quantize."
)


def register(app: typer.Typer) -> None:
    """Add this stage's commands to `app`."""
    app.command(name="card")(card)
    app.command(name="push")(push)


def card(
    run_dir: Annotated[Path, typer.Argument(help="Run directory.")],
    merged: Annotated[
        bool, typer.Option("--merged", help="Describe a merged export (library transformers, not peft).")
    ] = False,
) -> None:
    """Print the model card (README.md with hub front matter) of a finished run, from its own files."""
    from tuner_tui.cli import console
    from tuner_tui.ship.card import card_for_run

    console.print(card_for_run(run_dir, merged=merged), highlight=False, soft_wrap=True)


def push(
    run_dir: Annotated[Path, typer.Argument(help="Run directory.")],
    repo: Annotated[str, typer.Option("--repo", help="Hub repository, OWNER/NAME (created when missing).")],
    private: Annotated[bool, typer.Option("--private", help="Create the repository private.")] = False,
    merged: Annotated[
        bool, typer.Option("--merged", help="Upload the merged model instead of the adapter.")
    ] = False,
    gguf: Annotated[bool, typer.Option("--gguf", help="Also upload a GGUF and an Ollama Modelfile.")] = False,
    quant: Annotated[str, typer.Option("--quant", help=QUANT_HELP)] = "q8_0",
) -> None:
    """Upload a finished run to the Hugging Face Hub: card, recipe, adapter (or --merged), --gguf.

    The token comes from HF_TOKEN or `hf auth login` and is never written anywhere."""
    from tuner_tui.cli import _quiet_libraries, console
    from tuner_tui.ship.push import push_run

    _quiet_libraries()
    with console.status(f"Exporting and uploading to {repo}..."):
        pushed = push_run(run_dir, repo, private=private, merged=merged, gguf=gguf, quant=quant)
    console.print(
        f"Pushed {len(pushed.files)} files to {pushed.repo} ({'private' if pushed.private else 'public'}): "
        f"{pushed.url}",
        highlight=False,
    )
    for name in pushed.files:
        console.print(f"  {name}", highlight=False)
