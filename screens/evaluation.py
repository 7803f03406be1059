"""Step 5, Evaluation: metrics, the base-vs-tuned comparison and the bias report."""

from __future__ import annotations

from typing import Any

from tuner_tui.recipe import Recipe
from tuner_tui.screens.step import StepScreen


class EvaluationScreen(StepScreen):
    STEP = "evaluation"
    STEP_TITLE = "Evaluation"
    JUMP_KEY = "5"
    SECTIONS = ("evaluation", "bias")
    INTRO = (
        "Evaluate the tuned model on held-out data, compare it with the base model, give a "
        "verdict on each objective, and write a bias report."
    )

    def rows(self, recipe: Recipe) -> list[tuple[str, Any]]:
        evaluation, bias = recipe.evaluation, recipe.bias
        return [
            ("evaluation.metrics", evaluation.metrics or "task defaults"),
            ("evaluation.max_samples", evaluation.max_samples),
            ("evaluation.compare_base", evaluation.compare_base),
            ("evaluation.generation.max_new_tokens", evaluation.generation.max_new_tokens),
            ("bias.enabled", bias.enabled),
            ("bias.probes", bias.probes),
            ("bias.groups", bias.groups or "all"),
        ]
