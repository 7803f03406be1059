"""Step 3, Model & method: the base model and how it is tuned (adapter, full or freeze)."""

from __future__ import annotations

from typing import Any

from tuner_tui.recipe import Recipe
from tuner_tui.screens.step import StepScreen

_ADAPTERS_WITH_RANK = ("lora", "dora", "qlora", "adalora", "loha", "lokr")
_VIRTUAL_TOKEN_METHODS = ("prompt_tuning", "prefix_tuning")


class ModelScreen(StepScreen):
    STEP = "model"
    STEP_TITLE = "Model & method"
    JUMP_KEY = "3"
    SECTIONS = ("model", "method")
    INTRO = (
        "Choose a base model (a local folder or a hub id pinned to a revision) and a tuning "
        "method, with an estimate of the memory it needs before anything is loaded."
    )

    def rows(self, recipe: Recipe) -> list[tuple[str, Any]]:
        model, method = recipe.model, recipe.method
        rows: list[tuple[str, Any]] = [
            ("model.name_or_path", model.name_or_path),
            ("model.revision", model.revision or "default branch"),
            ("model.task", model.task),
            ("model.dtype", model.dtype),
            ("method.type", method.type),
        ]
        # Only the parameters the chosen method uses.
        if method.type in _ADAPTERS_WITH_RANK:
            rows += [
                ("method.r", method.r),
                ("method.alpha", method.alpha),
                ("method.dropout", method.dropout),
                ("method.target_modules", method.target_modules),
            ]
        elif method.type in _VIRTUAL_TOKEN_METHODS:
            rows.append(("method.num_virtual_tokens", method.num_virtual_tokens))
        elif method.type == "freeze":
            rows.append(("method.trainable_layers", method.trainable_layers))
        return rows
