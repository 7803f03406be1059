"""The one presenter of report.json: hand-edited or old reports read without raising, and the
CLI and the wizard get the same cells."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuner_tui.views.evaluation_report import ReportUnreadable, load_report, read_report, verdict_line


def test_a_full_report_becomes_cells() -> None:
    view = read_report(
        {
            "verdict": "fail",
            "task": "classification",
            "split": "test",
            "examples": 20,
            "objectives": [
                {
                    "metric": "accuracy",
                    "direction": ">=",
                    "target": 0.9,
                    "base": 0.5,
                    "tuned": 0.85,
                    "margin": -0.05,
                    "passed": False,
                },
            ],  # fmt: skip
            "metrics": {
                "base": {"accuracy": 0.5, "loss": 1.25},
                "tuned": {
                    "accuracy": 0.85,
                    "confusion_matrix": {"labels": ["a", "b"], "matrix": [[3, 1], [0, 4]]},
                },
            },
            "samples": {"shown": [{"input": "x  y", "tuned": "b"}], "best": [{"input": "z"}], "worst": []},
            "bias": {"data_audit": {"status": "skipped", "reason": "no groups"}},
        }
    )
    assert view.where == "task classification, test split, 20 examples"
    assert view.objectives[0].cells() == ("accuracy", ">= 0.9000", "0.5000", "0.8500", "-0.0500")
    assert not view.objectives[0].passed
    assert view.models == ("base", "tuned") and dict(view.metrics)["loss"] == ("1.2500", "-")
    assert view.confusion is not None and view.confusion.matrix == ((3, 1), (0, 4))
    assert view.shown.columns == ("input", "tuned") and view.shown.rows == (("x y", "b"),)
    assert view.ranked.kinds == ("best",)
    audit, counterfactual, _ = view.bias
    assert audit.present and not audit.ran and audit.reason == "no groups"
    assert not counterfactual.present
    assert verdict_line(view).plain == "Verdict: fail (at least one objective is not met)."


@pytest.mark.parametrize(
    "report",
    [
        {},
        {"objectives": "many", "metrics": [], "samples": None, "bias": 3},
        {
            "objectives": [7, {"metric": 1}],
            "metrics": {"tuned": {"confusion_matrix": {"labels": ["a"], "matrix": "x"}}},
        },
        {"samples": {"shown": ["text", {"input": 1.5}]}, "sample": {"n": "?"}, "split": "test"},
    ],
)
def test_odd_reports_read_as_absent_parts(report: dict) -> None:
    view = read_report(report)
    assert view.verdict in ("?", report.get("verdict", "?"))
    assert view.confusion is None


def test_an_unreadable_report_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    path.write_text("[1, 2]")
    with pytest.raises(ReportUnreadable, match="not a report"):
        load_report(path)
    path.write_text("{oops")
    with pytest.raises(ReportUnreadable, match=str(path)):
        load_report(path)
    path.write_text(json.dumps({"verdict": "pass"}))
    assert load_report(path).verdict == "pass"
