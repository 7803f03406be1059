"""Seeded train/validation/test splits, stratified by label, respecting splits the data brings.

Which split a row lands in depends on its contents and the seed only, never on where it sits in the
file: every row gets a seeded hash of its contents as a key, and each split takes the rows with the
smallest keys (per label, in proportion, for classification). The same rows in another order, or
with the columns in another order, give the same splits, row for row. Identical rows get identical
keys, so copies of a row stay together. `sample_rows` draws the evaluation sample the same way.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tuner_tui.data.formats import Detection
from tuner_tui.data.load import SPLIT_COLUMN, SPLIT_NAMES
from tuner_tui.data.text import BATCH_ROWS, arrow_batches, identity_text
from tuner_tui.errors import TunerError

if TYPE_CHECKING:
    from datasets import Dataset


def _label_codes(dataset: Dataset, column: str) -> np.ndarray:
    """One code per row for its label, numbered in the labels' sorted order (not in order of first
    appearance, which would let file order decide which label gets a rounding row)."""
    labels = dataset.with_format("arrow")[column] if len(dataset) else None
    if labels is None:
        return np.zeros(0, dtype=np.int64)
    strings = pc.cast(pc.fill_null(labels.cast("string"), "<missing>"), "string")
    if isinstance(strings, pa.ChunkedArray):
        strings = strings.combine_chunks()
    encoded = pc.dictionary_encode(strings)
    names = np.asarray(encoded.dictionary.to_pylist(), dtype=str)
    rank = np.empty(len(names), dtype=np.int64)
    rank[np.argsort(names, kind="stable")] = np.arange(len(names))
    return rank[encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)]


def check_labels(dataset: Dataset, detection: Detection) -> None:
    """Raise when a classification label column has fewer than two classes."""
    column = detection.fields["label"]
    classes = len(np.unique(_label_codes(dataset, column)))
    if classes < 2:
        raise TunerError(
            f"The label column '{column}' has {classes} distinct value(s); a classifier needs 2 or more. "
            "Check [data] fields.label, or use a different format."
        )


def row_keys(dataset: Dataset, seed: int, purpose: str = "split") -> np.ndarray:
    """A seeded 64-bit key per row, from the row's contents alone.

    Every column but `split` counts, taken in name order, so neither the order of the rows nor that
    of the columns changes a key. `purpose` keeps keys for different draws (the split, the
    evaluation sample) independent of each other.
    """
    columns = sorted(c for c in dataset.column_names if c != SPLIT_COLUMN)
    keys = np.zeros(len(dataset), dtype=np.uint64)
    if not columns:
        return keys
    salted = hashlib.blake2b(f"tuner {purpose} {seed}\x1f".encode(), digest_size=8)
    start = 0
    for table in arrow_batches(dataset.select_columns(columns), BATCH_ROWS):
        for i, text in enumerate(identity_text(table, columns).to_pylist(), start):
            hasher = salted.copy()
            hasher.update(text.encode("utf-8", "surrogatepass"))
            keys[i] = int.from_bytes(hasher.digest(), "little")
        start += table.num_rows
    return keys


def _quotas(groups: np.ndarray, total: int) -> tuple[np.ndarray, np.ndarray]:
    """Each group's share of `total` rows, in proportion to its size; largest remainders get the
    rows left over, so the quotas add up to `total` exactly."""
    values, counts = np.unique(groups, return_counts=True)
    exact = counts * total / len(groups)
    quota = np.floor(exact).astype(np.int64)
    for i in np.argsort(-(exact - quota), kind="stable")[: total - quota.sum()]:
        quota[i] += 1
    return values, quota


def _by_key(pool: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """`pool` in key order (position breaks ties: only identical rows share a key)."""
    return pool[np.lexsort((pool, keys[pool]))]


def _take(keys: np.ndarray, pool: np.ndarray, groups: np.ndarray | None, total: int) -> np.ndarray:
    """`total` rows of `pool`, those with the smallest keys, in proportion to each group."""
    total = min(len(pool), total)
    if total <= 0:
        return np.zeros(0, dtype=np.int64)
    if groups is None:
        return _by_key(pool, keys)[:total]
    values, quota = _quotas(groups, total)
    picked = [_by_key(pool[groups == v], keys)[:q] for v, q in zip(values, quota, strict=True)]
    return _by_key(np.concatenate(picked), keys)


def split_dataset(
    dataset: Dataset, detection: Detection, validation_fraction: float, test_fraction: float, seed: int
) -> dict[str, Dataset]:
    """Split into train/validation/test; a drop-in for `training.examples.split`.

    A `split` column (values train/validation/test, also valid/val/dev) decides each row's split, and
    is dropped from the result; a split the column lacks but whose fraction is above zero is carved
    out of the train rows. Otherwise each split takes the rows with the smallest seeded content keys
    (`row_keys`), stratified by label for classification data. Rows of every split are in key order,
    so file order plays no part in what a run trains and is evaluated on.

    Args:
        dataset: The (cleaned) data.
        detection: Its format and fields.
        validation_fraction: Share of rows for validation (0: no validation split).
        test_fraction: Share of rows for test (0: no test split).
        seed: The recipe's project seed.

    Returns:
        {"train": ..., "validation": ..., "test": ...}, each key present only when non-empty or asked for.

    Raises:
        TunerError: for unknown values in the split column, or a label column with one class.
    """
    stratify = detection.format == "classification" and detection.fields.get("label") in dataset.column_names
    if stratify:
        check_labels(dataset, detection)
    groups = _label_codes(dataset, detection.fields["label"]) if stratify else None
    keys = row_keys(dataset, seed)
    rows = np.arange(len(dataset))
    assigned: dict[str, np.ndarray] = {}
    if SPLIT_COLUMN in dataset.column_names:
        values = dataset.with_format("arrow")[SPLIT_COLUMN]
        names = pc.fill_null(pc.utf8_lower(pc.utf8_trim_whitespace(values.cast("string"))), "")
        unknown = sorted(set(pc.unique(names).to_pylist()) - set(SPLIT_NAMES))
        if unknown:
            raise TunerError(
                f"The '{SPLIT_COLUMN}' column holds {', '.join(map(repr, unknown[:5]))}; expected train, "
                "validation or test. Fix the values, or rename the column if it is not a split."
            )
        name_array = np.asarray(names.to_numpy(zero_copy_only=False), dtype=object)
        for raw, split in SPLIT_NAMES.items():
            chosen = rows[name_array == raw]
            if len(chosen):
                assigned[split] = np.sort(np.concatenate([assigned.get(split, chosen[:0]), chosen]))
        dataset = dataset.remove_columns(SPLIT_COLUMN)
        pool = assigned.pop("train", np.zeros(0, dtype=np.int64))
    else:
        pool = rows
    for name, share in (("test", test_fraction), ("validation", validation_fraction)):
        if name in assigned or share <= 0:
            continue
        # Shares are of the whole data, as in the recipe; the pool shrinks as splits are drawn.
        relative = min(1.0, share * len(dataset) / max(len(pool), 1))
        total = math.ceil(relative * len(pool))
        taken = _take(keys, pool, groups[pool] if groups is not None else None, total)
        assigned[name] = taken
        pool = np.setdiff1d(pool, taken, assume_unique=True)
    splits: dict[str, Dataset] = {}
    for name in ("test", "validation"):
        if name in assigned:
            splits[name] = dataset.select(_by_key(assigned[name], keys))
    splits["train"] = dataset.select(_by_key(pool, keys))
    return splits


@dataclass(frozen=True)
class Sample:
    """How an evaluation sample was drawn: `n` of the `of` rows of a split, with `seed`."""

    n: int
    of: int
    seed: int
    stratified: bool

    def to_json(self) -> dict[str, int | bool]:
        return {"n": self.n, "of": self.of, "seed": self.seed, "stratified": self.stratified}


def sample_rows(dataset: Dataset, detection: Detection, limit: int, seed: int) -> tuple[Dataset, Sample]:
    """At most `limit` rows of `dataset`: all of them, or a seeded sample that does not depend on
    file order, stratified by label for classification data (each label in proportion, to the row).

    Args:
        dataset: The split to sample (e.g. the test split).
        detection: Its format and fields.
        limit: `[evaluation] max_samples`.
        seed: The recipe's project seed.

    Returns:
        The rows, in key order, and how they were drawn.
    """
    if len(dataset) <= limit:
        return dataset, Sample(len(dataset), len(dataset), seed, stratified=False)
    label = detection.fields.get("label")
    groups = None
    if detection.format == "classification" and isinstance(label, str) and label in dataset.column_names:
        codes = _label_codes(dataset, label)
        groups = codes if len(np.unique(codes)) > 1 else None
    keys = row_keys(dataset, seed, purpose="evaluation sample")
    picked = _take(keys, np.arange(len(dataset)), groups, limit)
    return dataset.select(picked), Sample(len(picked), len(dataset), seed, stratified=groups is not None)
