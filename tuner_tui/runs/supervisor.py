"""The supervisor of a multi-process run: `python -m tuner_tui.runs.supervisor ...`.

It is torchrun: the same elastic agent, started through torch's own `torch.distributed.run`
argument parser and `elastic_launch`, in-process so that a failure arrives as a
`ChildFailedError` listing each failed rank's exit code or signal instead of text on stderr.
We chose torchrun over `accelerate launch` because it ships with torch (no extra config file or
launcher state), monitors the ranks and tears the others down when one dies, and its static
rendezvous (`--master-addr/--master-port/--node-rank`) is what Slurm scripts already use.

The launcher starts it detached, like a single-process worker, and records its pid; its output
(and rank 0's) goes to `worker.log`. On node 0 it reports a failed run: one `error` event naming
the rank that failed first and its log. Nodes other than 0 join the run that node 0 made: their
ranks learn its directory from rank 0 over the process group.

SIGTERM is not left to the agent (which would kill the ranks after 30 s): on node 0 it becomes a
`control/stop` request, on the other nodes it is passed on to the ranks (also to ranks that start
later, e.g. after the rendezvous); either way the ranks agree to stop after the same step and
save a checkpoint.

On node 0 the supervisor holds the run's lock (`run.lock`, state.RunLock) for its whole life,
inherited from the launcher: its ranks are its children and do not lock. Ranks that outlive a
killed supervisor (the seconds they take to stop and save) are waited for by `resume_run` through
their pids in state.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

from tuner_tui.errors import EXIT_INVALID_INPUT, EXIT_OK, EXIT_RUN_FAILED
from tuner_tui.runs import control
from tuner_tui.runs.events import EventWriter
from tuner_tui.runs.layout import RunDir
from tuner_tui.runs.ranks import (
    EXIT_PEER_LOST,
    clear_rank_errors,
    node_failures_file,
    rank_log,
    read_node_failures,
    read_rank_errors,
)
from tuner_tui.runs.state import (
    TERMINAL_PHASES,
    RunBusy,
    RunLock,
    atomic_write_json,
    read_raw_state,
    write_state,
)

RENDEZVOUS_TIMEOUT_S = 900
# Deaths that follow another rank's failure rather than cause it: the agent's SIGTERM, the NCCL
# watchdog's SIGABRT, and our own "lost my peers" exit code.
_AFTERMATH = {-signal.SIGTERM, -signal.SIGABRT, EXIT_PEER_LOST}


def _agent_takes_signal_option() -> bool:
    """torch >= 2.9 lets the agent leave SIGTERM alone (`--signals-to-handle`)."""
    from torch.distributed.launcher.api import LaunchConfig

    return "signals_to_handle" in {f.name for f in dataclasses.fields(LaunchConfig)}


def torchrun_args(
    nproc: int,
    nnodes: int,
    node_rank: int,
    master_addr: str,
    master_port: int,
    run_id: str,
    keep_sigterm: bool = True,
) -> list[str]:
    """torchrun's command-line options for this node (the worker command follows them)."""
    args = ["--nproc-per-node", str(nproc), "--nnodes", str(nnodes), "--max-restarts", "0"]
    if keep_sigterm:  # SIGTERM stays ours (see the module docstring); the agent keeps the others
        args += ["--signals-to-handle", "SIGINT,SIGHUP,SIGQUIT"]
    if nnodes == 1:
        # What `torchrun --standalone` does: a private rendezvous on a free local port.
        args += ["--rdzv-backend", "c10d", "--rdzv-endpoint", "localhost:0", "--rdzv-id", run_id]
    else:
        args += [
            "--rdzv-backend",
            "static",
            "--node-rank",
            str(node_rank),
            "--master-addr",
            master_addr,
            "--master-port",
            str(master_port),
            "--rdzv-conf",
            f"timeout={RENDEZVOUS_TIMEOUT_S}",
        ]
    return args


class StopForwarder:
    """SIGTERM to the supervisor: a stop request for node 0's run, SIGTERM for this node's ranks,
    including ranks started after the signal came (a watcher keeps passing it on)."""

    def __init__(self, run: RunDir | None):
        self.run = run
        self.requested = threading.Event()
        self._signalled: set[int] = set()
        self._done = threading.Event()

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._on_sigterm)
        threading.Thread(target=self._watch, name="stop-forwarder", daemon=True).start()

    def close(self) -> None:
        self._done.set()

    def _on_sigterm(self, signum: int, frame: object) -> None:
        print("supervisor: SIGTERM received, asking every rank to stop after this step", flush=True)
        if self.run is not None:
            control.request(self.run.control, "stop", by=f"SIGTERM to the supervisor (pid {os.getpid()})")
        self.requested.set()

    def _watch(self) -> None:
        import psutil

        while not self._done.wait(0.5):
            if not self.requested.is_set() or self.run is not None:
                continue  # node 0's ranks read the request; rank 0 shares it with every rank
            for child in psutil.Process().children():
                if child.pid in self._signalled:
                    continue
                try:
                    child.send_signal(signal.SIGTERM)
                    self._signalled.add(child.pid)
                except psutil.NoSuchProcess:
                    continue


def launch(worker_args: list[str], options: list[str]) -> dict[int, Any]:
    """Run the ranks to the end; the failures by global rank (empty when all succeeded)."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import elastic_launch
    from torch.distributed.run import config_from_args, parse_args

    try:
        parsed = parse_args([*options, "-m", "tuner_tui.runs.worker"])
    except SystemExit as exc:  # argparse's way of rejecting an option this torch lacks
        raise RuntimeError(f"torchrun rejected the options {options}") from exc
    config, _, _ = config_from_args(parsed)
    try:
        elastic_launch(config, sys.executable)("-u", "-m", "tuner_tui.runs.worker", *worker_args)
    except ChildFailedError as exc:
        return dict(exc.failures)
    return {}


def _failure_json(failure: Any) -> dict[str, Any]:
    return {
        "local_rank": failure.local_rank,
        "pid": failure.pid,
        "exitcode": failure.exitcode,
        "signal": failure.signal_name() if failure.exitcode < 0 else "",
        "timestamp": failure.timestamp,
    }


def report_failure(
    run: RunDir, failures: dict[int, Any], problem: str = "", world_size: int = 1, nnodes: int = 1
) -> None:
    """One `error` event and the `failed` phase, naming the rank that failed first and its log."""
    state = read_raw_state(run.state)
    if state.get("phase") in TERMINAL_PHASES:
        return  # rank 0 ended the run itself
    if state.get("pid") not in (None, os.getpid()):
        return  # a newer attempt (a resume) owns the run now
    from tuner_tui.runs.worker import last_good_checkpoint

    local = {rank: _failure_json(f) for rank, f in failures.items()}
    if nnodes > 1 and local and all(f["exitcode"] in _AFTERMATH for f in local.values()):
        _wait_for_other_nodes(run, nnodes)
    error = _culprit(run, {**read_node_failures(run.root, nnodes), **local}, problem, world_size, nnodes)
    last_good = last_good_checkpoint(run)
    if error["kind"] in ("rank_failed", "oom", "crash", "diverged") and last_good:
        error["hint"] += (
            f" Last good checkpoint: {last_good} (`tuner run --resume {run.root}` continues from it)."
        )
    with EventWriter(run.events) as events:
        events.emit("error", last_checkpoint=last_good, **error)
        write_state(run.state, phase="failed", error_kind=error["kind"], failed_rank=error.get("rank"))
        events.emit("status", phase="failed", error_kind=error["kind"], failed_rank=error.get("rank"))


def _wait_for_other_nodes(run: RunDir, nnodes: int, timeout_s: float = 20.0) -> None:
    """Node 0's ranks only lost their peers: give the other nodes' supervisors a moment to record
    which of their ranks failed."""
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not read_node_failures(run.root, nnodes):
        time.sleep(0.5)


def _log_of(run: RunDir, rank: int) -> Path:
    return run.log if rank == 0 else rank_log(run.root, rank)


def _culprit(
    run: RunDir, failures: dict[int, dict[str, Any]], problem: str, world_size: int, nnodes: int
) -> dict[str, Any]:
    """The failure to report, by how much it says about the cause: a rank's own error, then a rank
    that died without one (killed, crashed), then ranks that only lost their peers."""
    errors = sorted(
        read_rank_errors(run.root, max(world_size, 1)),
        key=lambda e: (round(float(e.get("time", 0))), int(e.get("rank", 0))),
    )
    own = [e for e in errors if not e.get("peer_lost")]
    if own:
        first = own[0]
        rank = int(first["rank"])
        return {
            "kind": first["kind"],
            "message": f"Rank {rank}: {first['message']}",
            "hint": f"{first['hint']} Rank {rank}'s log: {_log_of(run, rank)}.",
            "rank": rank,
            "log": str(_log_of(run, rank)),
        }
    silent = [(rank, f) for rank, f in failures.items() if f["exitcode"] not in _AFTERMATH]
    if silent:
        rank, failure = min(silent, key=lambda item: (item[1]["timestamp"], item[0]))
        how = (
            f"was killed by {failure['signal']}"
            if failure["exitcode"] < 0
            else f"exited with code {failure['exitcode']} without a message"
        )
        log = _log_of(run, rank)
        return {
            "kind": "rank_failed",
            "message": f"Rank {rank} (local rank {failure['local_rank']}, pid {failure['pid']}) {how}; "
            "the other ranks were stopped.",
            "hint": f"Rank {rank}'s log: {log}. A SIGKILL is often the kernel's out-of-memory killer "
            "(see `dmesg`); lower batch_size or max_length, or use fewer processes.",
            "rank": rank,
            "log": str(log),
        }
    if errors or failures:
        ranks = sorted({int(e["rank"]) for e in errors} | set(failures))
        elsewhere = (
            "a rank on another node stopped without a message (killed, or its machine went away)"
            if nnodes > 1
            else "no rank said why (killed by the system, or stuck until a collective timed out)"
        )
        detail = f" First error: {errors[0]['message']}" if errors else ""
        return {
            "kind": "rank_failed",
            "message": f"Rank(s) {', '.join(map(str, ranks))} lost contact with the others: {elsewhere}."
            + detail,
            "hint": f"Read the rank logs in {run.root} (worker.log, worker.rank<N>.log)"
            + (" and the other nodes' `tuner run` output." if nnodes > 1 else "."),
            "log": str(run.root),
        }
    if problem.startswith("SignalException"):
        return {
            "kind": "crash",
            "message": f"The supervisor was interrupted ({problem}); the ranks were stopped.",
            "hint": f"Resume with `tuner run --resume {run.root}`. Details: {run.log}.",
        }
    return {
        "kind": "rendezvous",
        "message": f"The training processes did not start: {problem or 'unknown launcher error'}",
        "hint": "For several nodes: start `tuner run ... --node-rank K` on every node with the same "
        f"--nnodes, --master-addr and --master-port, and open that port between them. Details: {run.log}.",
    }


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))  # what this process may use (Slurm, taskset, cgroups)
    except AttributeError:
        return os.cpu_count() or 1


def supervise(args: argparse.Namespace) -> int:
    run = RunDir.open(args.run_dir) if args.run_dir else None
    worker_args = [str(run.root)] if run else ["--join"]
    os.environ["TUNER_DEVICE"] = args.device
    os.environ["TUNER_SUPERVISOR_PID"] = str(os.getpid())
    if args.expect_recipe_hash:
        os.environ["TUNER_EXPECT_RECIPE_HASH"] = args.expect_recipe_hash
    join_file = Path(args.join_file) if args.join_file else None
    if join_file is not None:
        os.environ["TUNER_JOIN_FILE"] = str(join_file)
        join_file.unlink(missing_ok=True)
    stopper = StopForwarder(run)
    stopper.install()
    if "OMP_NUM_THREADS" not in os.environ:  # torchrun would pin 1 thread per rank
        os.environ["OMP_NUM_THREADS"] = str(max(1, _cpus() // args.nproc))
    keep_sigterm = _agent_takes_signal_option()
    options = torchrun_args(
        args.nproc,
        args.nnodes,
        args.node_rank,
        args.master_addr,
        args.master_port,
        run.run_id if run else uuid.uuid4().hex,
        keep_sigterm,
    )
    if run is not None:
        clear_rank_errors(run.root)
        if args.nnodes > 1:
            with EventWriter(run.events) as events:
                events.emit(
                    "log",
                    level="info",
                    message=f"Waiting for {args.nnodes} nodes to meet at {args.master_addr}:"
                    f"{args.master_port} (this is node 0; up to {RENDEZVOUS_TIMEOUT_S} s).",
                )
    command = " ".join([*options, "-m", "tuner_tui.runs.worker", *worker_args])
    print(f"supervisor: torchrun {command}", flush=True)
    if not keep_sigterm:
        print("supervisor: this torch lets the agent take SIGTERM: ranks get 30 s to stop", flush=True)
    problem = ""
    try:
        failures = launch(worker_args, options)
    except Exception as exc:  # rendezvous timeouts, a port in use, the agent's SignalException
        failures, problem = {}, f"{type(exc).__name__}: {exc}"
        print(f"supervisor: {problem}", file=sys.stderr, flush=True)
    finally:
        stopper.close()
    if not failures and not problem:
        return EXIT_OK
    for rank, failure in sorted(failures.items()):
        print(
            f"supervisor: rank {rank} (local rank {failure.local_rank}, pid {failure.pid}) ended with "
            f"exit code {failure.exitcode}",
            flush=True,
        )
    world_size = args.nproc * args.nnodes
    if run is not None:
        report_failure(run, failures, problem, world_size, args.nnodes)
    elif failures and join_file is not None and join_file.is_file():
        # This node's ranks joined node 0's run: leave node 0 a record of which of them failed.
        shared = Path(join_file.read_text(encoding="utf-8").strip())
        record = {str(rank): _failure_json(f) for rank, f in failures.items()}
        atomic_write_json(node_failures_file(shared, args.node_rank), record)
    return EXIT_RUN_FAILED


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tuner_tui.runs.supervisor")
    parser.add_argument("run_dir", nargs="?", type=Path, help="The run (node 0); absent: join node 0's run.")
    parser.add_argument("--nproc", type=int, required=True)
    parser.add_argument("--nnodes", type=int, default=1)
    parser.add_argument("--node-rank", type=int, default=0)
    parser.add_argument("--master-addr", default="")
    parser.add_argument("--master-port", type=int, default=29500)
    parser.add_argument("--device", default="auto", help="The recipe's [training] device.")
    parser.add_argument("--expect-recipe-hash", default="")
    parser.add_argument("--join-file", default="", help="Where this node's ranks write the run they joined.")
    args = parser.parse_args(argv)
    lock = None
    try:
        if args.run_dir:  # node 0: the run is this process's (and its ranks') until it exits
            lock = RunLock.take(RunDir.open(args.run_dir).root)
        return supervise(args)
    except RunBusy as exc:  # nothing written: the run belongs to the lock's holder
        print(f"supervisor: {exc}", file=sys.stderr, flush=True)
        return EXIT_INVALID_INPUT
    except BaseException as exc:  # noqa: BLE001 - a supervisor that dies must still end the run
        import traceback

        traceback.print_exc()
        if args.run_dir:
            problem = f"the supervisor failed: {type(exc).__name__}: {exc}"
            report_failure(RunDir.open(args.run_dir), {}, problem, args.nproc * args.nnodes, args.nnodes)
        return EXIT_RUN_FAILED
    finally:
        if lock is not None:
            lock.close()


if __name__ == "__main__":
    sys.exit(main())
