"""Findings `inspect` reports beyond duplicates and PII: label conflicts, constant columns, units."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from tuner_tui.data.clean import apply_cleaning, validate_step
from tuner_tui.data.formats import Detection
from tuner_tui.data.report import inspect_dataset
from tuner_tui.errors import TunerError

LABELLED = Detection("classification", {"text": "text", "label": "label"})


def _conflicting():
    """Ten clean rows, plus: 'x' labelled a, a, b (majority a); 'y' labelled a, b (a tie)."""
    import datasets

    rows = [
        {"text": f"clean row number {i} mail {i}@example.com", "label": "a" if i % 2 else "b"}
        for i in range(10)
    ]
    rows[3:3] = [{"text": "the same words x", "label": "a"}, {"text": "the same words y", "label": "a"}]
    rows += [
        {"text": "the same words x", "label": "a"},
        {"text": "the same words x", "label": "b"},
        {"text": "the same words y", "label": "b"},
    ]
    return datasets.Dataset.from_list(rows)


def test_label_conflicts_groups_texts_and_finds_the_majority() -> None:
    from tuner_tui.data.dedup import label_conflicts

    keys = np.array([7, 7, 7, 9, 9, 5, 5, 3], dtype=np.uint64)
    labels = np.array([0, 0, 1, 0, 1, 2, 2, -1])
    found = label_conflicts(keys, labels)
    assert (found.texts, found.rows, found.ties) == (2, 5, 1)
    assert found.group.tolist() == [0, 0, 0, 1, 1, -1, -1, -1]  # numbered by first appearance
    assert found.majority.tolist() == [True, True, False, False, False, False, False, False]
    assert found.keep_mask("majority").tolist() == [True, True, False, False, False, True, True, True]
    assert found.keep_mask("none").tolist() == [False] * 5 + [True] * 3
    # a row without a label conflicts with nothing
    assert label_conflicts(np.array([1, 1], np.uint64), np.array([0, -1])).texts == 0


def test_inspect_reports_label_conflicts_as_their_own_finding() -> None:
    report = inspect_dataset(_conflicting()).to_json()
    conflicts = report["label_conflicts"]
    assert (conflicts["texts"], conflicts["rows"], conflicts["ties"]) == (2, 5, 1)
    first = conflicts["examples"][0]
    assert first["text"] == "the same words x" and first["rows"] == [3, 12, 13]
    assert first["labels"] == {"a": 2, "b": 1}
    assert any("2 text(s) appear with different labels (5 rows)" in w for w in report["warnings"])
    assert any("resolve_label_conflicts" in w for w in report["warnings"])
    assert "@example.com" not in json.dumps(report)  # examples are masked like other findings
    clean = inspect_dataset(_conflicting().select(range(3))).to_json()
    assert clean["label_conflicts"]["texts"] == 0 and not any(
        "different labels" in w for w in clean["warnings"]
    )


def test_conflict_examples_are_masked() -> None:
    import datasets

    rows = [
        {"text": "call jane@example.com now", "label": "a"},
        {"text": "call jane@example.com now", "label": "b"},
    ]
    report = inspect_dataset(datasets.Dataset.from_list(rows * 2)).to_json()
    assert report["label_conflicts"]["texts"] == 1
    assert (
        "jane@" not in json.dumps(report["label_conflicts"])
        and "ja**@" in report["label_conflicts"]["examples"][0]["text"]
    )


@pytest.mark.parametrize(("keep", "kept_texts"), [("majority", ["the same words x"] * 2), ("none", [])])
def test_resolve_label_conflicts_step(keep: str, kept_texts: list[str]) -> None:
    data = _conflicting()
    cleaned, [report] = apply_cleaning(data, [{"op": "resolve_label_conflicts", "keep": keep}], LABELLED)
    left = [r for r in cleaned.to_list() if r["text"].startswith("the same")]
    assert [r["text"] for r in left] == kept_texts and all(r["label"] == "a" for r in left)
    assert report.rows_before == 15 and report.rows_after == 10 + len(kept_texts)
    assert report.details == {"texts": 2, "rows": 5, "ties": 1}
    assert report.params == {"keep": keep}
    assert report.examples and all("dropped" in e and "label" in e for e in report.examples)
    json.dumps(report.to_json())


def test_resolve_label_conflicts_parameters_and_format_are_checked() -> None:
    assert validate_step(0, {"op": "resolve_label_conflicts"}) == (
        "resolve_label_conflicts",
        {"keep": "majority"},
    )
    with pytest.raises(TunerError, match=r"data\.cleaning\[2\]\.keep must be 'majority' .* or 'none'"):
        validate_step(2, {"op": "resolve_label_conflicts", "keep": "first"})
    import datasets

    text_only = datasets.Dataset.from_list([{"text": "a"}, {"text": "a"}])
    with pytest.raises(TunerError, match="needs classification data"):
        apply_cleaning(text_only, [{"op": "resolve_label_conflicts"}], Detection("text", {"text": "text"}))


def test_the_recipe_accepts_the_new_op() -> None:
    from tuner_tui.data.ops import STEP_PARAMS
    from tuner_tui.recipe import CLEANING_OPS

    assert "resolve_label_conflicts" in CLEANING_OPS
    assert set(STEP_PARAMS) == set(CLEANING_OPS) - {"filter_language"}


def test_a_column_identical_in_every_row_is_a_finding() -> None:
    import datasets

    standing = "If you are a doctor, please answer the medical questions."
    rows = [
        {"instruction": standing, "input": f"I have symptom {i}", "output": f"Advice {i}"} for i in range(5)
    ]
    report = inspect_dataset(datasets.Dataset.from_list(rows)).to_json()
    assert report["constant_columns"] == {"instruction": standing}
    warning = next(w for w in report["warnings"] if "same value in every row" in w)
    assert (
        "Column 'instruction'" in warning
        and "fields = {system = 'instruction', instruction = 'input'}" in warning
    )
    varied = inspect_dataset(datasets.Dataset.from_list(rows[:1] + [{**rows[1], "instruction": "other"}]))
    assert varied.to_json()["constant_columns"] == {}
    assert (
        inspect_dataset(datasets.Dataset.from_list(rows[:1])).to_json()["constant_columns"] == {}
    )  # one row


def test_a_constant_column_across_batches() -> None:
    import pyarrow as pa

    from tuner_tui.data.report import _ConstantColumns

    found = _ConstantColumns(["text", "source", "turns"])
    turns = [[{"role": "user", "content": "hi"}]] * 2
    found.update(pa.table({"text": ["a", "b"], "source": ["same", "same"], "turns": turns}))
    found.update(pa.table({"text": ["c", "d"], "source": ["same", "same"], "turns": turns}))
    assert found.found(4) == {"source": "same", "turns": "user\nhi"}
    found.update(
        pa.table({"text": ["e"], "source": ["other"], "turns": turns[:1]})
    )  # only the last batch differs
    assert found.found(5) == {"turns": "user\nhi"}


def test_lengths_without_a_tokenizer_are_called_words() -> None:
    from rich.console import Console

    from tuner_tui.views.data_report import render_report

    report = inspect_dataset(_conflicting(), max_length=3)
    data = report.to_json()
    assert data["length_unit"] == "words" and data["token_lengths"]["unit"] == "words"
    assert {"min", "p50", "p95", "max", "counted_with"} <= data["token_lengths"].keys()  # keys kept
    out = io.StringIO()
    render_report(report, Console(file=out, width=80))
    shown = out.getvalue()
    assert "words per example" in shown and "tokens per example" not in shown
    assert "token " not in shown.replace("tokenizer", "")
    row = [str(data["token_lengths"][k]) for k in ("min", "p50", "p95", "max")]
    assert ["words", *row] in [line.replace("│", " ").split() for line in shown.splitlines()]
    assert "max_length 3 (words)" in shown
    assert "texts with conflicting labels" in shown and "2 (5 rows)" in shown
    assert max(len(line) for line in shown.splitlines()) <= 80


def test_the_ops_list_is_importable_without_numpy_or_pyarrow() -> None:
    """The wizard's cleaning list can take the engine's ops from here at start-up."""
    import subprocess
    import sys

    from tuner_tui.data.ops import DESCRIPTIONS, PARAM_CHOICES, STEP_PARAMS

    assert set(DESCRIPTIONS) == set(STEP_PARAMS)
    assert PARAM_CHOICES["resolve_label_conflicts"]["keep"] == ("majority", "none")
    code = (
        "import sys, tuner_tui.data.ops; print(sorted({'numpy', 'pyarrow', 'datasets'} & set(sys.modules)))"
    )
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        == "[]\n"
    )
