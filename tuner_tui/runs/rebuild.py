"""A run's state when `state.json` cannot say it: rebuilt from events.jsonl, checkpoints and the lock.

state.json is a convenience (the phase, step and pid in one small file); events.jsonl is the
record. When state.json is gone (deleted by hand, lost to a disk error) or damaged (not JSON, or
JSON that is not an object), everything it held that matters is in the events (the phase, the
step, max_steps, resumes, when the run was created), the checkpoints (the newest complete step)
and run.lock (who holds the run now). Viewers show the rebuilt state; `tuner run --resume`
writes it back before it starts the worker.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from tuner_tui.runs import checkpoints
from tuner_tui.runs.events import iter_events
from tuner_tui.runs.state import PHASES, read_lock_holder


def state_damage(state_path: Path) -> str | None:
    """Why state.json cannot be used (None when it can): 'missing', 'not JSON', 'not an object'."""
    try:
        text = Path(state_path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return "missing"
    except (OSError, UnicodeDecodeError):
        return "unreadable"
    try:
        value = json.loads(text)
    except ValueError:
        return "not JSON"
    return None if isinstance(value, dict) else "not an object"


def rebuild_state(root: Path) -> dict[str, Any]:
    """The state of the run at `root` as far as its events, checkpoints and lock tell it."""
    root = Path(root)
    state: dict[str, Any] = {"run_id": root.name, "step": 0, "resumes": 0}
    for event in iter_events(root / "events.jsonl"):
        if "created" not in state and isinstance(event.get("time"), str):
            state["created"] = event["time"]
        if isinstance(event.get("time"), str):
            state["updated"] = event["time"]
        kind = event.get("type")
        step = _count(event.get("step"))
        if step is not None and kind in ("metric", "status", "checkpoint"):
            state["step"] = max(state["step"], step)
        max_steps = _count(event.get("max_steps"))
        if max_steps:
            state["max_steps"] = max_steps
        if kind == "status" and event.get("phase") in PHASES:
            state["phase"] = event["phase"]
            if event.get("resume") is True:
                state["resumes"] += 1
        elif kind == "error":
            state["error"] = {k: event.get(k) for k in ("kind", "message", "hint") if k in event}
    latest = checkpoints.latest_complete(root / "checkpoints", verify=False)
    if latest is not None:
        state["step"] = max(state["step"], checkpoints.checkpoint_step(latest) or 0)
    state.setdefault("phase", "queued")
    recipe_hash = frozen_recipe_hash(root / "recipe.toml")
    if recipe_hash:
        state["recipe_hash"] = recipe_hash
    holder = read_lock_holder(root)
    if isinstance(holder.get("pid"), int):  # the last process that took the run; alive or not
        state["pid"], state["host"] = holder["pid"], holder.get("host")
    return state


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def frozen_recipe_hash(recipe: Path) -> str | None:
    """The hash the launcher froze into a run's recipe ([environment] recipe_hash), if any."""
    try:
        with open(recipe, "rb") as f:
            value = tomllib.load(f).get("environment", {}).get("recipe_hash")
    except (OSError, tomllib.TOMLDecodeError, AttributeError):
        return None
    return value if isinstance(value, str) else None
