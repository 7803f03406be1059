"""Pre-flight look at a recipe's data: is it there, can it be read, does its header fit [data]?

`probe_data` does what `load.load_data` would find out first, without loading: the path exists and
is a readable regular file or folder (or looks like a hub id), the file's header or first record
parses (CSV header, first JSON line, first element of a JSON array, parquet schema, a save_to_disk
folder's dataset_info.json), and the columns the recipe maps in [data] fields, and those its
format requires, are in that header. Each file costs one bounded read of its start (parquet: its
footer), so `tuner validate`, `tuner run` and the wizard can call it on every edit.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from tuner_tui.data.formats import DEFAULT_FIELDS, REQUIRED_ROLES, resolve_format
from tuner_tui.data.load import (
    SPLIT_COLUMN,
    SPLIT_NAMES,
    check_one_kind,
    check_readable,
    folder_files,
    is_saved_dataset,
    missing_path_error,
)
from tuner_tui.data.peek import Header, read_header
from tuner_tui.errors import TunerError
from tuner_tui.paths import absolute_if_local

if TYPE_CHECKING:
    from tuner_tui.recipe import DataConfig

# A folder's files whose headers are read (sorted by name); a larger folder is judged on these.
MAX_FILES = 64
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
_JSON_SUFFIXES = (".json", ".jsonl")


def probe_data(data: DataConfig, base_dir: Path | None = None, *, task: str | None = None) -> list[str]:
    """What stops `data` from loading as the recipe says, found from existence checks and headers.

    Args:
        data: The recipe's [data] table (path, format, fields, cleaning).
        base_dir: The folder relative paths start from (the recipe's folder); None: the current one.
        task: The recipe's model.task; when given, the detected format must suit it.

    Returns:
        One-paragraph messages, each naming the file (and line or key) and the fix; empty when
        nothing is wrong that a header can show. An empty path gives none (`DataConfig.check`
        reports it).
    """
    path = data.path.strip()
    if not path:
        return []
    try:
        return _probe(data, path, base_dir, task)
    except TunerError as error:
        return [str(error)]


def _probe(data: DataConfig, path: str, base_dir: Path | None, task: str | None) -> list[str]:
    found = _header_of(path, base_dir)
    if found is None:
        return _hub_problems(path)
    header, shown, json_kind = found
    return _field_problems(data, header, shown, json_kind, task)


def _file_header(path: Path) -> Header:
    header = read_header(path)
    if header.has_rows is False:
        raise header.no_rows_error(str(path))
    return header


def _saved_columns(folder: Path) -> Header:
    """Columns of a `save_to_disk` folder, from its dataset_info.json (one split's, for a dict)."""
    info = folder / "dataset_info.json"
    split_column: list[str] = []
    if (folder / "dataset_dict.json").is_file():
        try:
            splits = json.loads((folder / "dataset_dict.json").read_text(encoding="utf-8"))["splits"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise TunerError(
                f"{folder / 'dataset_dict.json'}: cannot be read ({exc}); save the dataset again with "
                "DatasetDict.save_to_disk."
            ) from None
        if not splits:
            raise TunerError(f"{folder}: the saved DatasetDict has no splits. Save one with rows.")
        info = folder / ("train" if "train" in splits else splits[0]) / "dataset_info.json"
        if len(splits) > 1 and all(s in SPLIT_NAMES for s in splits):  # as load_data reads it
            split_column = [SPLIT_COLUMN]
    try:
        features = json.loads(info.read_text(encoding="utf-8")).get("features") or {}
    except (OSError, ValueError, AttributeError) as exc:
        raise TunerError(
            f"{info}: cannot be read ({exc}); save the dataset again with save_to_disk."
        ) from None
    return Header([*features, *split_column], None) if isinstance(features, dict) else Header(None, None)


def _folder_header(folder: Path) -> tuple[Header, bool]:
    """The columns a folder's files share (and whether they are JSON, whose first records may
    leave out optional keys); raises what `load` would for the folder."""
    if is_saved_dataset(folder):
        return _saved_columns(folder), False
    files, splits = folder_files(folder)
    suffix = check_one_kind(files, str(folder))
    headers = {f: read_header(f) for f in files[:MAX_FILES]}
    if all(h.has_rows is False for h in headers.values()) and len(headers) == len(files):
        if len(files) == 1:
            raise headers[files[0]].no_rows_error(str(files[0]))
        raise TunerError(
            f"{folder}: none of its {len(files)} files holds a row. Point [data] path at files with rows."
        )
    known = {f: h.columns for f, h in headers.items() if h.columns}  # a header-only CSV still counts
    json_kind = suffix in _JSON_SUFFIXES
    columns: list[str] | None = None
    if known:
        if _columns_conflict(list(known.values()), json_kind):
            first, *others = known.items()
            odd = "; ".join(f"{f.name} has {', '.join(c)}" for f, c in others if c != first[1])
            said = " (in its first record)" if json_kind else ""
            raise TunerError(
                f"{folder}: its files do not all have the same columns: {first[0].name} has "
                f"{', '.join(first[1])}{said}; {odd}. A folder is read as one table: give every file the "
                "same columns (in the same order), move the odd files out, or point [data] path at one file."
            )
        # JSON records may each leave out optional keys: judge the columns any first record has
        columns = list(dict.fromkeys(c for cols in known.values() for c in cols))
    if columns is not None and any(splits.values()):
        columns.append(SPLIT_COLUMN)
    first_row = next((h.first_row for h in headers.values() if h.first_row), None)
    return Header(columns, True, first_row), json_kind


def _columns_conflict(columns: list[list[str]], json_kind: bool) -> bool:
    """Whether the files' columns cannot be read as one table. CSV-like headers must match
    exactly. A JSON file's first record may leave out optional keys the others have, so there
    only files whose first records each have a key the other lacks are a conflict."""
    if not json_kind:
        return len({tuple(c) for c in columns}) > 1
    sets = [frozenset(c) for c in columns]
    return any(not (a <= b or b <= a) for i, a in enumerate(sets) for b in sets[i + 1 :])


def _field_problems(
    data: DataConfig, header: Header, shown: str, json_kind: bool, task: str | None
) -> list[str]:
    """The recipe's format and fields against the columns the header names."""
    if header.columns is None:
        return []  # a large JSON document: its columns are known only once it is read
    if data.format != "auto" and data.format not in DEFAULT_FIELDS:
        return []  # Recipe.problems() names the bad format
    columns = header.columns
    where = f"{shown} (first record)" if json_kind else shown
    problems: list[str] = []
    if data.format != "auto":  # a misspelt role explains the missing one that resolving reports
        problems += _unknown_roles(data.fields, data.format)
    try:
        detection = resolve_format(
            data.format, data.fields, columns, [header.first_row] if header.first_row else []
        )
    except TunerError as error:
        return [*problems, f"{where}: {error}"]
    if data.format == "auto":
        problems += _unknown_roles(data.fields, detection.format)
    for role, column in data.fields.items():
        optional = role not in REQUIRED_ROLES[detection.format]
        if (
            role in DEFAULT_FIELDS[detection.format]
            and column not in columns
            and not (json_kind and optional)
        ):
            problems.append(
                f"{where}: [data] fields maps '{role}' to '{column}', which is not a column. Columns: "
                f"{', '.join(columns)}. Set fields = {{{role} = '<column>'}} or remove the mapping."
            )
    for i, step in enumerate(data.cleaning):
        if step.get("op") == "resolve_label_conflicts" and detection.format != "classification":
            problems.append(
                f"[data] cleaning[{i}]: resolve_label_conflicts needs classification data (a text and a "
                f"label column), but {shown} is '{detection.format}' data. Remove the step."
            )
    if task is not None:
        from tuner_tui.data.pipeline import check_task_fits  # numpy and pyarrow: only when asked

        try:
            check_task_fits(detection, task)
        except TunerError as error:
            problems.append(f"{where}: {error}")
    return problems


def _unknown_roles(fields: dict[str, str], fmt: str) -> list[str]:
    roles = list(DEFAULT_FIELDS[fmt])
    problems = []
    for role, column in fields.items():
        if role not in roles:
            close = difflib.get_close_matches(role, roles, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            problems.append(
                f"[data] fields: '{role}' is not a role of the {fmt} format (its roles: {', '.join(roles)}), "
                f"so column '{column}' would not be used.{hint}"
            )
    return problems


def _offline() -> bool:
    return any(os.environ.get(v, "") not in ("", "0") for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def _hub_cached(repo_id: str) -> bool:
    """Whether the hub dataset `repo_id` is in the hub cache or the datasets cache (no network)."""
    from huggingface_hub import constants

    hub = Path(constants.HF_HUB_CACHE) / f"datasets--{repo_id.replace('/', '--')}"
    datasets_cache = Path(
        os.environ.get("HF_DATASETS_CACHE") or Path(constants.HF_HOME) / "datasets"
    ) / repo_id.replace("/", "___")
    return hub.is_dir() or datasets_cache.is_dir()


def _hub_problems(path: str) -> list[str]:
    if not _HUB_ID.match(path):
        return [
            f"The data path {path} is neither a local file or folder nor a hub dataset id ('name' or "
            "'owner/name'). Fix [data] path in the recipe."
        ]
    if _offline() and not _hub_cached(path):
        return [
            f"The data path {path} is not a local file or folder, and HF_HUB_OFFLINE is set, so it can "
            "only come from the local cache, where it is not. Download it once while online, or point "
            "[data] path at a local file."
        ]
    return []


# --- `tuner inspect --format ... --field ROLE=COLUMN` -------------------------------------------


def _all_roles() -> list[str]:
    return list(dict.fromkeys(role for roles in DEFAULT_FIELDS.values() for role in roles))


def _parse_field_flags(flags: list[str], fmt: str) -> dict[str, str]:
    roles = list(DEFAULT_FIELDS[fmt]) if fmt != "auto" else _all_roles()
    parsed: dict[str, str] = {}
    for flag in flags:
        role, sep, column = (part.strip() for part in flag.partition("="))
        if not sep or not role or not column:
            raise TunerError(
                f"--field {flag!r} must be ROLE=COLUMN, e.g. --field text=abstract: the role (one of "
                f"{', '.join(roles)}), '=', then the column that holds it. Repeat --field for each role."
            )
        if role not in roles:
            close = difflib.get_close_matches(role, roles, n=1)
            hint = f" Did you mean --field {close[0]}={column}?" if close else ""
            which = f"the {fmt} format" if fmt != "auto" else "any format"
            raise TunerError(
                f"--field {flag}: '{role}' is not a role of {which} (its roles: {', '.join(roles)}).{hint}"
            )
        if role in parsed and parsed[role] != column:
            raise TunerError(
                f"--field maps '{role}' twice ({role}={parsed[role]} and {role}={column}): give each role "
                "one column."
            )
        parsed[role] = column
    return parsed


def inspect_data_config(
    path: str,
    base: DataConfig | None,
    data_format: str | None,
    field_flags: list[str],
    base_dir: Path | None = None,
) -> DataConfig:
    """The [data] table `tuner inspect` uses: the recipe's (if any), with --format and --field applied,
    checked against the file's header so a bad flag is named before anything is loaded.

    Args:
        path: The data path given to inspect.
        base: The recipe's [data] table, or None without a recipe.
        data_format: --format, or None.
        field_flags: Each --field, as ROLE=COLUMN.
        base_dir: The folder relative paths start from.

    Raises:
        TunerError: naming the flag and the fix for an unknown format, a malformed --field, an unknown
            role, a column the data does not have, or data whose format cannot be detected.
    """
    from tuner_tui.recipe import DATA_FORMATS, DataConfig

    if data_format is not None and data_format not in DATA_FORMATS:
        close = difflib.get_close_matches(data_format, DATA_FORMATS, n=1)
        hint = f" Did you mean --format {close[0]}?" if close else ""
        raise TunerError(
            f"--format {data_format!r} is not a data format.{hint} Choose one of {', '.join(DATA_FORMATS)} "
            "('auto' detects it from the columns), e.g. --format classification."
        )
    fmt = data_format or (base.format if base is not None else "auto")
    flags = _parse_field_flags(field_flags, fmt)
    fields = {**(base.fields if base is not None and data_format in (None, base.format) else {}), **flags}
    config = DataConfig(path=path, format=fmt, fields=fields, cleaning=list(base.cleaning) if base else [])
    header = _header_of(path, base_dir)
    if header is None or header[0].columns is None:
        return config  # a hub id or a large JSON document: the load will tell
    found, shown, json_kind = header
    columns = found.columns or []
    listed = ", ".join(columns)
    if fmt == "auto":
        from tuner_tui.data.formats import detect_format

        # as resolve_format does: a mapped column counts as one named for its role
        role_of = {column: role for role, column in fields.items()}
        named = [role_of.get(c, c) for c in columns]
        first = {role_of.get(k, k): v for k, v in (found.first_row or {}).items()}
        try:
            detected = detect_format(named, [first] if first else []).format
        except TunerError:
            text, label = _likely_text_and_label(columns, found.first_row or {})
            raise TunerError(
                f"Cannot detect the data format of {shown} from its columns ({listed}). Name it with "
                f"--format and map its columns with --field, e.g. --format classification --field "
                f"text={text} --field label={label}."
            ) from None
    else:
        detected = fmt
    for role, column in flags.items():
        if role not in DEFAULT_FIELDS[detected]:
            raise TunerError(
                f"--field {role}={column}: the data reads as {detected}, which has no '{role}' role (its "
                f"roles: {', '.join(DEFAULT_FIELDS[detected])}). Name the format you mean with --format."
            )
        # a JSON record may leave out an optional key that later records have
        optional = role not in REQUIRED_ROLES[detected]
        if column not in columns and not (json_kind and optional):
            raise TunerError(
                f"--field {role}={column}: {shown} has no column '{column}' (its columns: {listed}). Use "
                f"--field {role}=<one of these>."
            )
    for role in REQUIRED_ROLES[detected]:
        column = fields.get(role, DEFAULT_FIELDS[detected][role])
        if column not in columns:
            raise TunerError(
                f"The {detected} format needs a column for '{role}', and {shown} has no column "
                f"'{column}' (its columns: {listed}). Add --field {role}=<column>."
            )
    return config


def _likely_text_and_label(columns: list[str], first_row: dict) -> tuple[str, str]:
    """For the example in a message: the column with the longest first value as the text, the one
    with the shortest as the label."""
    if len(columns) < 2:
        return (columns[0] if columns else "COLUMN"), "COLUMN"
    by_length = sorted(columns, key=lambda c: len(str(first_row.get(c, ""))))
    return by_length[-1], by_length[0]


def _header_of(path: str, base_dir: Path | None) -> tuple[Header, str, bool] | None:
    """The header of a local data file or folder (None for a hub id), raising what load would."""
    local = Path(absolute_if_local(path, base_dir))
    check_readable(local)
    if local.is_file():
        return _file_header(local), str(local), local.suffix.lower() in _JSON_SUFFIXES
    if local.is_dir():
        header, json_kind = _folder_header(local)
        return header, str(local), json_kind
    missing = missing_path_error(path, base_dir)
    if missing is not None:
        raise missing
    return None
