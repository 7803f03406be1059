"""Metric modules load offline and agree with the reference libraries they wrap."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest

from tuner_tui.errors import TunerError
from tuner_tui.evaluation.metrics import (
    METRICS,
    compute_label_metrics,
    compute_text_metrics,
    metrics_for,
    perplexity_from_losses,
)
from tuner_tui.recipe import METRIC_TASKS

PREDICTIONS = [0, 1, 2, 2, 1, 0, 0, 2, 1, 1]
REFERENCES = [0, 1, 1, 2, 1, 0, 2, 2, 0, 1]
HYPOTHESES = ["the cat sat on the mat", "a quick brown fox", "hello world", "Paris is the capital"]
TARGETS = ["the cat is on the mat", "the quick brown fox jumps", "hello  world", "The capital is Paris"]


def test_every_recipe_metric_is_computed_here() -> None:
    assert set(METRICS) == set(METRIC_TASKS)
    assert all(METRICS[name].task == task for name, task in METRIC_TASKS.items())


def test_label_metrics_match_scikit_learn() -> None:
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

    result = compute_label_metrics(
        ["accuracy", "f1_macro", "precision_macro", "recall_macro"], PREDICTIONS, REFERENCES, labels=[0, 1, 2]
    )
    assert result["accuracy"] == pytest.approx(accuracy_score(REFERENCES, PREDICTIONS))
    assert result["f1_macro"] == pytest.approx(f1_score(REFERENCES, PREDICTIONS, average="macro"))
    assert result["precision_macro"] == pytest.approx(
        precision_score(REFERENCES, PREDICTIONS, average="macro")
    )
    assert result["recall_macro"] == pytest.approx(recall_score(REFERENCES, PREDICTIONS, average="macro"))
    per_class = f1_score(REFERENCES, PREDICTIONS, average=None)
    assert [result["per_class"][str(i)]["f1"] for i in range(3)] == pytest.approx(list(per_class))
    assert result["per_class"]["2"]["support"] == 3


def test_text_metrics_match_rouge_score_and_sacrebleu() -> None:
    import sacrebleu
    from rouge_score import rouge_scorer

    result = compute_text_metrics(
        ["rouge1", "rouge2", "rouge_l", "bleu", "chrf", "exact_match"], HYPOTHESES, TARGETS
    )
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    scores = [scorer.score(t, h) for h, t in zip(HYPOTHESES, TARGETS, strict=True)]
    for ours, theirs in (("rouge1", "rouge1"), ("rouge2", "rouge2"), ("rouge_l", "rougeL")):
        assert result[ours] == pytest.approx(np.mean([s[theirs].fmeasure for s in scores]))
    assert result["bleu"] == pytest.approx(sacrebleu.corpus_bleu(HYPOTHESES, [TARGETS]).score / 100)
    assert result["chrf"] == pytest.approx(sacrebleu.corpus_chrf(HYPOTHESES, [TARGETS]).score / 100)
    assert result["exact_match"] == pytest.approx(0.25)  # "hello world" after whitespace collapse


def test_metric_modules_load_with_the_hub_offline(tmp_path) -> None:
    code = (
        "from tuner_tui.evaluation.metrics import compute_label_metrics, compute_text_metrics\n"
        "print(compute_label_metrics(['accuracy', 'f1_macro'], [1, 0], [1, 1], labels=[0, 1])['accuracy'])\n"
        "names = ['rouge_l', 'bleu', 'chrf', 'exact_match']\n"
        "print(compute_text_metrics(names, ['a b'], ['a b'])['exact_match'])\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0.5", "1.0"]


def test_perplexity_is_the_exponential_of_mean_token_loss() -> None:
    result = perplexity_from_losses(total_nll=20.0, tokens=10)
    assert result["loss"] == pytest.approx(2.0) and result["perplexity"] == pytest.approx(math.exp(2.0))
    assert math.isnan(perplexity_from_losses(0.0, 0)["perplexity"])


def test_causal_scorer_loss_matches_the_model_loss(tiny_assets) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuner_tui.evaluation.scoring import CausalScorer

    tokenizer = AutoTokenizer.from_pretrained(tiny_assets["model"])
    model = AutoModelForCausalLM.from_pretrained(tiny_assets["model"])
    prompt, answer = "What is the capital of Peru?", " The capital of Peru is Lima."
    sums, counts = CausalScorer(model, tokenizer).continuation_logprob([prompt], [answer])
    ids = tokenizer(prompt + answer, return_tensors="pt")["input_ids"]
    labels = ids.clone()
    labels[0, : len(tokenizer(prompt)["input_ids"])] = -100
    with torch.no_grad():
        expected = model(input_ids=ids, labels=labels).loss.item()
    assert -sums[0] / counts[0] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(
    ("task", "metrics", "message"),
    [
        ("sequence_classification", ["bleu"], "does not fit model.task"),
        ("causal_lm", ["accuracy"], "does not fit model.task"),
        ("causal_lm", ["bertscore"], "not a known metric"),
    ],
)
def test_metrics_that_do_not_fit_are_clear_errors(task, metrics, message) -> None:
    with pytest.raises(TunerError, match=message):
        metrics_for(task, metrics)


def test_default_metrics_per_task() -> None:
    assert "accuracy" in metrics_for("sequence_classification", [])
    assert "perplexity" in metrics_for("causal_lm", [])


def test_token_count_is_the_number_of_scored_tokens(tiny_assets) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuner_tui.evaluation.scoring import CausalScorer

    scorer = CausalScorer(
        AutoModelForCausalLM.from_pretrained(tiny_assets["model"]),
        AutoTokenizer.from_pretrained(tiny_assets["model"]),
        max_length=12,
    )
    texts = ["Capital of Peru?", "What is the capital of France? The capital of France is Paris.", "x"]
    assert list(scorer.token_count(texts)) == [len(lp) for lp in scorer._token_logprobs(texts)]
