"""The run-directory protocol: events, state, control requests, checkpoint commits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tuner_tui.errors import TunerError
from tuner_tui.runs import checkpoints, control
from tuner_tui.runs.events import EventWriter, follow_events, read_events
from tuner_tui.runs.layout import RunDir, list_runs, new_run_id
from tuner_tui.runs.state import read_state, write_state


def test_events_have_monotonic_seq_time_and_type(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    with EventWriter(path) as events:
        events.emit("status", phase="preparing")
        events.emit("metric", step=1, loss=float("nan"), grad_norm=float("inf"))
    read, offset = read_events(path)
    assert [e["seq"] for e in read] == [1, 2]
    assert [e["type"] for e in read] == ["status", "metric"]
    assert read[0]["time"].endswith("Z")
    assert read[1]["loss"] == "nan" and read[1]["grad_norm"] == "inf"
    assert offset == path.stat().st_size
    with pytest.raises(ValueError):
        EventWriter(path).emit("bogus")


def test_reader_replays_from_any_offset_and_skips_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    with EventWriter(path) as events:
        for step in range(5):
            events.emit("metric", step=step)
    _, middle = read_events(path)
    first_two = path.read_bytes().split(b"\n")[:2]
    offset = len(first_two[0]) + 1 + len(first_two[1]) + 1
    rest, _ = read_events(path, offset)
    assert [e["step"] for e in rest] == [2, 3, 4]
    with open(path, "ab") as f:
        f.write(b'{"seq": 6, "type": "met')  # a writer killed mid-line
    events_now, end = read_events(path, middle)
    assert events_now == [] and end == middle


def test_writer_repairs_torn_line_and_continues_seq(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    with EventWriter(path) as events:
        events.emit("status", phase="training")
        events.emit("metric", step=1)
    with open(path, "ab") as f:
        f.write(b'{"seq": 3, "ty')
    with EventWriter(path) as events:
        events.emit("status", phase="preparing")
    read, _ = read_events(path)
    assert [e["seq"] for e in read] == [1, 2, 3]
    assert all(line for line in path.read_text().splitlines())


def test_writer_is_thread_safe(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    events = EventWriter(path)
    threads = [
        threading.Thread(target=lambda: [events.emit("log", message="x" * 500) for _ in range(200)])
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    events.close()
    read, _ = read_events(path)
    assert sorted(e["seq"] for e in read) == list(range(1, 801))


def test_follow_yields_new_events_until_stopped(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    events = EventWriter(path)
    events.emit("status", phase="training")
    seen: list[int] = []
    done = threading.Event()

    def writer() -> None:
        for step in range(1, 4):
            events.emit("metric", step=step)
        done.set()

    threading.Thread(target=writer).start()
    for batch in follow_events(path, poll_s=0.01, should_stop=lambda: done.is_set() and len(seen) >= 4):
        seen.extend(e["seq"] for e in batch)
    events.close()
    assert seen == [1, 2, 3, 4]


def test_state_is_merged_atomically_and_a_dead_worker_reads_crashed(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    write_state(path, run_id="r", phase="training", step=3, pid=os.getpid())
    write_state(path, step=4)
    state = read_state(path)
    assert state["phase"] == "training" and state["step"] == 4 and "updated" in state
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    write_state(path, pid=proc.pid, pid_started=None)
    crashed = read_state(path)
    assert crashed["phase"] == "crashed"
    assert crashed["recorded_phase"] == "training"
    assert json.loads(path.read_text())["phase"] == "training"  # viewers never rewrite it
    assert not list(tmp_path.glob(".*tmp"))


def test_control_requests_are_files_consumed_once(tmp_path: Path) -> None:
    control.request(tmp_path, "stop", by="test")
    assert control.pending(tmp_path, "stop")
    assert control.consume(tmp_path, "stop")["by"] == "test"
    assert control.consume(tmp_path, "stop") is None
    with pytest.raises(ValueError):
        control.request(tmp_path, "explode")


def _fake_checkpoint(root: Path, step: int, complete: bool) -> Path:
    path = root / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "adapter_model.safetensors").write_bytes(os.urandom(64))
    (path / "optimizer.pt").write_bytes(os.urandom(32))
    if complete:
        checkpoints.commit(path, step)
    return path


def test_only_complete_checkpoints_count_and_prune_keeps_newest(tmp_path: Path) -> None:
    for step in (2, 4, 6):
        _fake_checkpoint(tmp_path, step, complete=True)
    _fake_checkpoint(tmp_path, 8, complete=False)
    assert checkpoints.latest_complete(tmp_path).name == "checkpoint-6"
    marker = json.loads((tmp_path / "checkpoint-6" / "COMPLETE.json").read_text())
    assert marker["step"] == 6 and set(marker["files"]) == {"adapter_model.safetensors", "optimizer.pt"}
    removed = checkpoints.prune(tmp_path, keep=2).removed
    assert sorted(p.name for p in removed) == ["checkpoint-2", "checkpoint-8"]
    assert [p.name for p in checkpoints.all_checkpoints(tmp_path)] == ["checkpoint-4", "checkpoint-6"]


def test_a_corrupted_checkpoint_fails_verification(tmp_path: Path) -> None:
    good = _fake_checkpoint(tmp_path, 2, complete=True)
    bad = _fake_checkpoint(tmp_path, 4, complete=True)
    (bad / "optimizer.pt").write_bytes(b"truncated")
    assert checkpoints.is_complete(bad) and not checkpoints.is_complete(bad, verify=True)
    assert checkpoints.latest_complete(tmp_path) == good


def test_a_checkpoint_missing_a_ranks_part_is_not_committed(tmp_path: Path) -> None:
    path = _fake_checkpoint(tmp_path, 2, complete=False)
    (path / "rng_state_0.pth").write_bytes(b"rank 0")
    with pytest.raises(TunerError, match="lacks rng_state_1.pth"):
        checkpoints.commit(path, 2, required=["rng_state_0.pth", "rng_state_1.pth"])
    assert not checkpoints.is_complete(path)
    (path / "rng_state_1.pth").write_bytes(b"rank 1")
    marker = checkpoints.commit(path, 2, required=["rng_state_0.pth", "rng_state_1.pth"])
    assert {"rng_state_0.pth", "rng_state_1.pth"} <= set(marker["files"])


def test_run_dir_layout_and_listing(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "runs" / new_run_id("My Project!", "abcdef123456"))
    run.create()
    assert run.run_id.endswith("-my-project-abcdef")
    assert all(p.is_dir() for p in (run.control, run.checkpoints, run.report))
    write_state(run.state, run_id=run.run_id, phase="completed", step=5, created="2026-01-01T00:00:00Z")
    (run.recipe).write_text("schema_version = 1\n")
    with EventWriter(run.events) as events:
        events.emit("metric", step=5, loss=0.5)
    (rows,) = list_runs(tmp_path / "runs")
    assert rows.phase == "completed" and rows.loss == 0.5 and rows.step == 5
    assert RunDir.open(run.root) == RunDir(run.root.resolve())
    with pytest.raises(TunerError, match="not a run directory"):
        RunDir.open(tmp_path)
    with pytest.raises(TunerError, match="does not exist"):
        RunDir.open(tmp_path / "nope")


def test_listing_skips_staging_folders_and_other_hidden_entries(tmp_path: Path) -> None:
    """create_run builds a run under `.staging-<id>-<pid>` and renames it into place; until then
    (or forever, if it was killed half-way) the folder must not show in `tuner runs`, even when it
    already holds everything a run has."""
    runs = tmp_path / "runs"
    for name in ("20260101-000000-demo-abcdef", ".staging-20260101-000001-demo-abcdef-4242", ".nodes"):
        run = RunDir(runs / name)
        run.create()
        run.recipe.write_text("schema_version = 1\n")
        write_state(run.state, run_id=name, phase="queued", step=0, created="2026-01-01T00:00:00Z")
        with EventWriter(run.events) as events:
            events.emit("status", phase="queued", run_id=name)
    (runs / "notes.txt").write_text("not a run\n")
    assert [row.run_id for row in list_runs(runs)] == ["20260101-000000-demo-abcdef"]
