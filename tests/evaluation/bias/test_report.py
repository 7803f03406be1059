from __future__ import annotations

import json
from pathlib import Path

from tests.evaluation.bias.fakes import LeaningCausal, LeaningClassifier
from tests.evaluation.bias.test_audit import planted
from tests.evaluation.bias.test_paired import CSV
from tuner_tui.evaluation.bias import bias_markdown, bias_report
from tuner_tui.recipe import BiasConfig


def test_classification_report_end_to_end_on_fakes(tmp_path: Path) -> None:
    texts, labels = planted(100)
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(CSV, encoding="utf-8")
    report = bias_report(
        BiasConfig(groups=["gender", "religion"]),
        "sequence_classification",
        LeaningClassifier(she_p=0.3),
        LeaningClassifier(she_p=0.8),
        iter(texts),
        labels,
        ["She asked about the invoice.", "The parcel was late."],
        pairs_path=pairs,
        max_pairs=40,
    )
    assert set(report) == {"data_audit", "counterfactual", "paired"}
    json.dumps(report)
    assert report["data_audit"]["flags"]
    assert report["counterfactual"]["comparison"]["overall"]["gap_increased"] is True
    assert report["paired"]["status"] == "not_applicable"
    md = bias_markdown(report)
    assert "## Bias report" in md and "| Family | Group x vs y |" in md and "Label skew" in md
    assert "Not applicable" in md and "fair" not in md.replace(
        "none of them can show that a model is fair", ""
    )


def test_causal_report_without_base_or_pairs() -> None:
    report = bias_report(
        BiasConfig(groups=["age"]),
        "causal_lm",
        LeaningCausal(),
        None,
        ["An elderly man"],
        None,
        [],
        max_pairs=10,
    )
    json.dumps(report)
    assert report["paired"] == {"status": "not_requested"}
    assert report["counterfactual"]["base"] is None and report["counterfactual"]["pairs"]["total"] <= 10
    md = bias_markdown(report)
    assert (
        "Tuned LL gap x-y" in md
        and "Base" not in md.split("### Counterfactual probes")[1].split("Thresholds")[0]
    )


def test_disabled() -> None:
    report = bias_report(BiasConfig(enabled=False), "causal_lm", LeaningCausal(), None, [], None, [])
    assert report["paired"]["status"] == "disabled"
    assert "Disabled" in bias_markdown(report)
