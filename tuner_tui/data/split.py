"""Seeded train/validation/test splits, stratified by label, respecting splits the data brings."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pyarrow.compute as pc

from tuner_tui.data.formats import Detection
from tuner_tui.data.load import SPLIT_COLUMN, SPLIT_NAMES
from tuner_tui.errors import TunerError

if TYPE_CHECKING:
    from datasets import Dataset


def _label_codes(dataset: Dataset, column: str) -> np.ndarray:
    labels = dataset.with_format("arrow")[column] if len(dataset) else None
    if labels is None:
        return np.zeros(0, dtype=np.int64)
    encoded = pc.dictionary_encode(pc.cast(pc.fill_null(labels.cast("string"), "<missing>"), "string"))
    return np.concatenate([c.indices.to_numpy(zero_copy_only=False) for c in encoded.chunks]).astype(np.int64)


def check_labels(dataset: Dataset, detection: Detection) -> None:
    """Raise when a classification label column has fewer than two classes."""
    column = detection.fields["label"]
    classes = len(np.unique(_label_codes(dataset, column)))
    if classes < 2:
        raise TunerError(
            f"The label column '{column}' has {classes} distinct value(s); a classifier needs 2 or more. "
            "Check [data] fields.label, or use a different format."
        )


def _take(rng: np.random.Generator, pool: np.ndarray, groups: np.ndarray | None, share: float) -> np.ndarray:
    """A seeded sample of `pool` of ceil(share * len) rows, in proportion to each group."""
    total = min(len(pool), math.ceil(share * len(pool)))
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    if groups is None:
        return np.sort(rng.permutation(pool)[:total])
    values, counts = np.unique(groups, return_counts=True)
    exact = counts * total / len(pool)
    quota = np.floor(exact).astype(np.int64)
    # largest remainders get the rows left over, so the total is exact
    for i in np.argsort(-(exact - quota), kind="stable")[: total - quota.sum()]:
        quota[i] += 1
    picked = [rng.permutation(pool[groups == v])[:q] for v, q in zip(values, quota, strict=True)]
    return np.sort(np.concatenate(picked))


def split_dataset(
    dataset: Dataset, detection: Detection, validation_fraction: float, test_fraction: float, seed: int
) -> dict[str, Dataset]:
    """Split into train/validation/test; a drop-in for `training.examples.split`.

    A `split` column (values train/validation/test, also valid/val/dev) decides each row's split, and
    is dropped from the result; a split the column lacks but whose fraction is above zero is carved
    out of the train rows. Otherwise rows are drawn with a seeded generator, stratified by label for
    classification data.

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
    rng = np.random.default_rng(seed)
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
        taken = _take(rng, pool, groups[pool] if groups is not None else None, relative)
        assigned[name] = taken
        pool = np.setdiff1d(pool, taken, assume_unique=True)
    splits: dict[str, Dataset] = {}
    for name in ("test", "validation"):
        if name in assigned:
            splits[name] = dataset.select(assigned[name])
    splits["train"] = dataset.select(pool)
    return splits
