"""Load a dataset from a file, a folder, a `save_to_disk` folder or a hub id, as Arrow."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tuner_tui.errors import TunerError
from tuner_tui.paths import absolute_if_local

if TYPE_CHECKING:
    from datasets import Dataset

# file suffix -> (datasets builder, extra builder kwargs)
_BUILDERS: dict[str, tuple[str, dict]] = {
    ".jsonl": ("json", {}),
    ".json": ("json", {}),
    ".csv": ("csv", {}),
    ".tsv": ("csv", {"delimiter": "\t"}),
    ".parquet": ("parquet", {}),
    ".txt": ("text", {}),
}


def _load_files(files: list[Path], source: str) -> Dataset:
    import datasets

    suffixes = {f.suffix.lower() for f in files}
    if len(suffixes) != 1 or next(iter(suffixes)) not in _BUILDERS:
        raise TunerError(
            f"{source}: cannot tell how to read files with suffixes {sorted(suffixes)}. Use one "
            f"kind of file per dataset, one of {', '.join(sorted(_BUILDERS))}."
        )
    builder, kwargs = _BUILDERS[suffixes.pop()]
    if builder == "json" and files[0].suffix.lower() == ".json":
        kwargs = {**kwargs, **_json_field(files[0])}
    try:
        loaded = datasets.load_dataset(builder, data_files=[str(f) for f in files], split="train", **kwargs)
    except Exception as exc:  # datasets wraps parser errors in several types
        cause = exc.__cause__ or exc
        raise TunerError(
            f"{source}: could not be read as {builder.upper()}: {cause}. Check the file's format "
            "(run `tuner inspect` on it) or convert it to JSON Lines."
        ) from None
    return loaded


def _json_field(path: Path) -> dict:
    """A .json file holding {"data": [...]} (or another single list key) reads that key."""
    with open(path, "rb") as f:
        head = f.read(4096).lstrip()
    if head.startswith(b"["):
        return {}
    import json

    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise TunerError(f"{path}: is not valid JSON ({exc}).") from None
    lists = [k for k, v in document.items() if isinstance(v, list)] if isinstance(document, dict) else []
    if "data" in lists:
        return {"field": "data"}
    if len(lists) == 1:
        return {"field": lists[0]}
    raise TunerError(
        f"{path}: a JSON object must hold the rows as a list under 'data' (found keys: "
        f"{', '.join(document) if isinstance(document, dict) else type(document).__name__})."
    )


def load_any(path: str, base_dir: Path | None = None) -> Dataset:
    """Load `path` as one `datasets.Dataset` (memory-mapped Arrow)."""
    import datasets

    resolved = absolute_if_local(path, base_dir)
    local = Path(resolved)
    if local.is_file():
        return _load_files([local], str(local))
    if local.is_dir():
        if (local / "dataset_info.json").exists() or (local / "dataset_dict.json").exists():
            loaded = datasets.load_from_disk(str(local))
            if isinstance(loaded, datasets.DatasetDict):
                split = "train" if "train" in loaded else next(iter(loaded))
                return loaded[split]
            return loaded
        files = sorted(p for p in local.iterdir() if p.is_file() and p.suffix.lower() in _BUILDERS)
        if not files:
            raise TunerError(f"{local}: the folder holds no data files ({', '.join(sorted(_BUILDERS))}).")
        return _load_files(files, str(local))
    if path.startswith((".", "/", "~")) or path.endswith(tuple(_BUILDERS)):
        raise TunerError(
            f"The data path {path} does not exist"
            + (f" (looked relative to {base_dir} and the current folder)" if base_dir else "")
            + ". Fix [data] path in the recipe."
        )
    try:
        return datasets.load_dataset(path, split="train")
    except Exception as exc:
        raise TunerError(
            f"The data path {path} is not a local file or folder, and loading it as a hub dataset "
            f"failed: {exc}. Offline (HF_HUB_OFFLINE=1), only datasets already in the Hugging Face "
            "cache (~/.cache/huggingface) load; otherwise check the id and your network."
        ) from None
