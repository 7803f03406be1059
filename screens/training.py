"""Step 4, Training: the training loop settings, and (later) the live view of a run."""

from __future__ import annotations

from typing import Any

from tuner_tui.recipe import Recipe
from tuner_tui.screens.step import StepScreen


class TrainingScreen(StepScreen):
    STEP = "training"
    STEP_TITLE = "Training"
    JUMP_KEY = "4"
    SECTIONS = ("training",)
    INTRO = (
        "Set the training loop, then launch it as a detached worker that writes a run "
        "directory; this screen replays and follows that run's events (loss, throughput, "
        "checkpoints), and can stop it or save a checkpoint."
    )

    def rows(self, recipe: Recipe) -> list[tuple[str, Any]]:
        training = recipe.training
        length = (
            ("training.max_steps", training.max_steps)
            if training.max_steps > 0
            else ("training.epochs", training.epochs)
        )
        rows: list[tuple[str, Any]] = [
            length,
            ("training.learning_rate", training.learning_rate),
            ("training.lr_scheduler", training.lr_scheduler),
            ("training.batch_size", training.batch_size),
            ("training.gradient_accumulation", training.gradient_accumulation),
            ("training.max_length", training.max_length),
            ("training.optimizer", training.optimizer),
            ("training.device", training.device),
            ("training.num_processes", training.num_processes),
            ("training.save_every_steps", training.save_every_steps),
        ]
        rows.append(("runs directory", str(self.tuner.runs_dir)))
        if self.tuner.attach is not None:
            rows.append(("run to attach", str(self.tuner.attach)))
        return rows
