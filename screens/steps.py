"""The wizard's steps as data, so the App can list them without importing every screen.

Screens are imported on first visit (Textual builds a mode's screen from a callable), which keeps
the wizard's first paint close to a bare Textual app. Each screen class repeats its own row's
values as ClassVars; tests/tui/test_shell.py checks that the two agree.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tuner_tui.screens.step import StepScreen


@dataclass(frozen=True)
class Step:
    key: str
    title: str
    jump_key: str
    has_status: bool
    sections: tuple[str, ...]
    module: str
    class_name: str

    def screen_class(self) -> type[StepScreen]:
        return getattr(importlib.import_module(f"tuner_tui.screens.{self.module}"), self.class_name)

    def factory(self) -> Callable[[], StepScreen]:
        return lambda: self.screen_class()()


STEPS: tuple[Step, ...] = (
    Step("welcome", "Welcome", "0", False, (), "welcome", "WelcomeScreen"),
    Step(
        "objective",
        "Objective",
        "1",
        True,
        ("schema_version", "project", "objectives"),
        "objective",
        "ObjectiveScreen",
    ),
    Step("data", "Data", "2", True, ("data",), "data", "DataScreen"),
    Step("model", "Model & method", "3", True, ("model", "method", "preference"), "model", "ModelScreen"),
    Step("training", "Training", "4", True, ("training",), "training", "TrainingScreen"),
    Step("evaluation", "Evaluation", "5", True, ("evaluation", "bias"), "evaluation", "EvaluationScreen"),
    Step("export", "Export", "6", True, ("environment",), "export", "ExportScreen"),
)
"""The wizard in order; Welcome first, then the six steps of a recipe."""

# Keys a step edits although their section belongs to another step: their problems show (and mark
# the sidebar) where the user edits them. The Model step's are the training settings that drive
# memory, beside the estimate they change.
MEMORY_KEYS = (
    "model.dtype",
    "training.batch_size",
    "training.max_length",
    "training.gradient_checkpointing",
    "training.optimizer",
    "training.num_processes",
    "training.nnodes",
    "training.strategy",
    "training.master_addr",
    "training.master_port",
)
EDITED_ELSEWHERE: dict[str, str] = {"model.task": "objective", **{key: "model" for key in MEMORY_KEYS}}


def step_of_problem(key_path: str) -> str | None:
    """The step whose screen edits `key_path` (`training.batch_size` -> `model`)."""
    key = key_path.split("[", 1)[0]
    if key in EDITED_ELSEWHERE:
        return EDITED_ELSEWHERE[key]
    section = key.split(".", 1)[0]
    return next((step.key for step in STEPS if section in step.sections), None)
