"""Several training processes through torchrun, on CPU with gloo: the real supervisor and ranks.

The tiny Llama trains with 2 ranks of 2 examples each and is compared with 1 process of 4: the
same global batches (the sampler's order is split in rank order), so the adapters agree up to
float32 rounding. Why not bit for bit: DDP averages two half-batch gradients where one process
computes one mean over the whole batch, and each half is padded to its own longest row, which
changes matmul shapes and summation order. Both change the last bits of a float32, and Adam
carries them over 12 steps: we allow 1e-5 absolute plus 1e-4 relative on weights of about 0.2
(measured: at most 1e-6). 12 steps stay inside the first epoch of 50 training rows: the 13th
global batch is incomplete, and accelerate fills a rank's missing share with rows from the start
of the data (even_batches), so runs with different process counts part ways there.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from tests.runs.test_worker import (
    adapter_tensors,
    assert_same_tensors,
    events_of,
    wait_for,
    wait_for_run,
    wait_until_done,
)
from tests.tiny import write_recipe
from tuner_tui.runs import checkpoints
from tuner_tui.runs.launcher import resume_run, start_run
from tuner_tui.runs.layout import RunDir
from tuner_tui.runs.state import ranks_alive, read_raw_state, worker_alive

pytestmark = pytest.mark.slow
TUNER = [sys.executable, "-m", "tuner_tui.cli"]
STEPS = 12
CAPTURE: dict = {"capture_output": True, "text": True}

# A gate at the optimizer step, so a test acts at a known step without slowing every step: while
# the file TUNER_TEST_GATE exists and holds N, each rank takes N steps in its process, then waits
# before the next (its optimizer step, after the gradients were exchanged) and marks the file
# `<gate>.held-<rank>`; removing the file lets the ranks go on.
GATE = """
import os, time
_gate = os.environ.get("TUNER_TEST_GATE")
if _gate:
    import torch.optim
    _step = torch.optim.AdamW.step
    _taken = 0
    def step(self, *args, **kwargs):
        global _taken
        try:
            with open(_gate) as f:
                after = int(f.read() or 0)
        except (OSError, ValueError):
            after = None
        if after is not None and _taken >= after:
            open(f"{_gate}.held-{os.environ.get('RANK', '0')}", "w").close()
            while os.path.exists(_gate):
                time.sleep(0.02)
        _taken += 1
        return _step(self, *args, **kwargs)
    torch.optim.AdamW.step = step
"""


class Gate:
    """Holds a run's ranks at a step (see GATE) for as long as a test needs."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def close(self, after: int = 2) -> None:
        """From now on, each rank holds once it has taken `after` more steps in its process."""
        self.path.write_text(str(after))

    def wait_held(self, ranks: tuple[int, ...] = (0, 1)) -> None:
        wait_for(
            lambda: all(self.path.with_name(f"{self.path.name}.held-{r}").exists() for r in ranks),
            what=f"ranks {ranks} to reach the gate",
        )

    def open(self) -> None:
        self.path.unlink(missing_ok=True)
        for marker in self.path.parent.glob(f"{self.path.name}.held-*"):
            marker.unlink()


# Same examples, same math, different padding: a micro-batch of 2 (or 4) rows is padded to its own
# longest row, a batch of 4 (or 8) to the longest of all, so matmuls sum in another order. Adam
# divides by sqrt(v), which turns those float-order differences in near-zero gradients into
# relative differences of up to ~3e-4 in the adapter after a few steps (measured on 2026-12-01 with
# the content-keyed split: worst 3.1e-4 relative, 5.4e-5 absolute; the old file-order split happened
# to give 5e-6). The logged losses are still compared at 1e-4: a wrong loss scale shows there.
ADAPTER_RTOL, ADAPTER_ATOL = 1e-3, 1e-4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def recipe_for(tmp: Path, assets: dict[str, Path], name: str, **training: object) -> Path:
    settings: dict[str, object] = {"max_steps": STEPS, "save_every_steps": 4, **training}
    path = write_recipe(tmp / f"{name}.toml", assets["data"], assets["model"], **settings)
    # No dropout: each rank would draw its own masks, and the comparison is about the batches.
    path.write_text(path.read_text().replace("dropout = 0.1", "dropout = 0.0"))
    return path


@pytest.fixture
def gate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Gate:
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(textwrap.dedent(GATE))
    monkeypatch.setenv("PYTHONPATH", f"{hooks}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    monkeypatch.setenv("TUNER_TEST_GATE", str(tmp_path / "gate"))
    return Gate(tmp_path / "gate")


@pytest.fixture(scope="module")
def two_ranks(tiny_assets, tmp_path_factory) -> dict:
    """An uninterrupted 2-process run, and a 1-process run with the same global batch."""
    root = tmp_path_factory.mktemp("ddp")
    recipe = recipe_for(root, tiny_assets, "two", batch_size=2, num_processes=2)
    with pytest.MonkeyPatch.context() as env:
        # The test reads rank 1's "Loading weights" bar; a CLI test run earlier in this process
        # may have switched the bars off for what it starts (the commands quiet the libraries).
        for name in ("HF_HUB_DISABLE_PROGRESS_BARS", "TRANSFORMERS_VERBOSITY"):
            env.delenv(name, raising=False)
        run = start_run(recipe, root / "runs")
    one = start_run(recipe_for(root, tiny_assets, "one", batch_size=4), root / "runs-one")
    for each in (run, one):
        state = wait_until_done(each)
        assert state["phase"] == "completed", each.log.read_text()[-3000:]
    return {"recipe": recipe, "run": run, "one": one, "adapter": adapter_tensors(run.adapter)}


def rank_steps(run: RunDir) -> dict[int, list[int]]:
    """The steps each rank said it stopped at (rank 0 in worker.log, rank 1 in its own log)."""
    found: dict[int, list[int]] = {}
    for path in (run.log, run.root / "worker.rank1.log"):
        for line in path.read_text(errors="replace").splitlines():
            if ": stopping at step " in line and line.startswith("rank "):
                rank, step = line.removeprefix("rank ").split(": stopping at step ")
                found.setdefault(int(rank), []).append(int(step))
    return found


def test_two_processes_match_one_process_with_the_same_global_batch(two_ranks) -> None:
    import torch

    run, one = two_ranks["run"], two_ranks["one"]
    two, single = two_ranks["adapter"], adapter_tensors(one.adapter)
    assert two.keys() == single.keys()
    for key in two:
        assert torch.allclose(two[key], single[key], rtol=ADAPTER_RTOL, atol=ADAPTER_ATOL), key
    # Rank 0 alone wrote the shared files: one monotonic event stream, one metric per step.
    seqs = [e["seq"] for e in events_of(run)]
    assert seqs == sorted(set(seqs))
    assert [m["step"] for m in events_of(run, "metric")] == list(range(1, STEPS + 1))
    assert {e["type"] for e in events_of(run)} >= {"status", "metric", "checkpoint", "telemetry"}
    assert max(t.get("processes", 0) for t in events_of(run, "telemetry")) == 2
    latest = checkpoints.latest_complete(run.checkpoints)
    assert latest is not None and latest.name == f"checkpoint-{STEPS}"
    assert {"rng_state_0.pth", "rng_state_1.pth"} <= {p.name for p in latest.iterdir()}
    rank1 = (run.root / "worker.rank1.log").read_text(errors="replace")
    assert "Traceback" not in rank1 and "Loading weights" in rank1  # rank 1 loads its own model copy
    assert "supervisor: torchrun --nproc-per-node 2" in run.log.read_text()
    assert read_raw_state(run.state)["phase"] == "completed"
    assert not list(run.root.glob("worker.rank*.error.json"))


def test_tuner_stop_and_sigterm_stop_both_ranks_at_one_step_and_resume(
    two_ranks, tmp_path: Path, gate: Gate
) -> None:
    gate.close(after=2)
    run = start_run(two_ranks["recipe"], tmp_path / "runs")
    gate.wait_held()  # both ranks at step 3
    stop = subprocess.run([*TUNER, "stop", str(run.root)], capture_output=True, text=True)
    assert stop.returncode == 0, stop.stderr
    gate.open()
    state = wait_until_done(run, timeout=60)
    assert state["phase"] == "stopped"
    first = state["step"]
    assert first == 3 and rank_steps(run) == {0: [first], 1: [first]}
    assert checkpoints.latest_complete(run.checkpoints).name == f"checkpoint-{first}"

    # SIGTERM to the supervisor (what `kill PID` or a scheduler does) reaches both ranks too.
    gate.close(after=1)
    resume_run(run.root)
    gate.wait_held()  # both ranks at step first + 2
    os.kill(read_raw_state(run.state)["pid"], signal.SIGTERM)
    gate.open()
    state = wait_until_done(run, timeout=60)
    assert state["phase"] == "stopped", run.log.read_text()[-2000:]
    second = state["step"]
    assert second == first + 2
    assert rank_steps(run) == {0: [first, second], 1: [first, second]}

    resume_run(run.root)
    assert wait_until_done(run)["phase"] == "completed"
    # Same world size, same batches, both ranks' RNG restored: equal to the uninterrupted run.
    assert_same_tensors(adapter_tensors(run.adapter), two_ranks["adapter"])


def all_gone(processes: list[psutil.Process]) -> bool:
    """None of `processes` runs any more (a zombie waiting for its parent counts as gone)."""
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            continue
    return True


def _rank_pid(supervisor_pid: int, rank: int) -> int | None:
    try:
        for child in psutil.Process(supervisor_pid).children():
            if child.environ().get("RANK") == str(rank):
                return child.pid
    except psutil.Error:
        return None
    return None


def test_a_killed_rank_fails_the_run_naming_it_and_leaves_no_process(
    two_ranks, tmp_path: Path, gate: Gate
) -> None:
    gate.close(after=2)
    run = start_run(two_ranks["recipe"], tmp_path / "runs")
    gate.wait_held()
    supervisor = read_raw_state(run.state)["pid"]
    processes = [psutil.Process(supervisor), *psutil.Process(supervisor).children(recursive=True)]
    victim = _rank_pid(supervisor, 1)
    assert victim is not None
    killed_at = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    gate.open()  # rank 0 goes on, into a collective its peer will never join
    state = wait_until_done(run, timeout=60)
    # Well inside the 60 s allowed, and the agent's 30 s grace before SIGKILL was not needed.
    assert time.monotonic() - killed_at < 25
    assert state["phase"] == "failed" and state["failed_rank"] == 1
    (error,) = events_of(run, "error")
    assert error["kind"] == "rank_failed" and error["rank"] == 1
    assert error["log"] == str(run.root / "worker.rank1.log")
    assert "Rank 1" in error["message"] and "SIGKILL" in error["message"]
    assert "worker.rank1.log" in error["hint"]

    wait_for(lambda: all_gone(processes), timeout=60, what="every process of the run to end")
    viewer = subprocess.run([*TUNER, "attach", "--plain", str(run.root)], capture_output=True, text=True)
    assert viewer.returncode == 1 and "Rank 1" in viewer.stdout and "Traceback" not in viewer.stdout


def test_ranks_whose_supervisor_is_killed_stop_together_and_a_resume_waits_for_them(
    two_ranks, tmp_path: Path, gate: Gate
) -> None:
    """SIGKILL leaves the supervisor no chance to pass anything on: the kernel's parent-death
    signal reaches the ranks, which stop after the same step with a checkpoint. A resume asked
    for at once waits for them (their pids are in state.json) instead of racing their save."""
    gate.close(after=2)
    run = start_run(two_ranks["recipe"], tmp_path / "runs")
    gate.wait_held()
    supervisor = read_raw_state(run.state)["pid"]
    ranks = psutil.Process(supervisor).children()
    assert sorted(p["pid"] for p in read_raw_state(run.state)["rank_pids"]) == sorted(p.pid for p in ranks)
    supervisor_process = psutil.Process(supervisor)
    os.kill(supervisor, signal.SIGKILL)
    wait_for(lambda: all_gone([supervisor_process]), timeout=10, what="the supervisor to die")
    gate.open()  # the ranks have their parent-death signal: they finish the step and stop
    resume_run(run.root)  # returns once the old ranks are gone and the new supervisor started
    assert all_gone(ranks)
    stopped = [e for e in events_of(run, "status") if e["phase"] == "stopped"]
    assert len(stopped) == 1
    step = stopped[0]["step"]
    assert step == 3 and rank_steps(run) == {0: [step], 1: [step]}
    assert wait_until_done(run)["phase"] == "completed"
    assert any(f"Resuming from checkpoint-{step}" in e.get("message", "") for e in events_of(run, "log"))
    assert_same_tensors(adapter_tensors(run.adapter), two_ranks["adapter"])


def test_sigterm_to_a_following_tuner_run_stops_the_run_and_follows_it_to_the_end(
    two_ranks, tmp_path: Path, gate: Gate
) -> None:
    """What Slurm (or Kubernetes, or systemd) does to end a job: SIGTERM to the foreground command."""
    gate.close(after=2)
    runs_dir = tmp_path / "runs"
    command = [*TUNER, "run", str(two_ranks["recipe"]), "--runs-dir", str(runs_dir)]
    follower = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run = wait_for_run(runs_dir, follower)
    gate.wait_held()
    follower.send_signal(signal.SIGTERM)
    # The follower passes the signal on as a stop request; the ranks see it at the step's end.
    wait_for(lambda: (run.control / "stop").exists(), what="the follower's stop request")
    gate.open()
    out, _ = follower.communicate(timeout=60)
    assert follower.returncode == 0, out[-3000:]
    assert "SIGTERM: stopping the run" in out and "Stopped at step" in out
    state = read_raw_state(run.state)
    assert state["phase"] == "stopped" and rank_steps(run) == {0: [state["step"]], 1: [state["step"]]}
    # It returned only once the supervisor and both ranks had exited (the GPU is free for the next).
    assert len(state["rank_pids"]) == 2
    assert not worker_alive(state) and not ranks_alive(state)


def test_two_nodes_on_one_machine_complete_stop_and_resume(
    two_ranks, tiny_assets, tmp_path: Path, gate: Gate
) -> None:
    """Two `tuner run` invocations, node ranks 0 and 1, meeting on 127.0.0.1: one run directory,
    stopped half-way and resumed by both nodes from it."""
    recipe = recipe_for(tmp_path, tiny_assets, "nodes", batch_size=2)
    runs_dir = tmp_path / "runs"

    def node(rank: int, *start: str) -> list[str]:
        return [*TUNER, "run", *start, "--runs-dir", str(runs_dir), "--nnodes", "2", "--node-rank", str(rank)]

    gate.close(after=2)
    meet = ["--master-addr", "127.0.0.1", "--master-port", str(free_port())]
    second = subprocess.Popen(
        [*node(1, str(recipe)), *meet], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    first = subprocess.run([*node(0, str(recipe)), *meet, "--detach"], **CAPTURE, timeout=120)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    (root,) = [p for p in runs_dir.iterdir() if not p.name.startswith(".")]
    run = RunDir.open(root)
    gate.wait_held()
    assert subprocess.run([*TUNER, "stop", str(run.root)], **CAPTURE).returncode == 0
    gate.open()
    out, _ = second.communicate(timeout=120)
    assert second.returncode == 0, out[-3000:]
    state = wait_until_done(run, timeout=60)
    assert state["phase"] == "stopped" and state["step"] == 3
    assert "Node 1 of 2: joining the run node 0 leads at 127.0.0.1:" in out
    assert f"rank 1 (node 1) joined {run.root}" in out
    assert rank_steps(run) == {0: [state["step"]], 1: [state["step"]]}  # rank 1 is on node 1

    # Resume from the shared run directory: both nodes again, meeting on a new port.
    meet = ["--master-addr", "127.0.0.1", "--master-port", str(free_port())]
    second = subprocess.Popen(
        [*node(1, "--resume", str(run.root)), *meet],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    first = subprocess.run([*node(0, "--resume", str(run.root)), *meet], **CAPTURE, timeout=300)
    out, _ = second.communicate(timeout=120)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert second.returncode == 0, out[-3000:]
    assert read_raw_state(run.state)["phase"] == "completed"
    assert (run.root / "worker.node1.log").is_file()
    # Two nodes of one process each compute what one node of two processes does.
    assert_same_tensors(adapter_tensors(run.adapter), two_ranks["adapter"])


def test_bad_multi_process_settings_fail_before_anything_starts(tiny_assets, tmp_path: Path) -> None:
    recipe = recipe_for(tmp_path, tiny_assets, "bad", batch_size=2)
    runs_dir = tmp_path / "runs"
    base = [*TUNER, "run", str(recipe), "--runs-dir", str(runs_dir), "--detach"]
    cases = {
        "no address": ([*base, "--nnodes", "2"], "training.master_addr"),
        "rank outside": (
            [*base, "--nnodes", "2", "--node-rank", "2", "--master-addr", "127.0.0.1"],
            "--node-rank 2 is outside 0..1",
        ),
    }
    for name, (command, expected) in cases.items():
        result = subprocess.run(command, capture_output=True, text=True)
        assert result.returncode == 2, name
        assert expected in result.stderr and "Traceback" not in result.stderr, (name, result.stderr)
    if importlib.util.find_spec("deepspeed") is None:
        deepspeed = recipe_for(
            tmp_path, tiny_assets, "ds", batch_size=2, num_processes=2, strategy="deepspeed"
        )
        result = subprocess.run([*TUNER, "run", str(deepspeed), "--runs-dir", str(runs_dir)], **CAPTURE)
        assert result.returncode == 2
        assert "needs the deepspeed package" in result.stderr and "Traceback" not in result.stderr
    assert not runs_dir.exists() or not [p for p in runs_dir.iterdir() if not p.name.startswith(".")]


def test_two_processes_train_a_minilm_classifier_like_one(tmp_path: Path) -> None:
    """Sequence classification too: BERT's batch-mean loss must not be scaled by the process count
    (the Trainer does that for models that take loss kwargs; BERT takes them and ignores them)."""
    import torch

    from tests.modeling.helpers import train_in_process
    from tests.modeling.test_minilm_classification import minilm_recipe, minilm_without_dropout, write_tickets

    data = write_tickets(tmp_path / "tickets.jsonl", 80, seed=1)
    model = str(minilm_without_dropout(tmp_path / "minilm"))
    one = minilm_recipe(tmp_path / "one.toml", data, model, max_steps=4, batch_size=8, max_grad_norm=0.0)
    two = minilm_recipe(
        tmp_path / "two.toml", data, model, max_steps=4, batch_size=4, num_processes=2, max_grad_norm=0.0
    )
    run = start_run(two, tmp_path / "runs-two")
    _, single, single_events = train_in_process(one, tmp_path / "runs-one")
    assert wait_until_done(run)["phase"] == "completed", run.log.read_text()[-3000:]
    losses = [m["loss"] for m in events_of(run, "metric")]
    assert losses == pytest.approx([e["loss"] for e in single_events if e["type"] == "metric"], rel=1e-4)
    a, b = adapter_tensors(run.adapter), adapter_tensors(single.adapter)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], rtol=ADAPTER_RTOL, atol=ADAPTER_ATOL), key


def test_a_node_started_with_another_recipe_fails_the_run_naming_it(tiny_assets, tmp_path: Path) -> None:
    ours = recipe_for(tmp_path, tiny_assets, "ours", batch_size=2)
    theirs = recipe_for(tmp_path, tiny_assets, "theirs", batch_size=2, learning_rate=0.02)
    runs_dir = tmp_path / "runs"
    meet = ["--runs-dir", str(runs_dir), "--nnodes", "2", "--master-addr", "127.0.0.1"]
    meet += ["--master-port", str(free_port())]
    second = subprocess.Popen(
        [*TUNER, "run", str(theirs), *meet, "--node-rank", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    first = subprocess.run([*TUNER, "run", str(ours), *meet, "--node-rank", "0"], **CAPTURE, timeout=120)
    second.communicate(timeout=60)
    assert first.returncode == 1 and second.returncode == 1
    assert "Rank 1: Node 1 was started with a different recipe" in first.stdout
    assert "Traceback" not in first.stdout
    (root,) = [p for p in runs_dir.iterdir() if not p.name.startswith(".")]
    (error,) = events_of(RunDir.open(root), "error")
    assert error["kind"] == "invalid" and error["rank"] == 1
