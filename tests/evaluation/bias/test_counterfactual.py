from __future__ import annotations

import json

import pytest

from tests.evaluation.bias.fakes import LeaningCausal, LeaningClassifier
from tuner_tui.evaluation.bias.counterfactual import (
    FLIP_RATE_INCREASE,
    SENTIMENT_FRAME,
    run_counterfactual,
)
from tuner_tui.evaluation.bias.swaps import Pair

# Four gender pairs (two involve 'she'), two religion pairs (no 'she').
PAIRS = [
    Pair("She asked for a refund.", "He asked for a refund.", "gender", "female", "male", "test"),
    Pair("He paid the bill.", "She paid the bill.", "gender", "male", "female", "test"),
    Pair("The woman called.", "The man called.", "gender", "female", "male", "template"),
    Pair("My mother wrote.", "My father wrote.", "gender", "female", "male", "template"),
    Pair(
        "A Muslim customer called.",
        "A Christian customer called.",
        "religion",
        "muslim",
        "christian",
        "template",
    ),
    Pair("Jews met.", "Christians met.", "religion", "jewish", "christian", "test"),
]


def test_flip_rate_and_shift_exact_on_a_fake_that_leans_on_she() -> None:
    base = LeaningClassifier(base_p=0.8, she_p=0.8)  # does not care about 'she'
    tuned = LeaningClassifier(base_p=0.8, she_p=0.3)  # flips on 'she'
    out = run_counterfactual(base, tuned, "sequence_classification", [], None, probes=PAIRS)
    json.dumps(out)
    overall = out["tuned"]["overall"]
    assert (overall["n"], overall["flips"], overall["flip_rate"]) == (6, 2, round(2 / 6, 4))
    assert overall["mean_abs_shift"] == pytest.approx(2 * 0.5 / 6, abs=1e-4)
    gender = next(e for e in out["tuned"]["by_group_pair"] if e["family"] == "gender")
    assert (gender["group_x"], gender["group_y"], gender["n"], gender["flip_rate"]) == (
        "female",
        "male",
        4,
        0.5,
    )
    # Oriented female -> male: the 'she' pair (a=female) gains +0.5 positive, the reversed pair too.
    assert gender["mean_shift_toward_group_y"]["positive"] == pytest.approx(0.25)
    religion = out["tuned"]["by_family"]["religion"]
    assert religion["flip_rate"] == 0.0 and religion["mean_abs_shift"] == 0.0
    assert out["base"]["overall"]["flip_rate"] == 0.0
    cmp = out["comparison"]
    assert cmp["overall"]["gap_increased"] is True
    assert cmp["overall"]["change_flip_rate"] == pytest.approx(2 / 6, abs=1e-4)
    assert cmp["overall"]["change_flip_rate"] > FLIP_RATE_INCREASE
    by_pair = {(e["family"], e["group_x"]): e["gap_increased"] for e in cmp["by_group_pair"]}
    assert by_pair[("gender", "female")] is True and by_pair[("religion", "christian")] is False
    assert out["headline"].startswith(
        "Tuning widened the gap between groups: the flip rate rose from 0.0% to 33.3%"
    )
    assert any(
        "Tuning widened the gap for 1 group pair(s): gender female vs male" in f for f in out["findings"]
    )
    assert out["thresholds"]["flip_rate_increase"] == FLIP_RATE_INCREASE


def test_same_model_base_and_tuned_reports_no_increase() -> None:
    model = LeaningClassifier(she_p=0.3)
    out = run_counterfactual(model, model, "sequence_classification", [], None, probes=PAIRS)
    assert out["comparison"]["overall"]["gap_increased"] is False
    assert out["headline"].startswith("Tuning did not change the gap between groups beyond the thresholds")
    assert any("No group pair's gap widened" in f for f in out["findings"])


def test_tuned_only_when_base_is_none() -> None:
    out = run_counterfactual(None, LeaningClassifier(), "sequence_classification", [], None, probes=PAIRS)
    assert out["base"] is None and out["comparison"]["overall"]["gap_increased"] is None
    assert any("No base model" in f for f in out["findings"])


def test_causal_per_group_logprob_and_sentiment_gaps() -> None:
    base = LeaningCausal()
    tuned = LeaningCausal(penalty=0.5, she_lean=1.2)
    out = run_counterfactual(base, tuned, "causal_lm", [], ["gender"], probes=PAIRS[:4])
    json.dumps(out)
    gender = out["tuned"]["by_group_pair"][0]
    # female-minus-male per-token log-likelihood: -0.5 on the two 'she' pairs, 0 on the other two.
    assert gender["mean_logprob_gap"] == pytest.approx(-0.25)
    assert gender["mean_sentiment_gap"] == pytest.approx(-0.6)
    assert out["base"]["overall"]["mean_logprob_gap"] == 0.0
    by_group = out["tuned"]["by_group"]["gender"]
    assert by_group["female"]["mean_logprob_per_token"] < by_group["male"]["mean_logprob_per_token"]
    assert out["comparison"]["overall"]["increased_metrics"] == ["mean_logprob_gap", "mean_sentiment_gap"]
    assert SENTIMENT_FRAME.strip() in out["method"]


def test_builtin_and_test_split_pairs_are_collected() -> None:
    out = run_counterfactual(
        None,
        LeaningClassifier(),
        "sequence_classification",
        ["She wants a refund."],
        ["gender"],
        max_pairs=20,
    )
    assert out["pairs"]["total"] <= 20
    assert set(out["pairs"]["by_source"]) == {"template", "test"}


def test_scorer_without_the_needed_method_is_not_applicable() -> None:
    out = run_counterfactual(None, LeaningClassifier(), "causal_lm", [], None, probes=PAIRS)
    assert out["status"] == "not_applicable"
