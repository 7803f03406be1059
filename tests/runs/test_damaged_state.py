"""Damaged run files: one bad run never breaks `tuner runs`, a lost or damaged state.json is rebuilt
from the events, and a viewer of a run whose state cannot be read still ends."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from tuner_tui.cli import app
from tuner_tui.errors import EXIT_RUN_FAILED
from tuner_tui.runs.layout import RunDir, list_runs
from tuner_tui.runs.state import read_state
from tuner_tui.runs.viewer import follow_run

DEAD_PID = 2**22 + 12345  # above pid_max's default: no process has it


def make_run(runs: Path, name: str, phases: list[str], steps: int = 3) -> RunDir:
    """A run directory as a worker leaves it: recipe, events, state.json naming a dead worker."""
    run = RunDir(runs / name)
    run.create()
    run.recipe.write_text('[environment]\nrecipe_hash = "abc123"\n', encoding="utf-8")
    lines: list[dict[str, Any]] = []
    for phase in phases:
        lines.append({"type": "status", "phase": phase, "max_steps": 10})
        if phase == "training":
            for step in range(1, steps + 1):
                lines.append({"type": "metric", "step": step, "max_steps": 10, "loss": 1.0 / step})
    stamped = [
        {"seq": seq, "time": f"2025-01-01T12:00:{seq:02d}.000Z", **line}
        for seq, line in enumerate(lines, start=1)
    ]
    run.events.write_text("".join(json.dumps(e) + "\n" for e in stamped), encoding="utf-8")
    state = {"phase": phases[-1], "step": steps, "pid": DEAD_PID, "created": "2025-01-01T12:00:01.000Z"}
    run.state.write_text(json.dumps(state), encoding="utf-8")
    return run


@pytest.mark.parametrize(
    "damage, why",
    [(None, "state.json missing"), ("[1, 2]", "state.json not an object"),
     ('"done"', "state.json not an object"), ("{not json", "state.json not JSON"),
     ("", "state.json not JSON")],
)  # fmt: skip
def test_a_lost_or_damaged_state_is_rebuilt_from_the_events(
    tmp_path: Path, damage: str | None, why: str
) -> None:
    run = make_run(tmp_path, "r1", ["queued", "preparing", "training", "completed"], steps=7)
    if damage is None:
        run.state.unlink()
    else:
        run.state.write_text(damage, encoding="utf-8")
    state = read_state(run.state)
    assert state["phase"] == "completed" and state["step"] == 7 and state["max_steps"] == 10
    assert state["damaged"] == why
    assert state["created"] == "2025-01-01T12:00:01.000Z" and state["recipe_hash"] == "abc123"
    assert RunDir.open(run.root) == run  # still a run: resume and attach can open it


def test_the_newest_complete_checkpoint_counts_for_the_step(tmp_path: Path) -> None:
    run = make_run(tmp_path, "r1", ["queued", "training", "stopped"], steps=3)
    checkpoint = run.checkpoints / "checkpoint-5"
    checkpoint.mkdir()
    (checkpoint / "COMPLETE.json").write_text('{"step": 5, "files": {}}', encoding="utf-8")
    run.state.unlink()
    assert read_state(run.state)["step"] == 5


def test_an_active_phase_whose_holder_is_gone_reads_crashed(tmp_path: Path) -> None:
    run = make_run(tmp_path, "r1", ["queued", "training"])
    (run.root / "run.lock").write_text(json.dumps({"pid": DEAD_PID, "host": os.uname().nodename}))
    run.state.write_text("garbage", encoding="utf-8")
    state = read_state(run.state)
    assert state["phase"] == "crashed" and state["recorded_phase"] == "training"


def test_one_bad_run_never_breaks_the_listing(tmp_path: Path) -> None:
    good = make_run(tmp_path, "20250101-good", ["queued", "training", "completed"])
    not_object = make_run(tmp_path, "20250102-state-list", ["queued", "training", "completed"])
    not_object.state.write_text("[1]", encoding="utf-8")
    bad_events = make_run(tmp_path, "20250103-events", ["queued", "training", "completed"])
    with open(bad_events.events, "a", encoding="utf-8") as f:
        f.write('[1, 2]\n"a string"\n42\nnull\n')
    bad_fields = make_run(tmp_path, "20250104-fields", ["queued", "completed"])
    bad_fields.state.write_text(json.dumps({"phase": ["x"], "step": "many", "created": 5}))
    gone = make_run(tmp_path, "20250105-gone", ["queued", "training", "completed"])
    gone.state.unlink()

    rows = {row.run_id: row for row in list_runs(tmp_path)}
    assert set(rows) == {r.run_id for r in (good, not_object, bad_events, bad_fields, gone)}
    assert rows[good.run_id].phase == "completed" and rows[good.run_id].loss == pytest.approx(1 / 3)
    assert rows[bad_events.run_id].loss == pytest.approx(1 / 3)  # the non-object lines skipped
    assert rows[not_object.run_id].phase == "completed"
    assert rows[gone.run_id].damaged == "state.json missing"

    result = CliRunner().invoke(app, ["runs", "--runs-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "20250105-gone: state.json missing; its state was rebuilt" in result.output
    assert "Traceback" not in result.output


def test_attach_plain_ends_on_a_garbage_state(tmp_path: Path) -> None:
    """The worker died mid-training and state.json is garbage: the viewer says the run crashed
    instead of waiting forever for a phase it cannot read."""
    run = make_run(tmp_path, "r1", ["queued", "training"])
    run.state.write_text("\x00\x01 not json", encoding="utf-8")
    result: list[int] = []
    thread = threading.Thread(
        target=lambda: result.append(follow_run(run, Console(file=open(os.devnull, "w")), poll_s=0.01)),
        daemon=True,
    )
    thread.start()
    thread.join(timeout=60)
    assert result == [EXIT_RUN_FAILED]


def test_an_event_line_longer_than_a_read_chunk_is_read_whole(tmp_path: Path) -> None:
    from tuner_tui.runs.events import iter_events, read_events

    path = tmp_path / "events.jsonl"
    long = {"seq": 2, "type": "log", "message": "x" * 3000}
    path.write_text(json.dumps({"seq": 1}) + "\n" + json.dumps(long) + "\n" + json.dumps({"seq": 3}) + "\n")
    seen, offset = [], 0
    while True:
        events, next_offset = read_events(path, offset, max_bytes=100)
        if next_offset == offset:
            break
        seen += events
        offset = next_offset
    assert seen == [{"seq": 1}, long, {"seq": 3}]
    assert [e["seq"] for e in iter_events(path)] == [1, 2, 3]
