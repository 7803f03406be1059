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

SIGTERM is not left to the agent (which would kill the ranks after 30 s): it is passed on to the
ranks, which agree to stop after the same step and save a checkpoint.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

from tuner_tui.errors import EXIT_OK, EXIT_RUN_FAILED
from tuner_tui.runs.events import EventWriter
from tuner_tui.runs.layout import RunDir
from tuner_tui.runs.ranks import EXIT_PEER_LOST, clear_rank_errors, rank_log, read_rank_errors
from tuner_tui.runs.state import TERMINAL_PHASES, read_raw_state, write_state

RENDEZVOUS_TIMEOUT_S = 900


def torchrun_args(
    nproc: int, nnodes: int, node_rank: int, master_addr: str, master_port: int, run_id: str
) -> list[str]:
    """torchrun's command-line options for this node (the worker command follows them)."""
    args = ["--nproc-per-node", str(nproc), "--nnodes", str(nnodes), "--max-restarts", "0"]
    # SIGTERM stays ours (see the module docstring); the agent keeps the others.
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


def _forward_sigterm(signum: int, frame: object) -> None:
    import psutil

    print("supervisor: SIGTERM received, asking every rank to stop after this step", flush=True)
    for child in psutil.Process().children():
        try:
            child.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            continue


def launch(worker_args: list[str], options: list[str]) -> dict[int, Any]:
    """Run the ranks to the end; the failures by global rank (empty when all succeeded)."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import elastic_launch
    from torch.distributed.run import config_from_args, parse_args

    config, entrypoint, _ = config_from_args(parse_args([*options, "-m", "tuner_tui.runs.worker"]))
    try:
        elastic_launch(config, sys.executable)("-u", "-m", "tuner_tui.runs.worker", *worker_args)
    except ChildFailedError as exc:
        return dict(exc.failures)
    return {}


def report_failure(run: RunDir, failures: dict[int, Any], problem: str = "") -> None:
    """One `error` event and the `failed` phase, naming the rank that failed first and its log."""
    state = read_raw_state(run.state)
    if state.get("phase") in TERMINAL_PHASES:
        return  # rank 0 ended the run itself
    if state.get("pid") not in (None, os.getpid()):
        return  # a newer attempt (a resume) owns the run now
    from tuner_tui.runs.worker import last_good_checkpoint

    error = _culprit(run, failures, problem)
    last_good = last_good_checkpoint(run)
    if error["kind"] in ("rank_failed", "oom", "crash", "diverged") and last_good:
        error["hint"] += (
            f" Last good checkpoint: {last_good} (`tuner run --resume {run.root}` continues from it)."
        )
    with EventWriter(run.events) as events:
        events.emit("error", last_checkpoint=last_good, **error)
        write_state(run.state, phase="failed", error_kind=error["kind"], failed_rank=error.get("rank"))
        events.emit("status", phase="failed", error_kind=error["kind"], failed_rank=error.get("rank"))


def _culprit(run: RunDir, failures: dict[int, Any], problem: str) -> dict[str, Any]:
    """The failure to report: a rank's own error before a rank killed by a signal, before ranks
    that only lost their peers."""
    reported = sorted(
        (e for e in read_rank_errors(run.root) if not e.get("peer_lost")),
        key=lambda e: (round(float(e.get("time", 0))), int(e.get("rank", 0))),
    )
    if reported:
        first = reported[0]
        rank = int(first["rank"])
        log = run.log if rank == 0 else rank_log(run.root, rank)
        return {
            "kind": first["kind"],
            "message": f"Rank {rank}: {first['message']}",
            "hint": f"{first['hint']} Rank {rank}'s log: {log}.",
            "rank": rank,
            "log": str(log),
        }
    silent = [
        (rank, f)
        for rank, f in failures.items()
        if f.exitcode != EXIT_PEER_LOST and f.exitcode != -signal.SIGTERM
    ] or [(rank, f) for rank, f in failures.items() if f.exitcode != EXIT_PEER_LOST]
    if silent:
        rank, failure = min(silent, key=lambda item: (item[1].timestamp, item[0]))
        log = run.log if rank == 0 else rank_log(run.root, rank)
        how = (
            f"was killed by {failure.signal_name()}"
            if failure.exitcode < 0
            else f"exited with code {failure.exitcode}"
        )
        return {
            "kind": "rank_failed",
            "message": f"Rank {rank} (local rank {failure.local_rank}, pid {failure.pid}) {how}; "
            "the other ranks were stopped.",
            "hint": f"Rank {rank}'s log: {log}. A SIGKILL is often the kernel's out-of-memory killer "
            "(see `dmesg`); lower batch_size or max_length, or use fewer processes.",
            "rank": rank,
            "log": str(log),
        }
    if failures:
        ranks = ", ".join(str(r) for r in sorted(failures))
        return {
            "kind": "rank_failed",
            "message": f"Ranks {ranks} lost contact with the others: a rank on another node stopped "
            "without a message (killed, or its machine went away).",
            "hint": f"Read the other nodes' rank logs in {run.root} (worker.rank<N>.log) and their "
            "`tuner run` output.",
            "log": str(run.root),
        }
    return {
        "kind": "rendezvous",
        "message": f"The training processes did not start: {problem or 'unknown launcher error'}",
        "hint": "For several nodes: start `tuner run ... --node-rank K` on every node with the same "
        f"--nnodes, --master-addr and --master-port, and open that port between them. Details: {run.log}.",
    }


def supervise(args: argparse.Namespace) -> int:
    run = RunDir.open(args.run_dir) if args.run_dir else None
    worker_args = [str(run.root)] if run else ["--join"]
    if args.expect_recipe_hash:
        os.environ["TUNER_EXPECT_RECIPE_HASH"] = args.expect_recipe_hash
    signal.signal(signal.SIGTERM, _forward_sigterm)
    if "OMP_NUM_THREADS" not in os.environ:  # torchrun would pin 1 thread per rank
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // args.nproc))
    options = torchrun_args(
        args.nproc,
        args.nnodes,
        args.node_rank,
        args.master_addr,
        args.master_port,
        run.run_id if run else uuid.uuid4().hex,
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
    print(
        f"supervisor: torchrun {' '.join(options)} -m tuner_tui.runs.worker {' '.join(worker_args)}",
        flush=True,
    )
    problem = ""
    try:
        failures = launch(worker_args, options)
    except Exception as exc:  # rendezvous timeouts, a port in use, ...
        failures, problem = {}, f"{type(exc).__name__}: {exc}"
        print(f"supervisor: {problem}", file=sys.stderr, flush=True)
    if not failures and not problem:
        return EXIT_OK
    for rank, failure in sorted(failures.items()):
        print(
            f"supervisor: rank {rank} (local rank {failure.local_rank}, pid {failure.pid}) ended with "
            f"exit code {failure.exitcode}",
            flush=True,
        )
    if run is not None:
        report_failure(run, failures, problem)
    return EXIT_RUN_FAILED


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tuner_tui.runs.supervisor")
    parser.add_argument("run_dir", nargs="?", type=Path, help="The run (node 0); absent: join node 0's run.")
    parser.add_argument("--nproc", type=int, required=True)
    parser.add_argument("--nnodes", type=int, default=1)
    parser.add_argument("--node-rank", type=int, default=0)
    parser.add_argument("--master-addr", default="")
    parser.add_argument("--master-port", type=int, default=29500)
    parser.add_argument("--expect-recipe-hash", default="")
    args = parser.parse_args(argv)
    try:
        return supervise(args)
    except BaseException as exc:  # noqa: BLE001 - a supervisor that dies must still end the run
        import traceback

        traceback.print_exc()
        if args.run_dir:
            report_failure(
                RunDir.open(args.run_dir), {}, f"the supervisor failed: {type(exc).__name__}: {exc}"
            )
        return EXIT_RUN_FAILED


if __name__ == "__main__":
    sys.exit(main())
