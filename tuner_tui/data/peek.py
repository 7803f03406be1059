"""Cheap looks at a data file: its encoding, its columns and its first record, from a header read.

Loading (`load.py`) and the pre-flight probe (`probe.py`) both need to know what a file holds
before `datasets` reads all of it: which columns a CSV header names, whether a JSON Lines file's
first record is an object, whether a file has any rows at all. Everything here reads a bounded
prefix of the file (parquet: its footer), never the whole file, and needs only the standard
library (pyarrow for parquet schemas).
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuner_tui.errors import TunerError

# file suffix -> (datasets builder, extra builder kwargs)
BUILDERS: dict[str, tuple[str, dict]] = {
    ".jsonl": ("json", {}),
    ".json": ("json", {}),
    ".csv": ("csv", {}),
    ".tsv": ("csv", {"delimiter": "\t"}),
    ".parquet": ("parquet", {}),
    ".txt": ("text", {}),
}
TEXT_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".txt")
BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# How much of a file a header read may look at: a first record longer than this is not judged.
HEAD_BYTES = 4 << 20
_SNIFF_BYTES = 4096


@dataclass(frozen=True)
class Header:
    """What the start of a data file says about it.

    Attributes:
        columns: The column names, in file order; None when they cannot be known without a full
            read (a large JSON document).
        has_rows: Whether a first record follows the header; None when it was not seen within
            `HEAD_BYTES`.
        first_row: The first record as a dict, when one was read (format detection looks inside it).
    """

    columns: list[str] | None
    has_rows: bool | None
    first_row: dict[str, Any] | None = None
    why_no_rows: str = ""

    def no_rows_error(self, shown: str) -> TunerError:
        """The error for a file without rows (`has_rows` False), naming what it holds instead."""
        if self.columns:
            return TunerError(
                f"{shown}: has a header ({', '.join(self.columns)}) but no rows. Add rows below the header, "
                "or point [data] path at the file that holds them."
            )
        return TunerError(
            f"{shown}: {self.why_no_rows or 'holds no rows'}. Point [data] path at a file with rows."
        )


def json_syntax_error(shown: str, exc: ValueError) -> TunerError:
    """A JSON document's syntax error, naming the file, line and column."""
    line, column = getattr(exc, "lineno", None), getattr(exc, "colno", None)
    where = f"{shown}:{line}" if line is not None else shown
    return TunerError(
        f"{where}: is not valid JSON ({getattr(exc, 'msg', exc)} at line {line}, column {column}). Fix the "
        "file, or convert it to JSON Lines (one object per line) and use --skip-bad-rows."
    )


def sniff_bom(path: Path) -> str | None:
    """The codec a byte-order mark at the start of `path` names, or None."""
    with open(path, "rb") as f:
        head = f.read(4)
    return next((name for bom, name in BOMS if head.startswith(bom)), None)


def utf16_without_bom(head: bytes) -> str | None:
    """'LE' or 'BE' when `head` looks like UTF-16 text without a byte-order mark, else None.

    Mostly-ASCII text in UTF-16 has a NUL in every other byte: odd offsets for little-endian, even
    ones for big-endian. UTF-8 text has almost none, so a third of the pairs carrying a NUL on one
    side only is a safe sign.
    """
    pairs = len(head) // 2
    if pairs < 2:
        return None
    even = head[0 : pairs * 2 : 2].count(0)
    odd = head[1 : pairs * 2 : 2].count(0)
    if odd >= pairs / 3 and even <= pairs / 20:
        return "LE"
    if even >= pairs / 3 and odd <= pairs / 20:
        return "BE"
    return None


def check_not_utf16(path: Path, shown: str) -> None:
    """Raise a clear TunerError for a text file in UTF-16 without a byte-order mark."""
    if sniff_bom(path) is not None:
        return
    with open(path, "rb") as f:
        order = utf16_without_bom(f.read(_SNIFF_BYTES))
    if order is not None:
        raise TunerError(
            f"{shown}: looks like UTF-16 {order} without a BOM (a NUL byte beside every character); "
            f"re-save as UTF-8 (e.g. iconv -f UTF-16{order} -t UTF-8 {Path(shown).name} > "
            f"{Path(shown).stem}-utf8{Path(shown).suffix}), or save it as UTF-16 with a byte-order mark."
        )


def _text_encoding(path: Path, head: bytes) -> str:
    """The codec to read a text file's start with, as `load` would read the whole file."""
    bom = sniff_bom(path)
    if bom is not None:
        return bom
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.reason != "unexpected end of data" or len(head) - exc.start > 3:
            return "cp1252"
    return "utf-8"


def _head_text(path: Path) -> tuple[str, bool]:
    """The first `HEAD_BYTES` of a text file, decoded, and whether that is the whole file."""
    with open(path, "rb") as f:
        head = f.read(HEAD_BYTES)
        whole = not f.read(1)
    encoding = _text_encoding(path, head)
    text = codecs.getincrementaldecoder(encoding)(errors="replace").decode(head, final=whole)
    return text, whole


def is_json_lines(path: Path) -> bool:
    """A .json file holding one object per line rather than one document."""
    with open(path, "rb") as f:
        first = f.readline(HEAD_BYTES)
        rest = f.read(1).strip()
    try:
        return isinstance(json.loads(first), dict) and bool(rest)
    except ValueError:
        return False


def _csv_header(path: Path, delimiter: str) -> Header:
    text, whole = _head_text(path)
    records: list[list[str]] = []
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    limit = csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))  # a field may be long
    try:
        for record in reader:
            if record:  # blank lines are skipped, as pandas does
                records.append(record)
            if len(records) == 2:
                break
    except csv.Error:
        return Header(None, None)  # Python's reader is stricter than pandas': let the load judge
    finally:
        csv.field_size_limit(limit)
    if not records:
        return Header(
            [], False, why_no_rows="holds only blank lines" if text.strip() else "the file is empty"
        )
    columns = records[0]  # as pandas reads them: " label" is not "label"
    if len(records) == 2:
        return Header(columns, True, dict(zip(columns, records[1], strict=False)))
    # one record read: the file has only a header, unless a first row went past what was read
    return Header(columns, False if whole else None)


def _first_json_line(path: Path, shown: str) -> Header:
    text, whole = _head_text(path)
    lines = text.split("\n")  # as `load` counts lines (str.splitlines also splits at U+2028)
    if not whole and lines:
        lines = lines[:-1]  # the last one may be cut
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as exc:
            raise TunerError(
                f"{shown}:{number}: the first record is not valid JSON ({exc}). Each line of a JSON Lines "
                "file must be one JSON object."
            ) from None
        if not isinstance(value, dict):
            raise TunerError(
                f"{shown}:{number}: the first record is a JSON {type(value).__name__}, not an object: each "
                'line of a JSON Lines file must be one object, e.g. {"text": "..."}.'
            )
        return Header(list(value), True, value)
    if whole:
        return Header([], False, why_no_rows="holds only blank lines, no records")
    return Header(None, None)


def _json_document(path: Path, shown: str) -> Header:
    text, whole = _head_text(path)
    start = len(text) - len(text.lstrip())
    if text[start : start + 1] == "[":
        decoder = json.JSONDecoder()
        index = start + 1
        while index < len(text) and text[index].isspace():
            index += 1
        if text[index : index + 1] == "]":
            return Header([], False, why_no_rows="is an empty JSON array ([])")
        try:
            value, _ = decoder.raw_decode(text, index)
        except ValueError as exc:
            if not whole:
                return Header(None, None)  # the first element goes past what was read
            raise json_syntax_error(shown, exc) from None
        if not isinstance(value, dict):
            raise TunerError(
                f"{shown}: the JSON array holds {type(value).__name__}s, not objects: each element must be "
                'one row, e.g. [{"text": "..."}].'
            )
        return Header(list(value), True, value)
    if not whole:
        return Header(None, None)  # a large {"data": [...]} document: its rows need a full parse
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise json_syntax_error(shown, exc) from None
    lists = [k for k, v in document.items() if isinstance(v, list)] if isinstance(document, dict) else []
    key = "data" if "data" in lists else (lists[0] if len(lists) == 1 else None)
    if key is None:
        found = ", ".join(document) if isinstance(document, dict) else type(document).__name__
        raise TunerError(
            f"{shown}: a JSON object must hold the rows as a list under 'data' (found keys: {found})."
        )
    rows = document[key]
    if not rows:
        return Header([], False, why_no_rows=f"the list under '{key}' is empty")
    first = rows[0]
    if not isinstance(first, dict):
        raise TunerError(f"{shown}: the rows under '{key}' are {type(first).__name__}s, not objects.")
    return Header(list(first), True, first)


def _parquet_header(path: Path, shown: str) -> Header:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(path).metadata
    except (pa.ArrowInvalid, OSError) as exc:
        raise TunerError(f"{shown}: is not a readable Parquet file ({exc}).") from None
    columns = list(meta.schema.to_arrow_schema().names)
    return Header(columns, meta.num_rows > 0, why_no_rows="has a schema but no rows")


def read_header(path: Path, shown: str | None = None) -> Header:
    """The columns and first record of a data file, from its start (parquet: its footer).

    Args:
        path: A data file with one of the suffixes in `BUILDERS`.
        shown: How to name the file in messages (default: the path).

    Returns:
        The Header; a file without rows (empty, a header only, an empty array) has `has_rows`
        False, and `Header.no_rows_error` says so: in a folder, other files may hold the rows.

    Raises:
        TunerError: one paragraph naming the file (and line) for UTF-16 without a byte-order mark,
            a suffix tuner does not read, or a first record that does not parse.
    """
    shown = shown or str(path)
    suffix = path.suffix.lower()
    if suffix not in BUILDERS:
        raise TunerError(
            f"{shown}: '{suffix or '(no suffix)'}' is not a data file tuner reads; use one of "
            f"{', '.join(sorted(BUILDERS))}."
        )
    if suffix == ".parquet":
        return _parquet_header(path, shown)
    if path.stat().st_size == 0:
        return Header([], False, why_no_rows="the file is empty")
    check_not_utf16(path, shown)
    if suffix in (".csv", ".tsv"):
        return _csv_header(path, "\t" if suffix == ".tsv" else ",")
    if suffix == ".txt":
        text, whole = _head_text(path)
        first = next((line for line in text.split("\n") if line.strip()), None)
        if first is None:
            return Header([], False if whole else None, why_no_rows="holds only blank lines")
        return Header(["text"], True, {"text": first.rstrip("\r")})
    if suffix == ".jsonl" or is_json_lines(path):
        return _first_json_line(path, shown)
    return _json_document(path, shown)
