"""One process at a time owns a run directory: the holder of its `run.lock` (issue 19, point 2)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from tests.waiting import wait_for
from tuner_tui.errors import EXIT_INVALID_INPUT
from tuner_tui.runs.events import read_events
from tuner_tui.runs.launcher import create_run, resume_run
from tuner_tui.runs.layout import RunDir
from tuner_tui.runs.state import LOCK_FD_ENV, TERMINAL_PHASES, RunBusy, RunLock, read_raw_state, read_state

TUNER = [sys.executable, "-m", "tuner_tui.cli"]


def test_a_second_lock_is_refused_naming_the_holder(tmp_path: Path) -> None:
    with RunLock.acquire(tmp_path):
        with pytest.raises(RunBusy, match=f"in use by pid {os.getpid()}") as refused:
            RunLock.acquire(tmp_path)  # another open file description, same process: refused too
        assert refused.value.exit_code == EXIT_INVALID_INPUT
    RunLock.acquire(tmp_path).close()  # released with the descriptor


def test_a_lock_handed_to_a_child_stays_held_until_the_child_exits(tmp_path: Path) -> None:
    """The launcher's design: pass the locked descriptor on, close ours; no moment without a holder."""
    lock = RunLock.acquire(tmp_path)
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from tuner_tui.runs.state import RunLock; "
            f"lock = RunLock.inherited({str(tmp_path)!r}); print(lock is not None, flush=True); "
            "sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        pass_fds=(lock.fd,),
        env={**os.environ, LOCK_FD_ENV: str(lock.fd)},
    )
    lock.record(child.pid)
    lock.close()
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "True"
        with pytest.raises(RunBusy, match=f"pid {child.pid}"):
            RunLock.acquire(tmp_path)
    finally:
        child.communicate("", timeout=30)
    RunLock.acquire(tmp_path).close()


def test_an_inherited_variable_without_the_descriptor_is_not_a_lock(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "other").write_text("x")
    with open(tmp_path / "other") as f:
        monkeypatch.setenv(LOCK_FD_ENV, str(f.fileno()))  # some other file's descriptor
        assert RunLock.inherited(tmp_path) is None
    assert LOCK_FD_ENV not in os.environ


@pytest.fixture
def queued_run(tiny_recipe, tmp_path: Path) -> RunDir:
    return create_run(tiny_recipe(max_steps=6, save_every_steps=3), tmp_path / "runs")


@pytest.mark.parametrize(
    "command",
    [
        ["-m", "tuner_tui.runs.worker"],
        ["-m", "tuner_tui.runs.supervisor", "--nproc", "2", "--device", "cpu"],
    ],
    ids=["worker", "supervisor"],
)
def test_a_worker_or_supervisor_started_by_hand_on_a_locked_run_writes_nothing(
    queued_run: RunDir, command: list[str]
) -> None:
    run = queued_run
    before = (run.events.read_bytes(), run.state.read_bytes())
    with RunLock.acquire(run.root):
        proc = subprocess.Popen(
            [sys.executable, *command[:2], str(run.root), *command[2:]],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            output, _ = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:  # the code before the lock: it went on to train
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    assert proc.returncode == EXIT_INVALID_INPUT, output
    assert f"in use by pid {os.getpid()}" in output
    assert (run.events.read_bytes(), run.state.read_bytes()) == before


# The resumed worker waits at its first optimizer step until the test opens the gate, so the
# test knows it is alive while it checks who else is refused.
GATE = """
import os, time
if os.environ.get("TUNER_TEST_GATE"):
    import torch.optim
    _step = torch.optim.AdamW.step
    def step(self, *args, **kwargs):
        while not os.path.exists(os.environ["TUNER_TEST_GATE"]):
            time.sleep(0.05)
        return _step(self, *args, **kwargs)
    torch.optim.AdamW.step = step
"""


@pytest.mark.slow
def test_two_resumes_at_once_start_one_worker_and_the_other_is_refused(
    queued_run: RunDir, tmp_path: Path, monkeypatch
) -> None:
    run = queued_run
    # A worker process asked to stop before it trains: a stopped run to resume, quickly.
    stopped_at_once = (
        "import sys, threading; from tuner_tui.runs.worker import run_worker; "
        "stop = threading.Event(); stop.set(); sys.exit(run_worker(sys.argv[1], stop))"
    )
    subprocess.run([sys.executable, "-c", stopped_at_once, str(run.root)], check=True, timeout=120)
    assert read_raw_state(run.state)["phase"] == "stopped"
    seen = len(read_events(run.events)[0])

    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(textwrap.dedent(GATE))
    gate = tmp_path / "gate"
    monkeypatch.setenv("PYTHONPATH", f"{hooks}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    monkeypatch.setenv("TUNER_TEST_GATE", str(gate))

    start = threading.Barrier(2)
    outcomes: list[object] = [None, None]

    def resume(index: int) -> None:
        start.wait()
        try:
            outcomes[index] = resume_run(run.root)
        except Exception as exc:  # noqa: BLE001 - the outcome is what the test checks
            outcomes[index] = exc

    try:
        threads = [threading.Thread(target=resume, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        refused = [o for o in outcomes if isinstance(o, RunBusy)]
        started = [o for o in outcomes if isinstance(o, RunDir)]
        assert len(started) == 1 and len(refused) == 1, outcomes
        wait_for(lambda: read_raw_state(run.state).get("phase") == "training", what="the worker to train")
        worker = read_raw_state(run.state)["pid"]
        assert refused[0].exit_code == EXIT_INVALID_INPUT
        assert any(f"in use by pid {pid}" in str(refused[0]) for pid in (os.getpid(), worker)), refused[0]

        # A third resume from the command line, while the worker lives: exit 2, naming the worker.
        env = {k: v for k, v in os.environ.items() if k != "TUNER_TEST_GATE"}
        third = subprocess.run(
            [*TUNER, "run", "--resume", str(run.root), "--detach"], capture_output=True, text=True, env=env
        )
        assert third.returncode == EXIT_INVALID_INPUT, third.stderr
        assert (
            f"in use by pid {worker}" in " ".join(third.stderr.split())
            and "internal error" not in third.stderr
        )
    finally:
        gate.touch()  # whatever happened, no worker is left waiting at the gate
    wait_for(
        lambda: read_state(run.state).get("phase") in TERMINAL_PHASES | {"crashed"}, what="the run to end"
    )
    state = read_raw_state(run.state)
    assert state["phase"] == "completed", run.log.read_text()[-3000:]
    assert state["resumes"] == 1
    events = read_events(run.events)[0]
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(seqs) + 1))  # one writer: no duplicate, no gap
    new = events[seen:]
    statuses = [e["phase"] for e in new if e["type"] == "status"]
    assert statuses.count("queued") == 1 and statuses.count("preparing") == 1
    assert statuses.count("completed") == 1
