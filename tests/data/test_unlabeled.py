"""Classification rows without a label are dropped with a recorded step and a warning, never
turned into a class named "None" (issue 19, point 11)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.evaluation.test_sampling import classification_recipe, write_csv
from tuner_tui.data.ops import UNLABELED_OP
from tuner_tui.data.pipeline import class_labels, load_splits
from tuner_tui.data.report import inspect_dataset
from tuner_tui.recipe import DataConfig


def rows(missing: list[str | None]) -> list[dict[str, str | None]]:
    labelled = [
        {"sentence": f"Sentence {i} about the quarter.", "label": ("up", "down")[i % 2]} for i in range(40)
    ]
    unlabelled = [
        {"sentence": f"Unlabelled sentence {i}.", "label": value} for i, value in enumerate(missing)
    ]
    return labelled + unlabelled


def write_jsonl(path: Path, data: list[dict[str, str | None]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in data), encoding="utf-8")
    return path


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_rows_without_a_label_are_dropped_with_a_recorded_step(tmp_path: Path, kind: str) -> None:
    if kind == "csv":  # empty cells: read as null
        data = write_csv(tmp_path / "data.csv", rows(["", "", ""]))  # type: ignore[arg-type]
    else:
        data = write_jsonl(tmp_path / "data.jsonl", rows([None, "", "   "]))
    splits = load_splits(classification_recipe(tmp_path, data))
    assert class_labels(splits) == ["down", "up"]  # no "None", no ""
    assert splits.rows_loaded == 43 and splits.rows_cleaned == 40
    (step,) = [r for r in splits.cleaning if r.op == UNLABELED_OP]
    assert (step.rows_before, step.rows_after) == (43, 40)
    assert step.details == {"automatic": True, "column": "label", "missing": 3}
    assert step.message().startswith("3 of 43 rows have no value in the label column 'label'")


def test_fully_labelled_data_records_no_such_step(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "data.jsonl", rows([]))
    assert not load_splits(classification_recipe(tmp_path, data)).cleaning


def test_inspect_counts_no_class_for_missing_labels_and_warns(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "data.jsonl", rows([None, None, ""]))
    fields = {"text": "sentence", "label": "label"}
    report = inspect_dataset(
        data, recipe_data=DataConfig(path=str(data), format="classification", fields=fields)
    )
    assert set(report.labels or {}) == {"up", "down"}
    assert any(
        w.startswith("3 of 43 rows have no value in the label column 'label'") for w in report.warnings
    )
