"""The recipe's data, the same way everywhere: load -> detect -> clean -> fingerprint -> split.

Training and evaluation both call `load_splits`, so the evaluation's held-out rows are exactly
the rows training held out, after the same cleaning.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner_tui.data.clean import StepReport, apply_cleaning, content_fingerprint, drop_unlabeled
from tuner_tui.data.formats import Detection, resolve_format
from tuner_tui.data.load import LoadInfo, load_data
from tuner_tui.data.ops import UNUSABLE_PAIRS_OP
from tuner_tui.data.split import split_dataset
from tuner_tui.errors import TunerError
from tuner_tui.recipe import Recipe

if TYPE_CHECKING:
    from datasets import Dataset


@dataclass
class DataSplits:
    splits: dict[str, Dataset]
    detection: Detection
    rows_loaded: int
    rows_cleaned: int
    cleaning: list[StepReport]
    fingerprint: str
    load_info: LoadInfo


def check_task_fits(detection: Detection, task: str) -> None:
    preference_data = detection.format in ("preference", "kto")
    if task == "preference" and not preference_data:
        raise TunerError(
            f"model.task is 'preference' but the data looks like '{detection.format}': it needs "
            "prompt/chosen/rejected pairs (format 'preference') or answers marked good or bad with a "
            "true/false label (format 'kto'). Map its columns with [data] fields."
        )
    if task != "preference" and preference_data:
        raise TunerError(
            f"The data is '{detection.format}' preference data, but model.task is '{task}': set "
            "[model] task = 'preference' to tune on it (with [preference] loss), or point [data] "
            "path at supervised data."
        )
    if task == "sequence_classification" and detection.format != "classification":
        raise TunerError(
            f"model.task is 'sequence_classification' but the data looks like '{detection.format}': "
            "it needs a text column and a label column ([data] fields = {text = ..., label = ...})."
        )
    if task == "causal_lm" and detection.format == "classification":
        raise TunerError(
            "The data is text + label (classification) but model.task is 'causal_lm': set "
            "[model] task = 'sequence_classification', or map the data as prompt_completion."
        )


def class_labels(data: DataSplits) -> list[str]:
    """The classification labels, sorted: the classifier's outputs in order (id 0 first).

    Training sizes the classification head with these, and the memory estimate counts its
    parameters with them, so both see the same head.
    """
    label_col = data.detection.fields["label"]
    return sorted({str(v) for part in data.splits.values() for v in part.unique(label_col)})


def drop_unusable_pairs(dataset: Any, detection: Detection) -> tuple[Any, StepReport | None]:
    """Preference pairs (or KTO rows) that cannot train, dropped before the split; the report
    (None when every row can train) says how many and why, for the run's log."""
    if detection.format not in ("preference", "kto"):
        return dataset, None
    from tuner_tui.data.preference import drop_bad_kto, drop_bad_pairs

    before = len(dataset)
    kept, check = (drop_bad_pairs if detection.format == "preference" else drop_bad_kto)(dataset, detection)
    if len(kept) == before:
        return kept, None
    report = StepReport(
        op=UNUSABLE_PAIRS_OP,
        params={},
        rows_before=before,
        rows_after=len(kept),
        details={"automatic": True, "why": check.summary()},
    )
    return kept, report


def load_splits(recipe: Recipe, base_dir: Path | None = None, tokenizer: Any = None) -> DataSplits:
    """Load, detect, clean (the recipe's [[data.cleaning]]), fingerprint and split the data."""
    dataset, info = load_data(recipe.data.path, base_dir)
    if len(dataset) == 0:
        raise TunerError(f"The data at {recipe.data.path} has no rows.")
    sample = dataset.select(range(min(len(dataset), 20))).to_list()
    detection = resolve_format(recipe.data.format, recipe.data.fields, dataset.column_names, sample)
    check_task_fits(detection, recipe.model.task)
    cleaned, reports = apply_cleaning(dataset, recipe.data.cleaning, detection, tokenizer=tokenizer)
    cleaned, unlabeled = drop_unlabeled(cleaned, detection)
    if unlabeled is not None:
        reports.append(unlabeled)
    cleaned, unusable = drop_unusable_pairs(cleaned, detection)
    if unusable is not None:
        reports.append(unusable)
    if len(cleaned) == 0:
        steps = ", ".join(f"{r.op} ({r.rows_before} -> {r.rows_after})" for r in reports)
        raise TunerError(f"The [[data.cleaning]] steps removed every row: {steps}. Loosen them.")
    fingerprint = content_fingerprint(cleaned)
    splits = split_dataset(
        cleaned, detection, recipe.data.validation_fraction, recipe.data.test_fraction, recipe.project.seed
    )
    return DataSplits(splits, detection, len(dataset), len(cleaned), reports, fingerprint, info)
