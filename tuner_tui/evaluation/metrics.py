"""Metrics: which exist, which task each fits, and how each is computed.

Label and text metrics go through `evaluate` modules shipped in `evaluation/modules/` (loaded by
path, so they work with HF_HUB_OFFLINE=1); they compute with scikit-learn, rouge_score and
sacrebleu. Perplexity and loss come from the model's own token log-likelihoods.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from tuner_tui.errors import TunerError

MODULES_DIR = Path(__file__).with_name("modules")


@dataclass(frozen=True)
class MetricSpec:
    task: str
    module: str | None  # evaluate module file in modules/, or None for model-loss metrics
    key: str  # the key in the module's result


METRICS: dict[str, MetricSpec] = {
    "accuracy": MetricSpec("sequence_classification", "accuracy", "accuracy"),
    "f1": MetricSpec("sequence_classification", "classification_scores", "f1_macro"),
    "f1_macro": MetricSpec("sequence_classification", "classification_scores", "f1_macro"),
    "precision_macro": MetricSpec("sequence_classification", "classification_scores", "precision_macro"),
    "recall_macro": MetricSpec("sequence_classification", "classification_scores", "recall_macro"),
    "exact_match": MetricSpec("causal_lm", "exact_match", "exact_match"),
    "rouge1": MetricSpec("causal_lm", "rouge", "rouge1"),
    "rouge2": MetricSpec("causal_lm", "rouge", "rouge2"),
    "rouge_l": MetricSpec("causal_lm", "rouge", "rouge_l"),
    "bleu": MetricSpec("causal_lm", "sacrebleu_scores", "bleu"),
    "chrf": MetricSpec("causal_lm", "sacrebleu_scores", "chrf"),
    "perplexity": MetricSpec("causal_lm", None, "perplexity"),
    "loss": MetricSpec("causal_lm", None, "loss"),
    # Measured on [evaluation] general_data (evaluation/general.py), not on the test split.
    "general_perplexity_change": MetricSpec("causal_lm", None, "general_perplexity_change"),
    "preference_accuracy": MetricSpec("preference", None, "preference_accuracy"),
}
DEFAULT_METRICS = {
    "sequence_classification": ["accuracy", "f1_macro", "precision_macro", "recall_macro"],
    "causal_lm": ["perplexity", "loss", "exact_match", "rouge1", "rouge2", "rouge_l", "bleu", "chrf"],
    "preference": ["preference_accuracy"],
}


def metrics_for(task: str, requested: list[str]) -> list[str]:
    """The metrics to compute: the recipe's, or the task's defaults; a misfit is an error."""
    names = requested or DEFAULT_METRICS[task]
    for name in names:
        if name not in METRICS:
            raise TunerError(
                f"[evaluation] metrics: '{name}' is not a known metric; choose from {', '.join(METRICS)}."
            )
        if METRICS[name].task != task:
            raise TunerError(
                f"[evaluation] metrics: '{name}' is a {METRICS[name].task} metric and does not fit "
                f"model.task = '{task}'; for {task} use {', '.join(DEFAULT_METRICS[task])}."
            )
    return list(dict.fromkeys(names))


@cache
def load_module(name: str) -> Any:
    """The shipped `evaluate` module `name`, loaded from its file (no hub access)."""
    import evaluate

    return evaluate.load(str(MODULES_DIR / f"{name}.py"))


def compute_label_metrics(
    names: list[str], predictions: list[int], references: list[int], labels: list[int]
) -> dict[str, Any]:
    """Classification metrics, plus per-class scores when any F1-family metric is asked for."""
    result: dict[str, Any] = {}
    modules = {METRICS[n].module for n in names}
    if "accuracy" in modules:
        result.update(load_module("accuracy").compute(predictions=predictions, references=references))
    if "classification_scores" in modules:
        scores = load_module("classification_scores").compute(
            predictions=predictions, references=references, labels=labels
        )
        result.update({k: v for k, v in scores.items() if k in {METRICS[n].key for n in names}})
        result["per_class"] = scores["per_class"]
    return result


def compute_text_metrics(names: list[str], predictions: list[str], references: list[str]) -> dict[str, float]:
    """Generation metrics on decoded strings."""
    result: dict[str, float] = {}
    for module in sorted({m for n in names if (m := METRICS[n].module)}):
        result.update(load_module(module).compute(predictions=predictions, references=references))
    wanted = {METRICS[n].key for n in names}
    return {k: float(v) for k, v in result.items() if k in wanted}


def perplexity_from_losses(total_nll: float, tokens: int) -> dict[str, float]:
    """Mean token-level loss and its exponential, over all reference tokens."""
    if tokens == 0:
        return {"loss": float("nan"), "perplexity": float("nan")}
    loss = total_nll / tokens
    return {"loss": loss, "perplexity": math.exp(min(loss, 700.0))}
