"""Step 6, Export: save the recipe, and ship the adapter and report of a finished run."""

from __future__ import annotations

from typing import Any

from tuner_tui.recipe import Recipe
from tuner_tui.screens.step import StepScreen


class ExportScreen(StepScreen):
    STEP = "export"
    STEP_TITLE = "Export"
    JUMP_KEY = "6"
    SECTIONS = ("environment",)
    INTRO = (
        "Save the recipe as TOML, and export a finished run: its adapter (safetensors), "
        "optionally merged into the base model, and its evaluation report."
    )

    def rows(self, recipe: Recipe) -> list[tuple[str, Any]]:
        draft = self.tuner.draft
        saved_to = str(draft.path) if draft is not None and draft.path is not None else None
        return [
            ("recipe file", saved_to or "not saved yet"),
            ("recipe hash", recipe.hash()[:12]),
            ("schema_version", recipe.schema_version),
        ]
