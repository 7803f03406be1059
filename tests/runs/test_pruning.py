"""Pruning counts only checkpoints whose files verify; damaged ones are set aside, and a resume
that falls back past them says so (issue 19, point 1)."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest
from rich.console import Console

from tuner_tui.runs import checkpoints
from tuner_tui.runs.events import read_events
from tuner_tui.runs.launcher import create_run
from tuner_tui.runs.layout import RunDir
from tuner_tui.runs.state import read_raw_state
from tuner_tui.runs.viewer import follow_run
from tuner_tui.runs.worker import run_worker

WEIGHTS = "adapter_model.safetensors"


def fake_checkpoint(root: Path, step: int) -> Path:
    path = root / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / WEIGHTS).write_bytes(os.urandom(256))
    (path / "optimizer.pt").write_bytes(os.urandom(64))
    checkpoints.commit(path, step)
    return path


def flip_a_byte(path: Path) -> None:
    """Damage a weight file the way a bad disk or a stray write does: one byte, size unchanged."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2 + 7] ^= 0xFF
    path.write_bytes(bytes(data))


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_new_checkpoint_is_not_pruned_to_keep_two_damaged_ones(tmp_path: Path) -> None:
    """The resume-from-0 case: the old checkpoints 40 and 50 are damaged, checkpoint-10 was just
    saved. Counting by step kept 40 and 50 and deleted the new one at once."""
    for step in (40, 50):
        flip_a_byte(fake_checkpoint(tmp_path, step) / WEIGHTS)
    fresh = fake_checkpoint(tmp_path, 10)
    pruned = checkpoints.prune(tmp_path, keep=2)
    assert fresh.is_dir() and checkpoints.is_complete(fresh, verify=True)
    assert names(tmp_path) == ["checkpoint-10", "corrupt-40", "corrupt-50"]
    assert [p.name for p in pruned.kept] == ["checkpoint-10"] and pruned.removed == []
    assert [(m.name, m.path.name) for m in pruned.set_aside] == [
        ("checkpoint-50", "corrupt-50"),
        ("checkpoint-40", "corrupt-40"),
    ]
    assert "adapter_model.safetensors does not match its sha256" in pruned.set_aside[0].problem


def test_the_good_checkpoint_is_kept_when_only_the_newest_is_damaged(tmp_path: Path) -> None:
    good = fake_checkpoint(tmp_path, 10)
    flip_a_byte(fake_checkpoint(tmp_path, 20) / WEIGHTS)
    fake_checkpoint(tmp_path, 30)
    checkpoints.prune(tmp_path, keep=2)
    assert names(tmp_path) == ["checkpoint-10", "checkpoint-30", "corrupt-20"]
    assert checkpoints.is_complete(good, verify=True)


def test_prune_deletes_only_beyond_the_verified_ones_and_hashes_what_it_keeps_once(
    tmp_path: Path, monkeypatch
) -> None:
    for step in (2, 4, 6, 8):
        fake_checkpoint(tmp_path, step)
    (tmp_path / "checkpoint-10").mkdir()  # a save killed half-way: no marker
    hashed: list[str] = []
    real_problem = checkpoints.problem
    monkeypatch.setattr(checkpoints, "problem", lambda path: hashed.append(path.name) or real_problem(path))
    pruned = checkpoints.prune(tmp_path, keep=2, verified=[tmp_path / "checkpoint-8"])
    assert hashed == ["checkpoint-6"]  # 8 was verified already; 4 and 2 are deleted unhashed
    assert names(tmp_path) == ["checkpoint-6", "checkpoint-8"]
    assert sorted(p.name for p in pruned.removed) == ["checkpoint-10", "checkpoint-2", "checkpoint-4"]


def test_resume_selection_sets_aside_every_newer_damaged_checkpoint(tmp_path: Path) -> None:
    fake_checkpoint(tmp_path, 4)
    older = fake_checkpoint(tmp_path, 8)
    flip_a_byte(fake_checkpoint(tmp_path, 12) / WEIGHTS)
    (tmp_path / "corrupt-12").mkdir()  # set aside once before: the new one gets its own name
    chosen, moved = checkpoints.select_resume(tmp_path)
    assert chosen == older
    assert [(m.name, m.path.name) for m in moved] == [("checkpoint-12", "corrupt-12-2")]
    assert names(tmp_path) == ["checkpoint-4", "checkpoint-8", "corrupt-12", "corrupt-12-2"]


# -- a real run: stopped at step 9 with checkpoints 8 and 9, then damaged and resumed -------------


class StopOnceSaved(threading.Event):
    """A stop request that comes true once `marker` exists: the run stops at the step after that
    checkpoint, deterministically (the Trainer asks `is_set` at every step's end)."""

    def __init__(self, marker: Path):
        super().__init__()
        self.marker = marker

    def is_set(self) -> bool:
        return self.marker.exists() or super().is_set()


@pytest.fixture(scope="module")
def stopped_run(tiny_assets, tmp_path_factory) -> RunDir:
    """12 steps, a checkpoint every 4, keep 2: stopped at step 9, so checkpoints 8 and 9 remain."""
    from tests.tiny import write_recipe

    root = tmp_path_factory.mktemp("pruning")
    recipe = write_recipe(
        root / "recipe.toml", tiny_assets["data"], tiny_assets["model"], max_steps=12, save_every_steps=4
    )
    run = create_run(recipe, root / "runs")
    marker = run.checkpoints / "checkpoint-8" / checkpoints.MARKER
    assert run_worker(run.root, StopOnceSaved(marker)) == 0
    assert read_raw_state(run.state)["phase"] == "stopped"
    assert names(run.checkpoints) == ["checkpoint-8", "checkpoint-9"]
    return run


def copy_of(run: RunDir, tmp_path: Path) -> RunDir:
    copy = tmp_path / run.root.name
    shutil.copytree(run.root, copy)
    return RunDir.open(copy)


def events_of(run: RunDir, kind: str) -> list[dict]:
    return [e for e in read_events(run.events)[0] if e["type"] == kind]


def viewer_text(run: RunDir) -> str:
    console = Console(record=True, width=200)
    follow_run(run, console)
    return console.export_text()


@pytest.mark.slow
def test_two_damaged_checkpoints_restart_from_zero_aloud_and_new_ones_survive(
    stopped_run: RunDir, tmp_path: Path
) -> None:
    run = copy_of(stopped_run, tmp_path)
    start = len(read_events(run.events)[0])
    for step in (8, 9):
        flip_a_byte(run.checkpoints / f"checkpoint-{step}" / WEIGHTS)
    assert run_worker(run.root, threading.Event()) == 0
    assert read_raw_state(run.state)["phase"] == "completed"
    new = read_events(run.events)[0][start:]
    saved = [e for e in new if e["type"] == "checkpoint"]
    assert [e["step"] for e in saved] == [4, 8, 12]
    for event in saved:  # none deleted right after it was saved
        assert f"checkpoint-{event['step']}" not in event["removed"]
    assert names(run.checkpoints) == ["checkpoint-12", "checkpoint-8", "corrupt-8", "corrupt-9"]
    assert all(checkpoints.is_complete(p, verify=True) for p in checkpoints.all_checkpoints(run.checkpoints))
    warnings = [e["message"] for e in new if e["type"] == "log" and e.get("level") == "warning"]
    assert any("No checkpoint verifies" in m and "restarts from step 0" in m for m in warnings)
    assert any("checkpoint-9 failed verification" in m and "corrupt-9" in m for m in warnings)
    assert not any("Resuming from" in e.get("message", "") for e in new)
    assert "No checkpoint verifies (checkpoint-9, checkpoint-8 failed verification)" in viewer_text(run)


@pytest.mark.slow
def test_a_damaged_newest_checkpoint_falls_back_aloud_and_the_good_one_is_kept(
    stopped_run: RunDir, tmp_path: Path
) -> None:
    run = copy_of(stopped_run, tmp_path)
    start = len(read_events(run.events)[0])
    flip_a_byte(run.checkpoints / "checkpoint-9" / WEIGHTS)
    assert run_worker(run.root, threading.Event()) == 0
    assert read_raw_state(run.state)["phase"] == "completed"
    new = read_events(run.events)[0][start:]
    messages = [e.get("message", "") for e in new if e["type"] == "log"]
    assert any(
        "Falling back to checkpoint-8: the newer checkpoint-9 failed verification" in m for m in messages
    )
    assert any("Resuming from checkpoint-8." in m for m in messages)
    (saved,) = [e for e in new if e["type"] == "checkpoint"]
    assert saved["step"] == 12 and saved["removed"] == []
    # Counted by step, the damaged 9 would have been kept and the good 8 deleted.
    assert names(run.checkpoints) == ["checkpoint-12", "checkpoint-8", "corrupt-9"]
    assert "Falling back to checkpoint-8" in viewer_text(run)
