"""Shared helpers for the modeling tests: recipes for the tiny model, in-process training."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from tests.tiny import write_recipe
from tuner_tui.recipe import load_recipe
from tuner_tui.runs.events import EventWriter, read_events
from tuner_tui.runs.launcher import create_run


def recipe_for(tmp_path: Path, data: Path, model: Path, method: dict[str, Any], **training: Any) -> Path:
    """The tiny LoRA recipe of tests/tiny.py with its [method] table replaced."""
    path = write_recipe(tmp_path / "recipe.toml", data, model, **training)
    text = path.read_text(encoding="utf-8")
    head, rest = text.split("[method]\n", 1)
    _, after = rest.split("[training]\n", 1)
    table = "\n".join(f"{k} = {json.dumps(v)}" for k, v in method.items())
    path.write_text(f"{head}[method]\n{table}\n[training]\n{after}", encoding="utf-8")
    return path


def train_in_process(recipe_path: Path, runs_dir: Path) -> tuple[Any, Any, list[dict]]:
    """Run `train` in this process and mark the run completed, as the worker does after it;
    returns (outcome, run, events)."""
    from tuner_tui.runs.state import write_state
    from tuner_tui.training.run import train

    run = create_run(recipe_path, runs_dir)
    with EventWriter(run.events) as events:
        outcome = train(load_recipe(run.recipe), run, events, threading.Event())
    write_state(run.state, phase="completed")
    recorded, _ = read_events(run.events)
    return outcome, run, recorded
