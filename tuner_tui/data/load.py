"""Load a dataset from a file, a folder, a `save_to_disk` folder or a hub id, as Arrow.

The happy path is `datasets.load_dataset` (memory-mapped Arrow, read in chunks). Around it:
- JSON Lines files are checked first in 16 MB chunks with pyarrow's C++ parser; only a chunk that
  fails is parsed line by line in Python, to name the bad line (file:line and a snippet) or, with
  `skip_bad_rows`, to write a copy without the bad lines. datasets would otherwise fall back to
  reading the whole file with pandas before failing.
- Text encodings: a UTF-16/32 BOM is transcoded to UTF-8; CSV, TSV and TXT that are not UTF-8 are
  read as cp1252 (or latin-1), and the encoding used is reported; invalid UTF-8 in JSON Lines is
  an error naming the byte offset.
- Files named train/validation/test (in a folder or a saved DatasetDict) keep their origin in a
  `split` column, which `split.split_dataset` respects.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
SPLIT_COLUMN = "split"
SPLIT_NAMES = {"train": "train", "validation": "validation", "valid": "validation", "val": "validation",
               "dev": "validation", "test": "test"}  # fmt: skip
_CHUNK = 16 << 20
_PARSE_BLOCK = 1 << 20  # pyarrow parses a chunk's blocks in parallel
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


@dataclass
class LoadInfo:
    """How the data was read: what `inspect` reports next to the rows."""

    source: str
    files: list[str] = field(default_factory=list)
    builder: str = ""
    encoding: str = "utf-8"
    text_mode: str | None = None  # .txt: "line" or "paragraph"
    skipped_rows: int = 0
    skipped_examples: list[str] = field(default_factory=list)
    split_origin: bool = False  # a `split` column was added from file names
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _cache_dir() -> Path:
    import datasets

    folder = Path(datasets.config.HF_DATASETS_CACHE) / "tuner_prepared"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _derived_path(path: Path, tag: str, suffix: str) -> Path:
    """A cache file derived from `path` (name keyed by its path, size and mtime)."""
    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{tag}".encode()).hexdigest()[
        :16
    ]
    return _cache_dir() / f"{path.stem}-{tag}-{key}{suffix}"


def _sniff_bom(path: Path) -> str | None:
    with open(path, "rb") as f:
        head = f.read(4)
    return next((name for bom, name in _BOMS if head.startswith(bom)), None)


def _transcode(path: Path, encoding: str) -> Path:
    """A UTF-8 copy of `path`, decoded from `encoding` in chunks (bounded memory)."""
    target = _derived_path(path, "utf8", path.suffix)
    if target.exists():
        return target
    partial = target.with_suffix(f"{target.suffix}.{os.getpid()}.part")  # ranks may race here
    with (
        open(path, encoding=encoding, newline="") as src,
        open(partial, "w", encoding="utf-8", newline="") as dst,
    ):
        while chunk := src.read(_CHUNK // 4):
            dst.write(chunk)
    os.replace(partial, target)
    return target


def _first_invalid_utf8(path: Path) -> tuple[int, int] | None:
    """(byte offset, line) of the first byte that is not valid UTF-8, or None.

    Chunks that are pure ASCII (the common case) skip decoding; lines are counted only on failure.
    """
    offset, pending = 0, b""
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            chunk = pending + block
            pending = b""
            if chunk.isascii():
                offset += len(chunk)
                continue
            try:
                chunk.decode("utf-8")
            except UnicodeDecodeError as exc:
                # a character cut by the chunk boundary is completed by the next chunk
                if exc.reason != "unexpected end of data" or len(chunk) - exc.start > 3:
                    return _line_at(path, offset + exc.start)
                pending = chunk[exc.start :]
                chunk = chunk[: exc.start]
            offset += len(chunk)
    return _line_at(path, offset) if pending else None


def _line_at(path: Path, offset: int) -> tuple[int, int]:
    """(offset, line number of the byte at `offset`)."""
    line, done = 1, 0
    with open(path, "rb") as f:
        while done < offset and (block := f.read(min(_CHUNK, offset - done))):
            line += block.count(b"\n")
            done += len(block)
    return offset, line


def _fallback_encoding(path: Path) -> str:
    """cp1252 when every byte is defined there (Windows exports), else latin-1 (decodes anything)."""
    undefined = {0x81, 0x8D, 0x8F, 0x90, 0x9D}
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            if undefined & set(chunk):
                return "latin-1"
    return "cp1252"


def _snippet(raw: bytes, limit: int = 80) -> str:
    text = raw.decode("utf-8", errors="replace").strip()
    return text if len(text) <= limit else text[:limit] + "..."


def _bad_lines(chunk: bytes, first_line: int) -> list[tuple[int, str, str]]:
    """(line number, snippet, reason) for each line of `chunk` that is not one JSON object."""
    bad = []
    for number, raw in enumerate(chunk.split(b"\n"), start=first_line):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except UnicodeDecodeError as exc:
            bad.append((number, _snippet(raw), f"invalid UTF-8 at byte {exc.start} of the line"))
            continue
        except ValueError as exc:
            bad.append((number, _snippet(raw), str(exc)))
            continue
        if not isinstance(value, dict):
            bad.append((number, _snippet(raw), f"a JSON {type(value).__name__}, not an object"))
    return bad


def _parse_json_chunk(chunk: bytes) -> None:
    """Parse a chunk of whole JSON lines with pyarrow; raises what pyarrow raises.

    Parsed in blocks of _PARSE_BLOCK bytes first, so that all cores work on it; a chunk those blocks
    refuse (a line longer than a block, types that change between blocks) is parsed again as one
    block, as datasets would, before any line is called bad.
    """
    import pyarrow as pa
    import pyarrow.json as paj

    if len(chunk) > _PARSE_BLOCK:
        try:
            paj.read_json(io.BytesIO(chunk), read_options=paj.ReadOptions(block_size=_PARSE_BLOCK))
            return
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    paj.read_json(io.BytesIO(chunk), read_options=paj.ReadOptions(block_size=len(chunk) + 1))


def _check_jsonl(path: Path, shown: str, skip_bad_rows: bool, info: LoadInfo) -> Path:
    """Validate a JSON Lines file chunk by chunk; return it, or a copy without the bad lines."""
    import pyarrow as pa

    bad_total: list[tuple[int, str, str]] = []
    good_copy: io.BufferedWriter | None = None
    target = _derived_path(path, "good", ".jsonl")
    line = 1
    with open(path, "rb") as f:
        while True:
            chunk_start = f.tell()
            chunk = f.read(_CHUNK)
            if not chunk:
                break
            chunk += f.readline()
            lines_here = chunk.count(b"\n")
            try:
                _parse_json_chunk(chunk)
                bad: list[tuple[int, str, str]] = []
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                # pyarrow also refuses valid JSON whose types change between lines; only the lines
                # Python's parser rejects are malformed (datasets handles mixed types itself).
                bad = _bad_lines(chunk, line)
            if bad and not skip_bad_rows:
                number, snippet, reason = bad[0]
                more = f" ({len(bad) - 1} more bad line(s) nearby)" if len(bad) > 1 else ""
                raise TunerError(
                    f"{shown}:{number}: is not a JSON object ({reason}): {snippet!r}{more}. Fix the line, "
                    "or skip bad lines with --skip-bad-rows (they are counted in the report)."
                )
            if bad and good_copy is None:
                partial = target.with_suffix(f".{os.getpid()}.part")  # one per process: ranks race here
                good_copy = open(partial, "wb")  # noqa: SIM115 - closed below
                _copy_prefix(path, chunk_start, good_copy)
            if good_copy is not None:
                numbers = {b[0] for b in bad}
                good_copy.write(
                    b"\n".join(
                        raw for n, raw in enumerate(chunk.split(b"\n"), start=line) if n not in numbers
                    )
                )
                if not chunk.endswith(b"\n"):
                    good_copy.write(b"\n")
            bad_total.extend(bad)
            line += lines_here
    if good_copy is None:
        return path
    good_copy.close()
    os.replace(partial, target)
    info.skipped_rows += len(bad_total)
    info.skipped_examples.extend(f"{shown}:{n}: {reason}: {snip!r}" for n, snip, reason in bad_total[:5])
    return target


def _copy_prefix(path: Path, end: int, out: io.BufferedWriter) -> None:
    """Copy the first `end` bytes of `path` (the chunks already found good) to `out`."""
    with open(path, "rb") as src:
        while end > 0:
            block = src.read(min(_CHUNK, end))
            out.write(block)
            end -= len(block)


def _text_mode(path: Path, encoding: str) -> str:
    """'paragraph' when blank lines separate documents, else 'line' (one document per line)."""
    with open(path, encoding=encoding, errors="replace") as f:
        head = f.read(1 << 16)
    return "paragraph" if any(not ln.strip() for ln in head.strip().splitlines()) else "line"


def _prepare_file(path: Path, shown: str, skip_bad_rows: bool, info: LoadInfo) -> tuple[Path, dict]:
    """The file to hand to datasets (maybe transcoded or cleaned) and extra builder kwargs."""
    if path.stat().st_size <= 4 and not path.read_bytes().strip(b"\xef\xbb\xbf\xff\xfe\x00 \r\n\t"):
        raise TunerError(f"{shown}: the file is empty. Point [data] path at a file with rows.")
    suffix = path.suffix.lower()
    kwargs: dict[str, Any] = {}
    bom = _sniff_bom(path)
    if bom in ("utf-16", "utf-32"):
        path = _transcode(path, bom)
        info.encoding = f"{bom} (byte-order mark; read through a UTF-8 copy)"
    elif bom == "utf-8-sig":
        info.encoding = "utf-8-sig (byte-order mark)"
        if suffix != ".jsonl" and suffix != ".json":
            kwargs["encoding"] = "utf-8-sig"
    if suffix in (".csv", ".tsv", ".txt") and bom is None:
        invalid = _first_invalid_utf8(path)
        if invalid is not None:
            fallback = _fallback_encoding(path)
            info.encoding = fallback
            info.notes.append(
                f"{shown}: not UTF-8 (first invalid byte at offset {invalid[0]}, line {invalid[1]}); "
                f"read as {fallback}."
            )
            kwargs["encoding"] = fallback
    if suffix == ".jsonl" or (suffix == ".json" and _is_json_lines(path)):
        if bom is None:
            invalid = _first_invalid_utf8(path)
            if invalid is not None and not skip_bad_rows:
                raise TunerError(
                    f"{shown}:{invalid[1]}: invalid UTF-8 at byte offset {invalid[0]}. JSON Lines must be "
                    "UTF-8: re-export the file as UTF-8 (a UTF-8 or UTF-16 byte-order mark is also "
                    "understood), or skip such lines with --skip-bad-rows."
                )
        path = _check_jsonl(path, shown, skip_bad_rows, info)
    elif suffix == ".json":
        kwargs.update(_json_field(path, shown))
    if suffix == ".txt":
        info.text_mode = _text_mode(path, kwargs.get("encoding", "utf-8"))
        kwargs["sample_by"] = info.text_mode
    return path, kwargs


def _is_json_lines(path: Path) -> bool:
    """A .json file holding one object per line rather than one document."""
    with open(path, "rb") as f:
        first = f.readline()
        rest = f.read(1).strip()
    try:
        return isinstance(json.loads(first), dict) and bool(rest)
    except ValueError:
        return False


def _starts_with(path: Path, prefixes: tuple[bytes, ...]) -> bool:
    with open(path, "rb") as f:
        return f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n").startswith(prefixes)


def _json_field(path: Path, shown: str) -> dict:
    """A .json file holding {"data": [...]} (or another single list key) reads that key."""
    if _starts_with(path, (b"[",)):
        return {}
    try:
        document = json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise TunerError(
            f"{shown}: invalid UTF-8 at byte offset {exc.start}; save the file as UTF-8."
        ) from None
    except ValueError as exc:
        raise TunerError(f"{shown}: is not valid JSON ({exc}).") from None
    lists = [k for k, v in document.items() if isinstance(v, list)] if isinstance(document, dict) else []
    if "data" in lists:
        return {"field": "data"}
    if len(lists) == 1:
        return {"field": lists[0]}
    raise TunerError(
        f"{shown}: a JSON object must hold the rows as a list under 'data' (found keys: "
        f"{', '.join(document) if isinstance(document, dict) else type(document).__name__})."
    )


def _load_files(files: list[Path], source: str, skip_bad_rows: bool, info: LoadInfo) -> Dataset:
    import datasets

    suffixes = sorted({f.suffix.lower() for f in files})
    if len(suffixes) != 1 or suffixes[0] not in _BUILDERS:
        by_kind = "; ".join(
            f"{s or '(no suffix)'}: {', '.join(f.name for f in files if f.suffix.lower() == s)[:120]}"
            for s in suffixes
        )
        raise TunerError(
            f"{source}: holds files of several kinds ({by_kind}). Use one kind of file per dataset, "
            f"one of {', '.join(sorted(_BUILDERS))}, or point [data] path at a single file."
        )
    builder, base_kwargs = _BUILDERS[suffixes[0]]
    info.builder = builder
    prepared: list[str] = []
    kwargs: dict[str, Any] = dict(base_kwargs)
    for file in files:
        shown = str(file)
        ready, extra = _prepare_file(file, shown, skip_bad_rows, info)
        prepared.append(str(ready))
        kwargs.update(extra)
    info.files = [str(f) for f in files]
    if builder == "csv" and skip_bad_rows:
        kwargs["on_bad_lines"] = "skip"
        info.notes.append("malformed CSV rows are skipped by the CSV reader; their count is not known")
    try:
        return datasets.load_dataset(builder, data_files=prepared, split="train", **kwargs)
    except Exception as exc:  # datasets wraps parser errors in several types
        cause = exc.__cause__ or exc
        raise TunerError(
            f"{source}: could not be read as {builder.upper()}: {cause}. Check the file's format "
            "(run `tuner inspect` on it) or convert it to JSON Lines."
        ) from None


def _split_of(name: str) -> str | None:
    stem = name.lower().split(".")[0]
    for prefix, split in SPLIT_NAMES.items():
        if stem == prefix or stem.startswith((prefix + "-", prefix + "_")):
            return split
    return None


def _with_origin(parts: dict[str, Dataset], source: str, info: LoadInfo) -> Dataset:
    """Concatenate named splits, recording each row's origin in a `split` column."""
    import datasets

    labelled = []
    for name, part in parts.items():
        if SPLIT_COLUMN in part.column_names:
            raise TunerError(
                f"{source}: the {name} files already have a '{SPLIT_COLUMN}' column, and the file names "
                "also name splits. Rename the column or the files."
            )
        labelled.append(
            part.map(
                lambda batch, n=name: {SPLIT_COLUMN: [n] * len(next(iter(batch.values())))}, batched=True
            )
        )
    info.split_origin = True
    info.notes.append(f"splits from file names: {', '.join(parts)} (kept in the '{SPLIT_COLUMN}' column)")
    return datasets.concatenate_datasets(labelled)


def _load_folder(folder: Path, skip_bad_rows: bool, info: LoadInfo) -> Dataset:
    import datasets

    if (folder / "dataset_info.json").exists() or (folder / "dataset_dict.json").exists():
        info.builder = "save_to_disk"
        loaded = datasets.load_from_disk(str(folder))
        if isinstance(loaded, datasets.DatasetDict):
            named = {SPLIT_NAMES[k]: v for k, v in loaded.items() if k in SPLIT_NAMES}
            if len(loaded) > 1 and len(named) == len(loaded):
                return _with_origin(named, str(folder), info)
            return loaded["train"] if "train" in loaded else next(iter(loaded.values()))
        return loaded
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    data_files = [p for p in files if p.suffix.lower() in _BUILDERS]
    if not data_files:
        raise TunerError(f"{folder}: the folder holds no data files ({', '.join(sorted(_BUILDERS))}).")
    splits = {f: _split_of(f.name) for f in data_files}
    if any(splits.values()):
        unnamed = [f.name for f, s in splits.items() if s is None]
        if unnamed:
            raise TunerError(
                f"{folder}: some files name a split (train/validation/test) and others do not: "
                f"{', '.join(unnamed)}. Rename them, or move them out of the folder."
            )
        _load_files(data_files, str(folder), skip_bad_rows, info)  # one kind of file, checked once
        parts: dict[str, Dataset] = {}
        for name in ("train", "validation", "test"):
            group = [f for f, s in splits.items() if s == name]
            if group:
                parts[name] = _load_files(group, str(folder), skip_bad_rows, LoadInfo(str(folder)))
        info.files = [str(f) for f in data_files]
        return _with_origin(parts, str(folder), info)
    return _load_files(data_files, str(folder), skip_bad_rows, info)


def _load_hub(path: str) -> Dataset:
    import datasets

    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0") or os.environ.get(
        "HF_DATASETS_OFFLINE", ""
    ) not in ("", "0")
    try:
        return datasets.load_dataset(path, split="train")
    except Exception as exc:
        cache = datasets.config.HF_DATASETS_CACHE
        if offline:
            raise TunerError(
                f"The data path {path} is not a local file or folder, and HF_HUB_OFFLINE is set, so it "
                f"can only load from the cache ({cache}), where it is not ({type(exc).__name__}). "
                "Download it once while online, unset HF_HUB_OFFLINE, or point [data] path at a local file."
            ) from None
        raise TunerError(
            f"The data path {path} is not a local file or folder, and loading it as a hub dataset "
            f"failed: {exc}. Check the id and your network; offline (HF_HUB_OFFLINE=1) only datasets "
            f"already in the cache ({cache}) load."
        ) from None


def load_data(
    path: str, base_dir: Path | None = None, *, skip_bad_rows: bool = False
) -> tuple[Dataset, LoadInfo]:
    """Load `path` as one memory-mapped `datasets.Dataset`, with how it was read.

    Args:
        path: A file, a folder of files, a `save_to_disk` folder, or a hub dataset id.
        base_dir: Folder that relative paths are resolved against (the recipe's folder).
        skip_bad_rows: Skip malformed JSON Lines (counted in the returned info) instead of failing.

    Returns:
        The dataset and a `LoadInfo`.

    Raises:
        TunerError: for a missing path, an empty file, malformed lines, undecodable bytes, mixed
            file kinds, or a hub id that cannot be loaded.
    """
    resolved = absolute_if_local(path, base_dir)
    local = Path(resolved)
    info = LoadInfo(source=resolved)
    if local.is_file():
        return _load_files([local], str(local), skip_bad_rows, info), info
    if local.is_dir():
        return _load_folder(local, skip_bad_rows, info), info
    if path.startswith((".", "/", "~")) or path.endswith(tuple(_BUILDERS)):
        raise TunerError(
            f"The data path {path} does not exist"
            + (f" (looked relative to {base_dir} and the current folder)" if base_dir else "")
            + ". Fix [data] path in the recipe."
        )
    info.builder = "hub"
    return _load_hub(path), info


def load_any(path: str, base_dir: Path | None = None, *, skip_bad_rows: bool = False) -> Dataset:
    """Load `path` as one `datasets.Dataset` (memory-mapped Arrow); see `load_data`."""
    return load_data(path, base_dir, skip_bad_rows=skip_bad_rows)[0]
