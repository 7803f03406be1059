"""A full disk ends the run `failed` (kind `disk_full`), keeps the last complete checkpoint, and
a resume onto a full disk says so (issue 19, point 6)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from rich.console import Console

from tests.waiting import events_of, wait_for
from tuner_tui.errors import EXIT_INVALID_INPUT
from tuner_tui.runs import checkpoints, control, launcher, state
from tuner_tui.runs.events import read_events
from tuner_tui.runs.launcher import create_run, resume_run, start_run
from tuner_tui.runs.layout import RunDir
from tuner_tui.runs.state import TERMINAL_PHASES, DiskFullError, read_raw_state, read_state
from tuner_tui.runs.viewer import follow_run
from tuner_tui.runs.worker import run_worker

TUNER = [sys.executable, "-m", "tuner_tui.cli"]
# What torch.save raises when the disk fills under it: its C++ stream writer drops the errno.
TORCH_FULL = "[enforce fail at inline_container.cc:672] . unexpected pos 1472 vs 1366"


def viewer_text(run: RunDir) -> tuple[int, str]:
    console = Console(record=True, width=200)
    code = follow_run(run, console)
    return code, console.export_text()


def test_a_full_disk_is_told_apart_from_other_errors(tmp_path: Path, monkeypatch) -> None:
    enospc = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "events.jsonl"))
    full = state.disk_full(enospc, tmp_path / "elsewhere")
    assert full is not None and full.folder == tmp_path  # the folder of the file that failed
    wrapped = RuntimeError("saving failed")
    wrapped.__cause__ = enospc
    assert state.disk_full(wrapped, tmp_path) is not None
    rust = Exception("Error while serializing: IoError(Os { code: 28, kind: StorageFull, ... })")
    assert state.disk_full(rust, tmp_path) is not None
    assert state.disk_full(RuntimeError("CUDA error: device-side assert"), tmp_path) is None
    # torch's message alone is no proof: a full disk only when the disk is (nearly) full.
    assert state.disk_full(RuntimeError(TORCH_FULL), tmp_path) is None or (
        (state.free_bytes(tmp_path) or 0) < state.NEARLY_FULL_BYTES
    )
    monkeypatch.setattr(state, "free_bytes", lambda folder: 4096)
    full = state.disk_full(RuntimeError(TORCH_FULL), tmp_path)
    assert full is not None and full.describe() == f"4.0 KiB free on the disk holding {tmp_path}"


@pytest.fixture
def failing_save(monkeypatch):
    """torch.save fails, as on a full disk, once it writes into `checkpoint-8` (after a partial write)."""
    import torch

    real = torch.save

    def arm(fault: BaseException) -> None:
        def save(obj, f, *args, **kwargs):
            if "checkpoint-8" in str(f):
                Path(f).write_bytes(b"partial")
                raise fault
            return real(obj, f, *args, **kwargs)

        monkeypatch.setattr(torch, "save", save)

    return arm


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["enospc", "torch"])
def test_a_full_disk_mid_checkpoint_fails_the_run_as_disk_full_keeping_the_last_checkpoint(
    tiny_recipe, tmp_path: Path, monkeypatch, failing_save, fault: str
) -> None:
    run = create_run(tiny_recipe(max_steps=12, save_every_steps=4), tmp_path / "runs")
    target = run.checkpoints / "checkpoint-8" / "optimizer.pt"
    if fault == "enospc":
        failing_save(OSError(errno.ENOSPC, "No space left on device", str(target)))
    else:  # torch's own wording, on a disk with 12 KiB left
        failing_save(RuntimeError(TORCH_FULL))
        real_free = state.free_bytes
        monkeypatch.setattr(
            state,
            "free_bytes",
            lambda folder: 12 << 10 if run.root in Path(folder).parents else real_free(folder),
        )
    assert run_worker(run.root, threading.Event()) == 1
    final = read_raw_state(run.state)
    assert final["phase"] == "failed" and final["error_kind"] == "disk_full"
    (error,) = events_of(run, "error")
    assert error["kind"] == "disk_full"
    assert error["folder"] == str(target.parent if fault == "enospc" else run.checkpoints)
    assert f"free on the disk holding {error['folder']}" in error["message"]
    if fault == "torch":
        assert error["free_bytes"] == 12 << 10 and "12.0 KiB free" in error["message"]
    assert error["last_checkpoint"] == str(run.checkpoints / "checkpoint-4")
    assert f"tuner run --resume {run.root}" in error["hint"] and "Free space" in error["hint"]
    # The last complete checkpoint is kept; the half-written one is gone; so is the reserve.
    assert [p.name for p in checkpoints.all_checkpoints(run.checkpoints)] == ["checkpoint-4"]
    assert checkpoints.is_complete(run.checkpoints / "checkpoint-4", verify=True)
    assert not (run.root / state.RESERVE_NAME).exists()
    code, shown = viewer_text(run)
    assert code == 1 and "disk_full" in shown and "Traceback" not in shown


# For a worker process of its own (a resume must not wait for this test's pid to end).
FULL_AT_CHECKPOINT_8 = """
import errno, os
if os.environ.get("TUNER_TEST_FULL_AT"):
    import torch
    _save = torch.save
    def save(obj, f, *args, **kwargs):
        if os.environ["TUNER_TEST_FULL_AT"] in str(f):
            raise OSError(errno.ENOSPC, "No space left on device", str(f))
        return _save(obj, f, *args, **kwargs)
    torch.save = save
"""


@pytest.fixture
def failed_run(tiny_recipe, tmp_path: Path) -> RunDir:
    """A run whose worker process failed on a full disk while saving checkpoint-8."""
    run = create_run(tiny_recipe(max_steps=12, save_every_steps=4), tmp_path / "runs")
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(FULL_AT_CHECKPOINT_8)
    env = {
        **os.environ,
        "PYTHONPATH": f"{hooks}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "TUNER_TEST_FULL_AT": "checkpoint-8",
    }
    worker = subprocess.run(
        [sys.executable, "-m", "tuner_tui.runs.worker", str(run.root)],
        env=env,
        capture_output=True,
        timeout=300,
    )
    assert worker.returncode == 1 and read_raw_state(run.state)["error_kind"] == "disk_full"
    return run


@pytest.mark.slow
def test_resume_onto_a_full_disk_is_refused_saying_so_and_writes_nothing(
    failed_run: RunDir, monkeypatch
) -> None:
    run = failed_run
    before = (run.events.read_bytes(), run.state.read_bytes())
    monkeypatch.setattr(launcher, "free_bytes", lambda folder: 300 << 10)
    with pytest.raises(DiskFullError) as refused:
        resume_run(run.root)
    message = " ".join(str(refused.value).split())
    assert refused.value.exit_code == EXIT_INVALID_INPUT
    assert (
        f"Cannot resume {run.root}: the disk is full (300.0 KiB free on the disk holding {run.root}"
        in message
    )
    assert "checkpoint-4, is kept" in message
    assert (run.events.read_bytes(), run.state.read_bytes()) == before


@pytest.mark.slow
def test_a_disk_that_fills_while_resuming_is_a_disk_full_error_not_a_crash(
    failed_run: RunDir, monkeypatch
) -> None:
    run = failed_run

    def no_room(path, **fields):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(launcher, "write_state", no_room)
    with pytest.raises(DiskFullError, match="the disk is full"):
        resume_run(run.root)


# -- the real thing: a 4 MiB tmpfs that fills while the worker trains ----------------------------


@pytest.fixture
def small_disk(tmp_path: Path):
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}); the injected tests cover it")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path, name: str, leave: int = 0) -> Path:
    """Write to `disk` until it is full, then give `leave` bytes back; the file that filled it."""
    ballast = disk / name
    with open(ballast, "ab", buffering=0) as f:
        try:
            while True:
                f.write(os.urandom(16 << 10))
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    os.truncate(ballast, max(0, ballast.stat().st_size - leave))
    return ballast


@pytest.mark.slow
@pytest.mark.parametrize("leave", [0, 100 << 10], ids=["between-steps", "mid-save"])
def test_a_disk_that_fills_mid_run_fails_it_as_disk_full_and_resume_says_so(
    small_disk: Path, tiny_recipe, tmp_path: Path, leave: int
) -> None:
    """Full at once, the next event or state write fails; with 100 KiB left (a checkpoint of the
    tiny model takes about 150), the next checkpoint save does, in torch's words or Python's."""
    run = start_run(tiny_recipe(max_steps=2000, save_every_steps=4), small_disk / "runs")
    wait_for(lambda: any(e["step"] >= 4 for e in events_of(run, "checkpoint")), what="a checkpoint")
    ballast = fill(small_disk, "ballast", leave)
    wait_for(
        lambda: read_state(run.state).get("phase") in TERMINAL_PHASES | {"crashed"}, what="the run to end"
    )
    final = read_raw_state(run.state)
    assert final["phase"] == "failed" and final["error_kind"] == "disk_full", run.log.read_text()[-3000:]
    events = read_events(run.events)[0]
    assert len(events) == len(run.events.read_bytes().splitlines())  # every line whole
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    (error,) = [e for e in events if e["type"] == "error"]
    assert error["kind"] == "disk_full" and Path(error["folder"]).is_relative_to(small_disk)
    assert "free on the disk holding" in error["message"]
    last = Path(error["last_checkpoint"])
    assert [p.name for p in checkpoints.all_checkpoints(run.checkpoints)][-1] == last.name
    assert checkpoints.is_complete(last, verify=True)
    assert "Traceback (most recent call last)" in run.log.read_text(errors="replace")

    # Resume on the still-full disk: refused with a clear message, exit 2, nothing written.
    more = fill(small_disk, "ballast-2")
    before = (run.events.read_bytes(), run.state.read_bytes())
    refused = subprocess.run(
        [*TUNER, "run", "--resume", str(run.root), "--detach"], capture_output=True, text=True
    )
    stderr = " ".join(refused.stderr.split())
    assert refused.returncode == EXIT_INVALID_INPUT, refused.stderr
    assert "the disk is full" in stderr and f"{last.name}, is kept" in stderr
    assert "internal error" not in stderr and "Traceback" not in stderr
    assert (run.events.read_bytes(), run.state.read_bytes()) == before

    # Room again: the resume continues from the kept checkpoint.
    ballast.unlink()
    more.unlink()
    resume_run(run.root)
    wait_for(
        lambda: any(f"Resuming from {last.name}" in e.get("message", "") for e in events_of(run, "log")),
        what="the resume",
    )
    control.request(run.control, "stop", by="test")  # no need to train 2000 steps: it runs
    wait_for(lambda: read_state(run.state).get("phase") in TERMINAL_PHASES | {"crashed"}, what="the stop")
    assert read_raw_state(run.state)["phase"] == "stopped", run.log.read_text()[-3000:]
