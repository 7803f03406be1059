"""Snapshots of the screens without their own: Welcome, the Training dashboard of a finished run,
and Help. Everything that could differ between machines is fixed: the working folder is the test's
own (paths are relative to it), the run id is a constant, and events carry fixed `time` fields
(written as JSON lines directly, in the shape EventWriter writes them)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Static

from tests.tui.conftest import workers_done
from tuner_tui.app import TunerApp
from tuner_tui.runs.layout import RunDir

SIZES = [(80, 24), (140, 40)]
RUN_ID = "20250101-120000-support-intents-abc123"
MAX_STEPS = 40
GIB = 1024**3


def write_events(path: Path, events: list[tuple[str, dict[str, Any]]]) -> None:
    """events.jsonl as EventWriter writes it, but with `time` fixed (one second per event)."""
    lines = []
    for seq, (kind, fields) in enumerate(events, start=1):
        stamp = f"2025-01-01T12:{seq // 60:02d}:{seq % 60:02d}.000Z"
        lines.append(json.dumps({"seq": seq, "time": stamp, "type": kind, **fields}) + "\n")
    path.write_text("".join(lines), encoding="utf-8")


def write_finished_run(root: Path) -> RunDir:
    """A completed 40-step run with fixed numbers: metrics, evals, checkpoints, telemetry, a log."""
    run = RunDir(root)
    run.create()
    run.recipe.write_text("schema_version = 1\n", encoding="utf-8")
    events: list[tuple[str, dict[str, Any]]] = [
        ("status", {"phase": "queued"}),
        ("status", {"phase": "preparing"}),
        ("status", {"phase": "training", "step": 0, "max_steps": MAX_STEPS}),
    ]
    for step in range(1, MAX_STEPS + 1):
        loss = 3.0 / (1 + 0.1 * step)
        events.append(
            (
                "metric",
                {
                    "step": step,
                    "max_steps": MAX_STEPS,
                    "epoch": round(step / 20, 4),
                    "loss": loss,
                    "lr": 1e-3 * (1 - step / MAX_STEPS),
                    "grad_norm": 1 / math.sqrt(step),
                    "tokens_per_s": 1500.0 + step,
                    "tokens_seen": 512 * step,
                    "eta_s": (MAX_STEPS - step) * 0.5,
                },
            )
        )
        if step % 10 == 0:
            events.append(("eval", {"split": "validation", "step": step, "loss": loss + 0.1}))
            removed = [f"checkpoint-{step - 20}"] if step > 20 else []
            path = f"runs/{RUN_ID}/checkpoints/checkpoint-{step}"
            events.append(
                ("checkpoint", {"step": step, "path": path, "bytes": 1000 * step, "removed": removed})
            )
        if step % 15 == 0:
            telemetry = {
                "cpu_percent": 55.0,
                "process_cpu_percent": 180.0,
                "rss_bytes": int(1.5 * GIB),
                "ram_used_bytes": 8 * GIB,
                "ram_total_bytes": 16 * GIB,
                "gpus": [],
            }
            events.append(("telemetry", telemetry))
    events += [
        ("status", {"phase": "evaluating"}),
        ("eval", {"split": "test", "model": "base", "loss": 1.9, "accuracy": 0.3333}),
        ("eval", {"split": "test", "model": "tuned", "loss": 1.1, "accuracy": 0.8667}),
        ("status", {"phase": "completed"}),
    ]
    write_events(run.events, events)
    state = {
        "run_id": RUN_ID,
        "phase": "completed",
        "step": MAX_STEPS,
        "max_steps": MAX_STEPS,
        "pid": 1,
        "updated": "2025-01-01T12:05:00.000Z",
    }
    run.state.write_text(json.dumps(state), encoding="utf-8")
    run.log.write_text("".join(f"worker line {i}\n" for i in range(200)), encoding="utf-8")
    return run


async def wait_for(pilot: Pilot, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {predicate}")


async def settled(pilot: Pilot) -> None:
    """Until the app's workers and animations are done and a few frames have been drawn: on a
    loaded machine a step's fields are still being styled when the next key arrives."""
    await workers_done(pilot)
    await pilot.wait_for_scheduled_animations()
    for _ in range(3):
        await pilot.pause(0.05)


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # paths are shown relative to here: the same on every machine
    return tmp_path


@pytest.mark.parametrize("size", SIZES)
def test_welcome(snap_compare: Any, in_tmp: Path, size: tuple[int, int]) -> None:
    async def runs_listed(pilot: Pilot) -> None:
        await workers_done(pilot)
        await pilot.pause()

    assert snap_compare(TunerApp(runs_dir=Path("runs")), terminal_size=size, run_before=runs_listed)


@pytest.mark.parametrize("size", SIZES)
def test_training_finished_run(snap_compare: Any, in_tmp: Path, size: tuple[int, int]) -> None:
    write_finished_run(in_tmp / "runs" / RUN_ID)

    async def run_before(pilot: Pilot) -> None:
        def replayed() -> bool:
            text = str(pilot.app.screen.query_one("#progress-text", Static).render())
            return f"step {MAX_STEPS}/{MAX_STEPS}" in text and pilot.app.run_phase == "completed"

        await wait_for(pilot, replayed)
        pilot.app.clear_notifications()  # toasts expire: a slow machine would lose them
        await pilot.pause(0.5)  # the dashboard redraws on a 0.25 s timer

    app = TunerApp(demo=True, attach=Path("runs") / RUN_ID, runs_dir=Path("runs"))
    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_help(snap_compare: Any, in_tmp: Path, size: tuple[int, int]) -> None:
    async def run_before(pilot: Pilot) -> None:
        await pilot.press("4")  # Training: the app's keys and the step's own (start, stop, save)
        await settled(pilot)  # the step behind the dialog shows through: let it finish drawing
        await pilot.press("question_mark")
        await settled(pilot)
        pilot.app.clear_notifications()
        await pilot.pause()

    app = TunerApp(demo=True, runs_dir=Path("runs"))
    assert snap_compare(app, terminal_size=size, run_before=run_before)
