"""Cleaning steps ([[data.cleaning]]): small functions over a `datasets.Dataset`, applied in order.

Filters compute a keep-mask batch by batch and `select` the kept rows (an index mapping, no copy);
transforms rewrite strings with a batched Arrow `map` (a new memory-mapped cache file). Each step
returns a `StepReport` with rows before/after and a few masked examples of what it changed.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tuner_tui.data import pii
from tuner_tui.data.dedup import MinHasher, exact_keys, first_occurrences, near_duplicates
from tuner_tui.data.formats import REQUIRED_ROLES, Detection
from tuner_tui.data.ops import UNLABELED_OP, UNUSABLE_PAIRS_OP, validate_step
from tuner_tui.data.report import _TokenCounter, find_label_conflicts, snippet
from tuner_tui.data.text import arrow_batches, as_text, identity_text, map_strings, row_text, text_columns
from tuner_tui.errors import TunerError

if TYPE_CHECKING:
    from datasets import Dataset

EXAMPLES = 3


@dataclass
class StepReport:
    """What one cleaning step did (JSON-serialisable via `to_json`)."""

    op: str
    params: dict[str, Any]
    rows_before: int
    rows_after: int
    changed_rows: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    examples: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def message(self) -> str:
        """The run log's line for this step: a recipe step's counts, or, for a step the pipeline
        took itself, what it dropped, why, and what to do."""
        if self.op == UNLABELED_OP:
            column, missing = self.details["column"], self.details["missing"]
            return (
                f"{missing} of {self.rows_before} rows have no value in the label column '{column}': "
                f"they were dropped (recorded as step '{UNLABELED_OP}'), leaving {self.rows_after}. "
                "Fill in their labels, or add [[data.cleaning]] op = 'drop_empty' to drop them on purpose."
            )
        if self.op == UNUSABLE_PAIRS_OP:
            return (
                f"{self.details['why']}; they were dropped (recorded as step '{UNUSABLE_PAIRS_OP}'), "
                f"leaving {self.rows_after}."
            )
        changed = f", {self.changed_rows} changed" if self.changed_rows else ""
        return f"Cleaning {self.op}: {self.rows_before} -> {self.rows_after} rows{changed}"


def _filter(dataset: Dataset, keep_batches: list[np.ndarray]) -> Dataset:
    keep = np.concatenate(keep_batches) if keep_batches else np.zeros(0, dtype=bool)
    if keep.all():
        return dataset
    return dataset.select(np.flatnonzero(keep))


def _dropped_examples(dataset: Dataset, keep: np.ndarray, detection: Detection) -> list[dict[str, Any]]:
    rows = np.flatnonzero(~keep)[:EXAMPLES].tolist()
    if not rows:
        return []
    cols = text_columns(detection, dataset.column_names)
    texts = row_text(dataset.select(rows).with_format("arrow")[:], cols).to_pylist()
    return [{"row": r, "dropped": snippet(t)} for r, t in zip(rows, texts, strict=True)]


def _blank(array: pa.ChunkedArray | pa.Array) -> np.ndarray:
    text = pc.utf8_trim_whitespace(as_text(array))
    return (pc.equal(pc.utf8_length(text), 0).to_numpy(zero_copy_only=False)) | (
        array.is_null().to_numpy(zero_copy_only=False)
    )


def _blank_turns(array: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Per row: does any turn of a chat column have blank content?"""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if not (pa.types.is_list(array.type) or pa.types.is_large_list(array.type)):
        return np.zeros(len(array), dtype=bool)
    lengths = pc.fill_null(pc.list_value_length(array), 0).to_numpy(zero_copy_only=False)
    turns = pc.list_flatten(array)
    blank_turn = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(as_text(turns))), 0).to_numpy(
        zero_copy_only=False
    )
    rows = np.repeat(np.arange(len(array)), lengths)
    return np.bincount(rows[blank_turn], minlength=len(array)) > 0


def _drop_empty(
    dataset: Dataset, detection: Detection, params: dict, report: StepReport, **_: Any
) -> Dataset:
    roles = [r for r in REQUIRED_ROLES[detection.format] if detection.fields.get(r) in dataset.column_names]
    keep_batches = []
    for table in arrow_batches(dataset):
        empty = np.zeros(table.num_rows, dtype=bool)
        for role in roles:
            column = table.column(detection.fields[role])
            empty |= _blank(column)
            if role in ("messages", "conversations"):
                empty |= _blank_turns(column)
        keep_batches.append(~empty)
    report.examples = (
        _dropped_examples(dataset, np.concatenate(keep_batches), detection) if keep_batches else []
    )
    return _filter(dataset, keep_batches)


def _normalizer(form: str, whitespace: bool) -> Callable[[pa.Array], pa.Array]:
    def normalize(strings: pa.Array) -> pa.Array:
        out = pc.utf8_normalize(strings, form=form)
        if whitespace:
            out = pc.replace_substring_regex(out, r"\r\n?", "\n")
            out = pc.replace_substring_regex(out, r"[^\S\n]+", " ")  # runs of spaces, tabs, nbsp
            out = pc.replace_substring_regex(out, r" ?\n ?", "\n")
            out = pc.replace_substring_regex(out, r"\n{3,}", "\n\n")
            out = pc.utf8_trim_whitespace(out)
        return out

    return normalize


def _transform(
    dataset: Dataset, detection: Detection, transform: Callable[[pa.Array], pa.Array], report: StepReport
) -> Dataset:
    """Apply `transform` to the strings of the text columns, counting and sampling changed rows."""
    cols = text_columns(detection, dataset.column_names)

    def apply(table: pa.Table) -> pa.Table:
        before = row_text(table, cols)
        for name in cols:
            index = table.column_names.index(name)
            table = table.set_column(
                index, table.schema.field(index), map_strings(table.column(name), transform)
            )
        after = row_text(table, cols)
        changed = pc.not_equal(before, after)
        report.changed_rows += int(pc.sum(changed).as_py() or 0)
        if len(report.examples) < EXAMPLES:
            for old, new in zip(
                before.filter(changed).to_pylist(), after.filter(changed).to_pylist(), strict=True
            ):
                if len(report.examples) < EXAMPLES:
                    report.examples.append({"before": snippet(old), "after": snippet(new)})
        return table

    mapped = dataset.with_format("arrow").map(
        apply, batched=True, batch_size=8192, load_from_cache_file=False, desc=f"cleaning: {report.op}"
    )
    return mapped.with_format(None)


def _normalize(dataset: Dataset, detection: Detection, params: dict, report: StepReport, **_: Any) -> Dataset:
    return _transform(dataset, detection, _normalizer(params["form"], params["whitespace"]), report)


def _redact_pii(
    dataset: Dataset, detection: Detection, params: dict, report: StepReport, **_: Any
) -> Dataset:
    kinds = params["kinds"]
    hits: Counter[str] = Counter()

    def redact(strings: pa.Array) -> pa.Array:
        rows, replaced = [], []
        for row, text, found in pii.scan(strings, kinds):
            hits.update(h.kind for h in found)
            rows.append(row)
            replaced.append(pii.replace_hits(text, found))
        if not rows:
            return strings
        mask = np.zeros(len(strings), dtype=bool)
        mask[rows] = True
        return pc.replace_with_mask(strings, pa.array(mask), pa.array(replaced, strings.type))

    result = _transform(dataset, detection, redact, report)
    report.details["redacted"] = dict(hits.most_common())
    return result


def _drop_pii_rows(
    dataset: Dataset, detection: Detection, params: dict, report: StepReport, **_: Any
) -> Dataset:
    cols = text_columns(detection, dataset.column_names)
    kinds = params["kinds"]
    keep_batches, hits = [], Counter[str]()
    for table in arrow_batches(dataset):
        keep = np.ones(table.num_rows, dtype=bool)
        for row, _text, found in pii.scan(row_text(table, cols), kinds):
            keep[row] = False
            hits.update(h.kind for h in found)
        keep_batches.append(keep)
    report.details["rows_with"] = dict(hits.most_common())
    report.examples = (
        _dropped_examples(dataset, np.concatenate(keep_batches), detection) if keep_batches else []
    )
    return _filter(dataset, keep_batches)


def _length_filter(
    dataset: Dataset, detection: Detection, params: dict, report: StepReport, tokenizer: Any = None
) -> Dataset:
    counter = _TokenCounter(tokenizer, detection)
    cols = text_columns(detection, dataset.column_names)
    low, high = params["min_tokens"], params["max_tokens"]
    keep_batches = []
    for table in arrow_batches(dataset):
        counts = counter.count(table, row_text(table, cols))
        keep_batches.append((counts >= low) & (counts <= high if high is not None else True))
    report.details["counted_with"] = counter.label
    report.examples = (
        _dropped_examples(dataset, np.concatenate(keep_batches), detection) if keep_batches else []
    )
    return _filter(dataset, keep_batches)


def _dedup_exact(
    dataset: Dataset, detection: Detection, params: dict, report: StepReport, **_: Any
) -> Dataset:
    cols = [c for c in detection.fields.values() if c in dataset.column_names]
    keys = [exact_keys(identity_text(table, cols)) for table in arrow_batches(dataset)]
    keep = first_occurrences(np.concatenate(keys)) if keys else np.zeros(0, dtype=bool)
    report.examples = _dropped_examples(dataset, keep, detection)
    return _filter(dataset, [keep])


def _dedup_near(
    dataset: Dataset, detection: Detection, params: dict, report: StepReport, **_: Any
) -> Dataset:
    cols = text_columns(detection, dataset.column_names)
    hasher = MinHasher()
    sigs = [hasher.signatures(row_text(table, cols)) for table in arrow_batches(dataset)]
    if not sigs:
        return dataset
    clusters = near_duplicates(np.concatenate(sigs), params["threshold"])
    keep = clusters.keep_mask()
    report.details["clusters"] = len(clusters.cluster_sizes())
    examples = _dropped_examples(dataset, keep, detection)
    for example in examples:
        kept = int(clusters.roots[example["row"]])
        example["kept_row"] = kept
        example["kept"] = snippet(row_text(dataset.select([kept]).with_format("arrow")[:], cols)[0].as_py())
    report.examples = examples
    return _filter(dataset, [keep])


def _resolve_label_conflicts(
    dataset: Dataset, detection: Detection, params: dict, report: StepReport, **_: Any
) -> Dataset:
    label_col = detection.fields.get("label")
    if detection.format != "classification" or label_col is None or label_col not in dataset.column_names:
        raise TunerError(
            f"[[data.cleaning]] op = 'resolve_label_conflicts' needs classification data (a text and a "
            f"label column), but the data is '{detection.format}'. Remove the step, or set [data] format = "
            "'classification' with fields = {text = '...', label = '...'}."
        )
    cols = text_columns(detection, dataset.column_names)
    conflicts = find_label_conflicts(dataset, cols, label_col)
    keep = conflicts.keep_mask(params["keep"])
    report.details.update({"texts": conflicts.texts, "rows": conflicts.rows, "ties": conflicts.ties})
    examples = _dropped_examples(dataset, keep, detection)
    if examples:
        labels = dataset.select([e["row"] for e in examples])[label_col]
        for example, label in zip(examples, labels, strict=True):
            example["label"] = str(label)
    report.examples = examples
    return _filter(dataset, [keep])


_STEPS: dict[str, Callable[..., Dataset]] = {
    "drop_empty": _drop_empty,
    "normalize": _normalize,
    "length_filter": _length_filter,
    "dedup_exact": _dedup_exact,
    "dedup_near": _dedup_near,
    "redact_pii": _redact_pii,
    "drop_pii_rows": _drop_pii_rows,
    "resolve_label_conflicts": _resolve_label_conflicts,
}


def apply_cleaning(
    dataset: Dataset, steps: list[dict[str, Any]], detection: Detection, *, tokenizer: Any = None
) -> tuple[Dataset, list[StepReport]]:
    """Apply the recipe's [[data.cleaning]] steps in order.

    Args:
        dataset: The loaded data.
        steps: Each {op = '...', ...parameters}, as in the recipe.
        detection: The resolved format and fields (which columns hold text).
        tokenizer: For length_filter: count tokens with the model's chat template; without one,
            whitespace words are counted (the StepReport says which).

    Returns:
        The cleaned dataset and one StepReport per step.

    Raises:
        TunerError: naming `data.cleaning[i].<param>` for an unknown op or bad parameter; all steps
            are checked before any runs.
    """
    checked = [validate_step(i, step) for i, step in enumerate(steps)]
    reports = []
    for op, params in checked:
        report = StepReport(op=op, params=params, rows_before=len(dataset), rows_after=len(dataset))
        dataset = _STEPS[op](dataset, detection, params, report, tokenizer=tokenizer)
        report.rows_after = len(dataset)
        reports.append(report)
    return dataset, reports


def drop_unlabeled(dataset: Dataset, detection: Detection) -> tuple[Dataset, StepReport | None]:
    """Classification rows whose label is missing or blank, dropped; the report (None when every
    row has a label) says how many, so the run's log and `tuner inspect` can say so."""
    column = detection.fields.get("label")
    if detection.format != "classification" or column not in dataset.column_names:
        return dataset, None
    keep_batches = [~_blank(table.column(column)) for table in arrow_batches(dataset)]
    missing = int(sum((~keep).sum() for keep in keep_batches))
    if missing == 0:
        return dataset, None
    report = StepReport(
        op=UNLABELED_OP,
        params={},
        rows_before=len(dataset),
        rows_after=len(dataset) - missing,
        details={"automatic": True, "column": column, "missing": missing},
    )
    report.examples = _dropped_examples(dataset, np.concatenate(keep_batches), detection)
    return _filter(dataset, keep_batches), report


def _feed(hasher: Any, array: pa.Array) -> None:
    """Hash an array's values (not its memory layout), recursing into lists and structs."""
    kind = array.type
    hasher.update(str(array.is_valid().to_numpy(zero_copy_only=False).astype(np.uint8).tobytes()).encode())
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        lengths = pc.fill_null(pc.list_value_length(array), 0).cast(pa.int64())
        hasher.update(lengths.to_numpy(zero_copy_only=False).tobytes())
        _feed(hasher, pc.list_flatten(array))
    elif pa.types.is_struct(kind):
        for i, f in enumerate(kind):
            hasher.update(f.name.encode())
            _feed(hasher, pc.struct_field(array, [i]))
    elif pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        hasher.update(pc.fill_null(array.cast(pa.int64()), 0).to_numpy(zero_copy_only=False).tobytes())
    elif pa.types.is_floating(kind):
        hasher.update(pc.fill_null(array.cast(pa.float64()), 0.0).to_numpy(zero_copy_only=False).tobytes())
    else:
        text = as_text(array, skip=frozenset())
        hasher.update(pc.utf8_length(text).cast(pa.int64()).to_numpy(zero_copy_only=False).tobytes())
        hasher.update(pc.binary_join(pa.ListArray.from_arrays([0, len(text)], text), "")[0].as_py().encode())


def content_fingerprint(dataset: Dataset) -> str:
    """A stable hash of the rows' contents (column names, values, order), for the run's [environment].

    Independent of how the Arrow data is chunked or cached: batches are cut at fixed row counts and
    values are hashed, not buffers. Same rows in the same order -> same fingerprint.
    """
    hasher = hashlib.sha256()
    hasher.update("\x1f".join(dataset.column_names).encode())
    for table in arrow_batches(dataset, 4096):
        for name in table.column_names:
            column = table.column(name)
            _feed(hasher, column.combine_chunks() if column.num_chunks != 1 else column.chunk(0))
    return "sha256:" + hasher.hexdigest()
