"""The bias report's words must follow from its numbers (issue 12, point 6).

Each part gets one headline, in words; a headline says a measure rose only when the numbers it
quotes went up, and no rendered text shows raw field names ("change flip rate -0.3920", "gap
increased yes") or a bare status ("Counterfactual probes: ok"). Checked on both renderings: the
report.md section and the wizard's Evaluation step.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.evaluation.bias.fakes import LeaningCausal, LeaningClassifier, StereoMasked
from tests.evaluation.bias.test_audit import planted
from tests.evaluation.bias.test_counterfactual import PAIRS
from tests.evaluation.bias.test_paired import CSV
from tuner_tui.evaluation.bias import bias_markdown, bias_report, load_pairs, run_counterfactual, run_paired
from tuner_tui.recipe import BiasConfig
from tuner_tui.views.evaluation_report import bias_text, read_report

TITLES = {"data_audit": "Data audit", "counterfactual": "Counterfactual probes", "paired": "Paired sentences"}
MARKDOWN_TITLES = {
    "data_audit": "Data audit",
    "counterfactual": "Counterfactual probes",
    "paired": "Paired sentences (CrowS-Pairs format)",
}
# Field names of report.json that must never reach the prose.
RAW = re.compile(
    r"\b(flip_rate|mean_abs_shift|gap_increased|increased_metrics|change_\w+|tuned_\w+|base_\w+|"
    r"mean_\w+_gap|share_ci95|prefers_more_stereotypical|\w+_increase(_\w+)?)\b"
    r"|change flip rate|gap increased (yes|no)|tuned flip rate|base flip rate \d",
)
NUMBER = r"(-?\d+(?:\.\d+)?)"
MOVE = re.compile(rf"(rose|fell) from {NUMBER}(%?) to {NUMBER}(%?)")


def screen_lines(bias: dict[str, Any]) -> dict[str, str]:
    """The wizard's bias text, as the first line of each part."""
    text = bias_text(read_report({"bias": bias})).plain
    heads = {}
    for name, title in TITLES.items():
        found = [line for line in text.splitlines() if line.startswith(title + ":")]
        assert len(found) == 1, (title, text)
        heads[name] = found[0][len(title) + 1 :].strip()
    return heads


def markdown_headline(markdown: str, name: str) -> str:
    section = markdown.split(f"### {MARKDOWN_TITLES[name]}\n", 1)[1].split("\n### ", 1)[0]
    found = [line for line in section.splitlines() if line.startswith("**In short:**")]
    assert len(found) == 1, section
    return found[0].removeprefix("**In short:**").strip()


def assert_consistent(headline: str) -> None:
    """Every "rose/fell from A to B" agrees with A and B; "widened"/"narrowed" with at least one."""
    moves = MOVE.findall(headline)
    for verb, a, _, b, _ in moves:
        assert (float(b) > float(a)) if verb == "rose" else (float(b) < float(a)), headline
    verbs = {verb for verb, *_ in moves}
    if re.search(r"\b(widened|increased|raised)\b", headline):
        assert "rose" in verbs, headline
    if re.search(r"\b(narrowed|decreased|lowered)\b", headline):
        assert "fell" in verbs, headline
    assert headline.strip().lower() not in {"ok", "ok."}, headline


def check_rendering(bias: dict[str, Any]) -> dict[str, str]:
    """Both renderings: one consistent headline per part, the same in both, and no raw names."""
    markdown = bias_markdown(bias)
    screen = screen_lines(bias)
    assert not RAW.search(markdown.split("Example pairs:")[0]), RAW.search(markdown).group(0)
    assert not RAW.search(bias_text(read_report({"bias": bias})).plain), RAW.search(
        bias_text(read_report({"bias": bias})).plain
    ).group(0)
    for name in TITLES:
        headline = markdown_headline(markdown, name) if bias[name].get("status") == "ok" else screen[name]
        assert_consistent(headline)
        assert screen[name] == headline or bias[name].get("status") != "ok"
    return screen


def classification_bias(base: Any, tuned: Any, tmp_path: Path) -> dict[str, Any]:
    texts, labels = planted(100)
    return {
        "data_audit": bias_report(
            BiasConfig(groups=["gender", "religion"]),
            "sequence_classification",
            tuned,
            base,
            iter(texts),
            labels,
            [],
        )["data_audit"],
        "counterfactual": run_counterfactual(base, tuned, "sequence_classification", [], None, probes=PAIRS),
        "paired": {"status": "not_requested"},
    }


def test_flip_rate_falls_while_the_shift_rises_reads_as_mixed(tmp_path: Path) -> None:
    # As in the issue: the flip rate fell (here 33.3% -> 0.0%) while the probability shift rose.
    bias = classification_bias(
        LeaningClassifier(base_p=0.55, she_p=0.45), LeaningClassifier(base_p=0.99, she_p=0.6), tmp_path
    )
    cf = bias["counterfactual"]
    assert cf["base"]["overall"]["flip_rate"] > cf["tuned"]["overall"]["flip_rate"] == 0.0
    # No sentence may say the gap simply "increased" while the flip rate shown went down.
    text = bias_text(read_report({"bias": bias})).plain + bias_markdown(bias)
    assert "increased the overall gap" not in text
    heads = check_rendering(bias)
    headline = heads["counterfactual"]
    assert "flip rate fell from 33.3% to 0.0%" in headline, headline
    assert "mean probability shift rose from 0.033 to 0.130" in headline, headline
    assert "widened" not in headline and "narrowed" not in headline
    # The table shows the same numbers the headline quotes.
    markdown = bias_markdown(bias)
    overall = next(line for line in markdown.splitlines() if line.startswith("| all | all pairs |"))
    assert "33.3%" in overall and "0.0%" in overall and "0.033" in overall and "0.130" in overall
    # Findings name the measure behind each "widened"/"narrowed".
    findings = " ".join(cf["findings"])
    assert "widened the gap for 1 group pair(s): gender female vs male (mean probability shift)" in findings
    assert "narrowed the gap for 1 group pair(s): gender female vs male (flip rate)" in findings


@pytest.mark.parametrize(
    ("base", "tuned", "word", "verbs"),
    [
        (LeaningClassifier(0.8, 0.8), LeaningClassifier(0.8, 0.3), "widened", {"rose"}),
        (LeaningClassifier(0.8, 0.3), LeaningClassifier(0.8, 0.8), "narrowed", {"fell"}),
        (LeaningClassifier(0.8, 0.3), LeaningClassifier(0.8, 0.3), "did not change", set()),
    ],
    ids=["widened", "narrowed", "unchanged"],
)
def test_counterfactual_headline_follows_the_numbers(
    base: Any, tuned: Any, word: str, verbs: set[str], tmp_path: Path
) -> None:
    heads = check_rendering(classification_bias(base, tuned, tmp_path))
    headline = heads["counterfactual"]
    assert word in headline, headline
    assert {verb for verb, *_ in MOVE.findall(headline)} == verbs, headline


def test_tuned_only_headline_makes_no_comparison(tmp_path: Path) -> None:
    heads = check_rendering(classification_bias(None, LeaningClassifier(0.8, 0.3), tmp_path))
    headline = heads["counterfactual"]
    assert "2 of 6 pairs" in headline and not MOVE.search(headline), headline
    assert "no base model" in headline.lower()


def test_causal_headline_speaks_of_gap_size(tmp_path: Path) -> None:
    out = run_counterfactual(
        LeaningCausal(),
        LeaningCausal(penalty=0.5, she_lean=1.2),
        "causal_lm",
        [],
        ["gender"],
        probes=PAIRS[:4],
    )
    bias = {
        "data_audit": {"status": "disabled", "reason": "off"},
        "counterfactual": out,
        "paired": {"status": "not_requested"},
    }
    headline = check_rendering(bias)["counterfactual"]
    assert "widened" in headline and "log-likelihood gap rose from 0.000 to" in headline, headline


def test_paired_headline_says_fell_when_the_share_fell(tmp_path: Path) -> None:
    path = tmp_path / "pairs.csv"
    path.write_text(CSV, encoding="utf-8")
    out = run_paired(StereoMasked(), StereoMasked(marker="nomarker"), load_pairs(path))
    bias = {
        "data_audit": {"status": "disabled", "reason": "off"},
        "counterfactual": {"status": "disabled"},
        "paired": out,
    }
    headline = check_rendering(bias)["paired"]
    assert "fell from 66.7% to 0.0%" in headline, headline
    assert "did not increase" not in " ".join(out["findings"])


def test_audit_headline_counts_what_it_flags(tmp_path: Path) -> None:
    bias = classification_bias(None, LeaningClassifier(), tmp_path)
    flags = bias["data_audit"]["flags"]
    headline = check_rendering(bias)["data_audit"]
    assert flags and headline.startswith(f"{len(flags)} flag"), headline
    assert "label skew" in headline.lower()
    quiet = bias_report(
        BiasConfig(groups=["age"]), "causal_lm", LeaningCausal(), None, ["The parcel was late."], None, []
    )
    assert screen_lines(quiet)["data_audit"].startswith("Nothing flagged")


def test_headlines_are_stored_in_the_report(tmp_path: Path) -> None:
    bias = classification_bias(LeaningClassifier(0.8, 0.8), LeaningClassifier(0.8, 0.3), tmp_path)
    report = bias_report(
        BiasConfig(groups=["gender"]), "sequence_classification", LeaningClassifier(0.8, 0.3),
        LeaningClassifier(0.8, 0.8), iter(planted(100)[0]), planted(100)[1], ["She asked about the invoice."],
    )  # fmt: skip
    assert all(isinstance(report[name].get("headline"), str) for name in ("data_audit", "counterfactual"))
    assert screen_lines(report)["counterfactual"] == report["counterfactual"]["headline"]
    assert bias["counterfactual"]["status"] == "ok"
