"""Step 1, Objective: what the project is and which measurable targets it must reach."""

from __future__ import annotations

from typing import Any

from tuner_tui.recipe import Recipe
from tuner_tui.screens.step import StepScreen


class ObjectiveScreen(StepScreen):
    STEP = "objective"
    STEP_TITLE = "Objective"
    JUMP_KEY = "1"
    SECTIONS = ("schema_version", "project", "objectives")
    INTRO = (
        "Name the project and its domain, and set measurable objectives: a metric, a target "
        "and the split it is measured on. Evaluation checks the tuned model against them."
    )

    def rows(self, recipe: Recipe) -> list[tuple[str, Any]]:
        project = recipe.project
        rows: list[tuple[str, Any]] = [
            ("project.name", project.name),
            ("project.domain", project.domain),
            ("project.description", project.description),
        ]
        if not recipe.objectives:
            rows.append(("objectives", []))
        for i, objective in enumerate(recipe.objectives):
            sign = ">=" if objective.higher_is_better else "<="
            rows.append(
                (
                    f"objectives[{i}]",
                    f"{objective.metric} {sign} {objective.target:g} on {objective.split}",
                )
            )
        return rows
