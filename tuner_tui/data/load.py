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
- What datasets reports in its own terms is said in the file's: a header without rows, UTF-16
  without a byte-order mark, a CSV row of the wrong width (file line and data row, counted past
  quoted newlines), files of a folder whose columns differ, a path that is a device or unreadable.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner_tui.data.peek import BUILDERS as _BUILDERS
from tuner_tui.data.peek import TEXT_SUFFIXES, Header, check_not_utf16, json_syntax_error, read_header
from tuner_tui.data.peek import is_json_lines as _is_json_lines
from tuner_tui.data.peek import sniff_bom as _sniff_bom
from tuner_tui.errors import TunerError
from tuner_tui.paths import absolute_if_local

if TYPE_CHECKING:
    from datasets import Dataset

SPLIT_COLUMN = "split"
SPLIT_NAMES = {"train": "train", "validation": "validation", "valid": "validation", "val": "validation",
               "dev": "validation", "test": "test"}  # fmt: skip
_CHUNK = 16 << 20
_PARSE_BLOCK = 1 << 20  # pyarrow parses a chunk's blocks in parallel
# A JSON document that datasets refuses is parsed again with Python's json, up to this size, to
# name the line and column (pyarrow and pandas name a position inside their own buffers).
_REPARSE_JSON_BYTES = 256 << 20


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
    """The start of a bad line, to find it by: PII masked, since errors land in events.jsonl and
    worker.log, which others may read."""
    from tuner_tui.data.pii import mask_text

    text = mask_text(raw.decode("utf-8", errors="replace").strip())
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
            if not bad and skip_bad_rows and not _is_utf8(chunk):
                # pyarrow keeps invalid UTF-8 inside strings; such a line would fail only when read
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


def _is_utf8(chunk: bytes) -> bool:
    if chunk.isascii():
        return True
    try:
        chunk.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


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
    if bom is None and suffix in TEXT_SUFFIXES:
        check_not_utf16(path, shown)
    if bom in ("utf-16", "utf-32"):
        path = _transcode(path, bom)
        info.encoding = f"{bom} (byte-order mark; read through a UTF-8 copy)"
    elif bom == "utf-8-sig":
        info.encoding = "utf-8-sig (byte-order mark)"
        if suffix != ".jsonl" and suffix != ".json":
            kwargs["encoding"] = "utf-8-sig"
    if suffix in (".csv", ".tsv", ".txt") and bom in (None, "utf-8-sig"):
        invalid = _first_invalid_utf8(path)
        if invalid is not None and bom is not None:
            # offsets count the file's bytes, the byte-order mark's three included
            raise TunerError(
                f"{shown}:{invalid[1]}: starts with a UTF-8 byte-order mark, but the byte at offset "
                f"{invalid[0]} is not UTF-8: the file mixes encodings. Re-save it as UTF-8 from the "
                "program that wrote it (or fix that line)."
            )
        if invalid is not None:
            fallback = _fallback_encoding(path)
            info.encoding = fallback
            info.notes.append(
                f"{shown}: not UTF-8 (first invalid byte at offset {invalid[0]}, line {invalid[1]}); "
                f"read as {fallback}."
            )
            kwargs["encoding"] = fallback
    if suffix == ".jsonl" or (suffix == ".json" and _is_json_lines(path)):
        if bom in (None, "utf-8-sig"):
            invalid = _first_invalid_utf8(path)
            if invalid is not None and not skip_bad_rows:
                raise TunerError(
                    f"{shown}:{invalid[1]}: invalid UTF-8 at byte offset {invalid[0]}. JSON Lines must be "
                    "UTF-8: re-export the file as UTF-8 (a UTF-8 or UTF-16 byte-order mark is also "
                    "understood), or skip such lines with --skip-bad-rows."
                )
        path = _check_jsonl(path, shown, skip_bad_rows, info)
    elif suffix == ".json":
        invalid = _first_invalid_utf8(path) if bom in (None, "utf-8-sig") else None
        if invalid is not None:
            raise TunerError(
                f"{shown}:{invalid[1]}: invalid UTF-8 at byte offset {invalid[0]}. JSON must be UTF-8: "
                "re-export the file as UTF-8."
            )
        kwargs.update(_json_field(path, shown))
    if suffix == ".txt":
        info.text_mode = _text_mode(path, kwargs.get("encoding", "utf-8"))
        kwargs["sample_by"] = info.text_mode
    return path, kwargs


def _starts_with(path: Path, prefixes: tuple[bytes, ...]) -> bool:
    with open(path, "rb") as f:
        return f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n").startswith(prefixes)


def _json_field(path: Path, shown: str) -> dict:
    """A .json file holding {"data": [...]} (or another single list key) reads that key."""
    if _starts_with(path, (b"[",)):
        return {}
    try:
        document = json.loads(path.read_text(encoding="utf-8-sig"))  # UTF-8 checked by the caller
    except ValueError as exc:
        raise json_syntax_error(shown, exc) from None
    lists = [k for k, v in document.items() if isinstance(v, list)] if isinstance(document, dict) else []
    if "data" in lists:
        return {"field": "data"}
    if len(lists) == 1:
        return {"field": lists[0]}
    raise TunerError(
        f"{shown}: a JSON object must hold the rows as a list under 'data' (found keys: "
        f"{', '.join(document) if isinstance(document, dict) else type(document).__name__})."
    )


def check_one_kind(files: list[Path], source: str) -> str:
    """The one suffix all `files` share (a kind tuner reads); a clear TunerError otherwise."""
    suffixes = sorted({f.suffix.lower() for f in files})
    if len(files) == 1 and suffixes[0] not in _BUILDERS:
        raise TunerError(
            f"{source}: '{suffixes[0] or '(no suffix)'}' is not a kind of data file tuner reads; save it "
            f"as one of {', '.join(sorted(_BUILDERS))} (e.g. CSV or JSON Lines)."
        )
    if len(suffixes) != 1 or suffixes[0] not in _BUILDERS:
        by_kind = "; ".join(
            f"{s or '(no suffix)'}: {', '.join(f.name for f in files if f.suffix.lower() == s)[:120]}"
            for s in suffixes
        )
        raise TunerError(
            f"{source}: holds files of several kinds ({by_kind}). Use one kind of file per dataset, "
            f"one of {', '.join(sorted(_BUILDERS))}, or point [data] path at a single file."
        )
    return suffixes[0]


def _load_files(files: list[Path], source: str, skip_bad_rows: bool, info: LoadInfo) -> Dataset:
    import datasets

    builder, base_kwargs = _BUILDERS[check_one_kind(files, source)]
    info.builder = builder
    ready = [_prepare_file(file, str(file), skip_bad_rows, info) for file in files]
    prepared, kwargs = _one_reading(ready, source)
    kwargs = {**base_kwargs, **kwargs}
    info.files = [str(f) for f in files]
    if builder == "csv" and skip_bad_rows:
        kwargs["on_bad_lines"] = "skip"
        info.notes.append("malformed CSV rows are skipped by the CSV reader; their count is not known")
    try:
        return datasets.load_dataset(builder, data_files=prepared, split="train", **kwargs)
    except Exception as exc:  # datasets wraps parser errors in several types
        raise _explain(exc, files, source, builder, kwargs) from None


def _one_reading(ready: list[tuple[Path, dict]], source: str) -> tuple[list[str], dict[str, Any]]:
    """The files and one set of builder kwargs that reads all of them.

    datasets reads every file of a dataset with the same kwargs, so files that need another
    encoding than the rest (a cp1252 export next to UTF-8 files) are read through UTF-8 copies.
    """
    encodings = {extra.get("encoding", "utf-8").replace("utf-8-sig", "utf-8") for _, extra in ready}
    files: list[str] = []
    kwargs: dict[str, Any] = {}
    for path, extra in ready:
        extra = dict(extra)
        encoding = extra.pop("encoding", "utf-8")
        if len(encodings) > 1 and encoding not in ("utf-8", "utf-8-sig"):
            path, encoding = _transcode(path, encoding), "utf-8"
        if encoding == "utf-8-sig" or (len(encodings) == 1 and encoding != "utf-8"):
            extra["encoding"] = encoding  # utf-8-sig also reads files without the mark
        for key, value in extra.items():
            if key in kwargs and kwargs[key] != value and key != "encoding":
                raise TunerError(
                    f"{source}: its files need different reading options ({key} = {kwargs[key]!r} for "
                    f"one, {value!r} for {path.name}). Give them the same layout, or point [data] path "
                    "at one file."
                )
            kwargs[key] = value
        files.append(str(path))
    return files, kwargs


_CSV_FIELDS = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")
_SCHEMA_MISMATCH = ("same columns", "Schema at index", "column names don't match", "Couldn't cast")


def _explain(exc: Exception, files: list[Path], source: str, builder: str, kwargs: dict) -> TunerError:
    """A datasets failure as one paragraph that names the file, the line and the fix."""
    cause = exc.__cause__ or exc
    message = str(cause)
    if "corresponds to no data" in message:
        headers = [(f, _header_or_none(f)) for f in files]
        if len(files) == 1 and headers[0][1] is not None:
            return headers[0][1].no_rows_error(str(files[0]))
        return TunerError(
            f"{source}: none of its {len(files)} file(s) holds a row. Point [data] path at files with rows."
        )
    if builder == "csv" and (match := _CSV_FIELDS.search(message)):
        for file in files:
            found = _csv_bad_record(file, kwargs.get("encoding", "utf-8"), kwargs.get("delimiter", ","))
            if found is not None:
                line, row, saw, expected = found
                return TunerError(
                    f"{file}:{line}: row {row} has {saw} fields, but the header has {expected}. Quote fields "
                    'that contain the delimiter ("a, b"), or skip malformed rows with --skip-bad-rows.'
                )
        return TunerError(
            f"{source}: a row has {match.group(3)} fields, but the header has {match.group(1)} (the CSV "
            f"reader's record {match.group(2)}). Quote fields that contain the delimiter, or skip "
            "malformed rows with --skip-bad-rows."
        )
    if len(files) > 1 and any(s in message for s in _SCHEMA_MISMATCH):
        return _columns_differ(files, source) or TunerError(
            f"{source}: its files do not all have the same columns ({' '.join(message.split())[:300]}). "
            "datasets reads a folder as one table: give every file the same columns, or point [data] "
            "path at one file."
        )
    if builder == "json" and len(files) == 1 and files[0].suffix.lower() == ".json":
        syntax = _json_syntax(files[0])
        if syntax is not None:
            return syntax
    return TunerError(
        f"{source}: could not be read as {builder.upper()}: {cause}. Check the file's format "
        "(run `tuner inspect` on it) or convert it to JSON Lines."
    )


def _header_or_none(path: Path) -> Header | None:
    try:
        return read_header(path)
    except TunerError:
        return None


def _columns_differ(files: list[Path], source: str) -> TunerError | None:
    """The error for files whose headers name different columns, or None when they agree."""
    columns = {f: h.columns for f in files if (h := _header_or_none(f)) is not None and h.columns is not None}
    shapes = {tuple(c) for c in columns.values()}
    if len(shapes) < 2:
        return None
    first = next(iter(columns.values()))
    odd = [f"{f.name} has {', '.join(c) or 'none'}" for f, c in columns.items() if c != first]
    order = " (the same columns in another order also differ: datasets matches them by position)"
    same_sets = len({frozenset(c) for c in columns.values()}) == 1
    return TunerError(
        f"{source}: its files do not all have the same columns: {next(iter(columns)).name} has "
        f"{', '.join(first)}; {'; '.join(odd[:4])}{' ...' if len(odd) > 4 else ''}"
        f"{order if same_sets else ''}. A folder is read as one table: give every file the same columns "
        "(rename or drop the odd ones), move the odd files out, or point [data] path at one file."
    )


def _csv_bad_record(path: Path, encoding: str, delimiter: str) -> tuple[int, int, int, int] | None:
    """(line, data row, fields, header fields) of the first CSV record whose width is wrong.

    The CSV reader's own message counts records, not lines, so a quoted field that spans lines
    moves every later line number; this scan (run only after a failure) counts both.
    """
    limit = csv.field_size_limit(1 << 30)
    try:
        with open(path, encoding=_sniff_bom(path) or encoding, errors="replace", newline="") as f:
            reader = csv.reader(f, delimiter=delimiter)
            expected, row, start = None, 0, 1
            for record in reader:
                if record:
                    if expected is None:
                        expected = len(record)
                    else:
                        row += 1
                        if len(record) != expected:
                            return start, row, len(record), expected
                start = reader.line_num + 1
    except csv.Error:
        return None
    finally:
        csv.field_size_limit(limit)
    return None


def _json_syntax(path: Path) -> TunerError | None:
    """Where Python's parser stops in a JSON document datasets refused (line and column)."""
    if path.stat().st_size > _REPARSE_JSON_BYTES:
        return None
    try:
        json.loads(path.read_bytes())
    except UnicodeDecodeError:
        return None  # checked before loading
    except ValueError as exc:
        return json_syntax_error(str(path), exc)
    return None


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


def is_saved_dataset(folder: Path) -> bool:
    """A folder written by `Dataset.save_to_disk` (state.json beside dataset_info.json) or
    `DatasetDict.save_to_disk` (dataset_dict.json); a stray dataset_info.json (LLaMA-Factory's data
    folder has one, listing its files) does not make one."""
    return (folder / "dataset_dict.json").is_file() or (
        (folder / "state.json").is_file() and (folder / "dataset_info.json").is_file()
    )


def folder_files(folder: Path) -> tuple[list[Path], dict[Path, str | None]]:
    """The data files of a folder (not a save_to_disk one) and the split each file's name gives.

    Raises:
        TunerError: for a folder without data files, or one where only some file names name a split.
    """
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
    return data_files, splits


def _load_folder(folder: Path, skip_bad_rows: bool, info: LoadInfo) -> Dataset:
    import datasets

    if is_saved_dataset(folder):
        info.builder = "save_to_disk"
        loaded = datasets.load_from_disk(str(folder))
        if isinstance(loaded, datasets.DatasetDict):
            named = {SPLIT_NAMES[k]: v for k, v in loaded.items() if k in SPLIT_NAMES}
            if len(loaded) > 1 and len(named) == len(loaded):
                return _with_origin(named, str(folder), info)
            return loaded["train"] if "train" in loaded else next(iter(loaded.values()))
        return loaded
    data_files, splits = folder_files(folder)
    if len(data_files) > 1 and data_files[0].suffix.lower() in (".csv", ".tsv", ".parquet"):
        differ = _columns_differ(data_files, str(folder))  # headers say it before a full read does
        if differ is not None:
            raise differ
    if any(splits.values()):
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


def missing_path_error(path: str, base_dir: Path | None) -> TunerError | None:
    """The error for a data path that names no existing file or folder but looks like a local
    path, not a hub id ('name' or 'owner/name'); None when it may be a hub id."""
    first = Path(path).expanduser().parts[0] if path.strip() else ""
    beside = [Path(base_dir) / first] if base_dir is not None and first else []
    looks_local = (
        path.startswith((".", "/", "~"))
        or path.lower().endswith(tuple(_BUILDERS))
        or path.count("/") > 1
        or ("/" in path and any(p.is_dir() for p in [*beside, Path(first)]))  # data/train.jsnol
    )
    if not looks_local:
        return None
    return TunerError(
        f"The data path {path} does not exist"
        + (f" (looked relative to {base_dir} and the current folder)" if base_dir else "")
        + ". Fix [data] path in the recipe."
    )


def check_readable(local: Path) -> None:
    """Raise a clear TunerError for a path that exists but is no regular file or folder, or that
    this user cannot read; return quietly for one that does not exist (it may be a hub id)."""
    try:
        mode = local.stat().st_mode
    except PermissionError:
        raise TunerError(
            f"The data path {local} cannot be reached: permission denied on a folder above it. Fix the "
            "permissions, or copy the data somewhere readable and point [data] path there."
        ) from None
    except (FileNotFoundError, NotADirectoryError, OSError):
        return
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        kind = (
            "a character device" if stat.S_ISCHR(mode)
            else "a block device" if stat.S_ISBLK(mode)
            else "a named pipe" if stat.S_ISFIFO(mode)
            else "a socket" if stat.S_ISSOCK(mode)
            else "not a regular file"
        )  # fmt: skip
        raise TunerError(
            f"The data path {local} exists but is {kind}, not a regular file or folder: tuner reads "
            "data files (.jsonl, .json, .csv, .tsv, .parquet, .txt) or folders of them. Fix [data] path."
        )
    if not os.access(local, os.R_OK | (os.X_OK if stat.S_ISDIR(mode) else 0)):
        raise TunerError(
            f"The data path {local} exists but cannot be read by this user (permission denied). Fix its "
            f"permissions (e.g. chmod u+r{'x' if stat.S_ISDIR(mode) else ''} {local}) or point [data] path "
            "at a readable copy."
        )


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
    check_readable(local)
    if local.is_file():
        return _load_files([local], str(local), skip_bad_rows, info), info
    if local.is_dir():
        return _load_folder(local, skip_bad_rows, info), info
    missing = missing_path_error(path, base_dir)
    if missing is not None:
        raise missing
    info.builder = "hub"
    return _load_hub(path), info


def load_any(path: str, base_dir: Path | None = None, *, skip_bad_rows: bool = False) -> Dataset:
    """Load `path` as one `datasets.Dataset` (memory-mapped Arrow); see `load_data`."""
    return load_data(path, base_dir, skip_bad_rows=skip_bad_rows)[0]
