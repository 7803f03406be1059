"""Step 2, Data: where the training data comes from and how it is split and cleaned."""

from __future__ import annotations

from typing import Any

from tuner_tui.recipe import Recipe
from tuner_tui.screens.step import StepScreen


class DataScreen(StepScreen):
    STEP = "data"
    STEP_TITLE = "Data"
    JUMP_KEY = "2"
    SECTIONS = ("data",)
    INTRO = (
        "Point at a data file, folder or hub dataset, detect its format, inspect it, hold out "
        "validation and test splits, and clean it with named, counted steps."
    )

    def rows(self, recipe: Recipe) -> list[tuple[str, Any]]:
        data = recipe.data
        return [
            ("data.path", data.path),
            ("data.format", data.format),
            ("data.fields", data.fields or "detected"),
            ("data.validation_fraction", data.validation_fraction),
            ("data.test_fraction", data.test_fraction),
            ("data.cleaning", [str(step.get("op", "?")) for step in data.cleaning]),
        ]
