"""The worker process: `python -m tuner_tui.runs.worker RUN_DIR` (or `--join` on nodes other than 0;
`RUN_DIR --evaluate-only [--pairs FILE]` to evaluate a finished run again, see `run_evaluation`).

Started detached by the launcher (own session, stdin from /dev/null, output to worker.log), or,
for several processes, once per rank by torchrun under the supervisor. Rank 0 owns the run
directory while it lives: it alone writes events.jsonl, state.json and checkpoint commits. Every
way out of a single-process `run_worker` leaves a terminal phase in state.json and, on failure,
an `error` event with a kind, a message and a hint; with several ranks, a failing rank writes its
`worker.rank<N>.error.json` and the supervisor reports the one that failed first.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from tuner_tui.errors import EXIT_INVALID_INPUT, EXIT_OK, EXIT_RUN_FAILED, TunerError
from tuner_tui.paths import current_umask
from tuner_tui.recipe import read_recipe, save_recipe
from tuner_tui.runs import checkpoints, control, ranks
from tuner_tui.runs.events import DiscardedEvents, EventWriter
from tuner_tui.runs.layout import RunDir
from tuner_tui.runs.ranks import SINGLE, Rank
from tuner_tui.runs.state import (
    RunBusy,
    RunLock,
    disk_full,
    make_reserve,
    process_start_time,
    read_raw_state,
    release_reserve,
    write_state,
)

if TYPE_CHECKING:
    from tuner_tui.training.telemetry import TelemetrySampler

HINTS = {
    "diverged": (
        "Lower [training] learning_rate (e.g. by 10x), use dtype = 'float32' or 'bfloat16' "
        "instead of 'float16', or clip harder with a smaller max_grad_norm (e.g. 0.3)."
    ),
    "oom": (
        "Out of memory: lower [training] batch_size (raise gradient_accumulation to keep the "
        "effective batch), set gradient_checkpointing = true, shorten max_length, or use "
        "[method] type = 'qlora' on a GPU. `tuner estimate RECIPE` shows what fits."
    ),
    "disk_full": (
        "Free space on that disk (old runs, their checkpoints, caches) or give it a bigger quota; "
        "the checkpoints that were complete are kept, and the half-written one was removed."
    ),
}


class Owner:
    """Writes to the run directory's shared files, when this process is rank 0; else nothing."""

    def __init__(self, run: RunDir, events: EventWriter, rank: Rank):
        self.run, self.events, self.rank = run, events, rank

    @property
    def primary(self) -> bool:
        return self.rank.primary

    def state(self, **fields: object) -> None:
        if self.primary:
            write_state(self.run.state, **fields)

    def phase(self, phase: str, **fields: object) -> None:
        self.state(phase=phase, **fields)
        self.events.emit("status", phase=phase, **fields)


def _is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
    )


def last_good_checkpoint(run: RunDir) -> str | None:
    path = checkpoints.latest_complete(run.checkpoints, verify=False)
    return str(path) if path else None


def honour_umask(root: Path) -> list[Path]:
    """Give the run's weight files the mode the user's umask gives every other file; returns the
    files changed.

    safetensors >= 0.8 writes through a temporary file, created 0600, that it renames into place
    (safetensors PR #764, issue #782), so adapter and checkpoint weights came out 0600 among 0644
    files. The run directory honours the umask throughout (README: "Who can read a run").
    """
    wanted = 0o666 & ~current_umask()
    changed = []
    for path in sorted(Path(root).rglob("*.safetensors")):
        try:
            if not path.is_symlink() and path.is_file() and path.stat().st_mode & 0o777 != wanted:
                path.chmod(wanted)
                changed.append(path)
        except OSError:  # a checkpoint being pruned meanwhile
            continue
    return changed


def _telemetry_sampler(run: RunDir, events: EventWriter, rank: Rank) -> TelemetrySampler | None:
    """Rank 0 samples its node into events (with the other nodes' latest samples); the first rank
    of every other node samples its node into telemetry.node<K>.json; the rest sample nothing."""
    from tuner_tui.training.telemetry import NodeTelemetryFile, TelemetrySampler

    several_nodes = rank.world_size > rank.local_world_size
    if rank.primary:
        return TelemetrySampler(
            events, local_ranks=rank.distributed, other_nodes=run.root if several_nodes else None
        )
    if rank.local_rank == 0:
        return TelemetrySampler(NodeTelemetryFile(run.root, rank.node_rank), local_ranks=True)
    return None


def run_worker(run_dir: Path, stop: threading.Event, rank: Rank = SINGLE) -> int:
    """Run (or resume) the run in `run_dir` as `rank`; returns the process exit code (2, having
    written nothing, when another process holds the run's lock)."""
    run = RunDir.open(run_dir)
    lock = None
    if not rank.distributed:  # several ranks: node 0's supervisor holds the lock for all of them
        try:
            lock = RunLock.take(run.root)  # handed down by the launcher, else taken here
        except RunBusy as exc:
            # No event: events.jsonl and state.json belong to the process that holds the lock.
            print(f"worker: {exc}", file=sys.stderr, flush=True)
            return EXIT_INVALID_INPUT
    try:
        return _work(run, stop, rank)
    finally:
        if rank.primary:
            release_reserve(run.root)
        if lock is not None:
            lock.close()


def _work(run: RunDir, stop: threading.Event, rank: Rank) -> int:
    events: EventWriter = EventWriter(run.events) if rank.primary else DiscardedEvents()
    owner = Owner(run, events, rank)
    sampler = _telemetry_sampler(run, events, rank)
    try:
        if not rank.distributed:  # with several ranks, state.json keeps the supervisor's pid
            pid = os.getpid()
            owner.state(pid=pid, pid_started=process_start_time(pid))
        if rank.primary:  # room for the last words should the disk fill up (see _fail)
            make_reserve(run.root)
        owner.phase("preparing")
        if sampler:
            sampler.start()
        return _prepare_and_train(owner, stop)
    except BaseException as exc:  # noqa: BLE001 - every failure must end in a terminal phase
        return _fail(owner, exc)
    finally:
        if sampler:
            sampler.stop()
        if rank.primary:
            honour_umask(run.root)
        events.close()


def _prepare_and_train(owner: Owner, stop: threading.Event) -> int:
    from tuner_tui.evaluation.run import NoHeldOutData, evaluate_run
    from tuner_tui.evaluation.scoring import EvaluationStopped
    from tuner_tui.runs.environment import environment_lock
    from tuner_tui.training.examples import PreparedData
    from tuner_tui.training.run import resolve_device, train

    run, events, rank = owner.run, owner.events, owner.rank
    recipe, problems, document = read_recipe(run.recipe)
    if problems:
        from tuner_tui.recipe import RecipeError

        raise RecipeError(str(run.recipe), problems)
    resume_from = None
    if rank.primary:  # one rank decides, so every rank resumes from the same checkpoint
        for path in checkpoints.remove_incomplete(run.checkpoints):
            events.emit(
                "log",
                level="warning",
                message=f"Removed incomplete checkpoint {path.name} (killed mid-save).",
            )
        resume_from, set_aside = checkpoints.select_resume(run.checkpoints)
        _report_fallback(events, resume_from, set_aside)
        if resume_from is None and not recipe.environment.get("libraries"):
            device = resolve_device(recipe.training.device)
            recipe.environment.update(environment_lock(recipe.data.path, recipe.model.name_or_path, device))
            save_recipe(recipe, run.recipe, document)
    resume_from = ranks.broadcast(resume_from, rank)
    if resume_from is not None:
        events.emit("log", level="info", message=f"Resuming from {resume_from.name}.")
    # Several ranks must agree on stopping; they do at the first step (EventCallback).
    if stop.is_set() and not rank.distributed:
        owner.phase("stopped", step=read_raw_state(run.state).get("step", 0))
        return EXIT_OK

    def record_or_check_data(data: PreparedData) -> None:
        """A fresh run records the cleaned data's fingerprint; a resumed one must see the same,
        and so must every rank (on several nodes each reads its own copy of the path)."""
        fingerprint = data.source.fingerprint if data.source else None
        seen = ranks.gather(fingerprint, rank)
        if len(set(seen)) > 1:
            differing = ", ".join(f"rank {r}: {f}" for r, f in enumerate(seen))
            raise TunerError(
                f"The ranks read different data at {recipe.data.path} (content fingerprints {differing}). "
                "Every node must see the same file: put it on the shared filesystem or copy it exactly."
            )
        recorded = recipe.environment.get("data_content_fingerprint")
        if recorded is None:
            recipe.environment["data_content_fingerprint"] = fingerprint
            if data.chat_template:
                recipe.environment["chat_template"] = data.chat_template  # e.g. fallback:alpaca
            if rank.primary:
                save_recipe(recipe, run.recipe, document)
        elif recorded != fingerprint:
            raise TunerError(
                f"The data at {recipe.data.path} changed since this run started (content fingerprint "
                f"{fingerprint} vs {recorded} in {run.recipe}); resuming would mix two datasets. "
                "Restore the original data, or start a new run with `tuner run`."
            )

    outcome = train(
        recipe, run, events, stop, resume_from=resume_from, on_data=record_or_check_data, rank=rank
    )
    ranks.leave_process_group(rank)
    if outcome.stopped:
        owner.phase("stopped", step=outcome.global_step, last_checkpoint=last_good_checkpoint(run))
        return EXIT_OK
    step = outcome.global_step
    del outcome  # free the training model before evaluation loads fresh copies from disk
    if not rank.primary:
        return EXIT_OK  # evaluation runs on rank 0 alone
    owner.phase("evaluating", step=step)
    # `tuner stop` and SIGTERM are honoured between batches (and generated tokens) here too; the
    # adapter is already saved, so a stop keeps the training and skips only the report.
    should_stop = control.StopRequests(run.control, stop)
    try:
        verdict = evaluate_run(
            recipe, run, events, resolve_device(recipe.training.device), should_stop=should_stop
        )["verdict"]
    except EvaluationStopped:
        events.emit(
            "log",
            level="info",
            message=f"Stopped during evaluation; training is complete and the adapter is saved in "
            f"{run.adapter}. Evaluate it with: tuner eval {run.root}",
        )
        owner.phase(
            "stopped",
            step=step,
            adapter=str(run.adapter),
            last_checkpoint=last_good_checkpoint(run),
            stopped_in="evaluating",
        )
        return EXIT_OK
    except NoHeldOutData as exc:
        events.emit("log", level="warning", message=f"Evaluation skipped: {exc}")
        verdict = "not_evaluated"
    except Exception as exc:
        raise EvaluationFailed(exc) from exc
    owner.phase("completed", step=step, adapter=str(run.adapter), verdict=verdict)
    return EXIT_OK


def _report_fallback(
    events: EventWriter, resume_from: Path | None, set_aside: list[checkpoints.SetAside]
) -> None:
    """Say so when damaged checkpoints make the run resume from an older one, or from step 0."""
    if not set_aside:
        return
    for moved in set_aside:
        events.emit("log", level="warning", message=moved.describe(), set_aside=str(moved.path))
    names = ", ".join(moved.name for moved in set_aside)
    if resume_from is not None:
        message = f"Falling back to {resume_from.name}: the newer {names} failed verification."
    else:
        message = f"No checkpoint verifies ({names} failed verification): training restarts from step 0."
    events.emit(
        "log",
        level="warning",
        message=message,
        fallback=resume_from.name if resume_from else None,
        set_aside=[moved.name for moved in set_aside],
    )


class EvaluationFailed(Exception):
    """Training finished and the adapter is saved, but evaluating it failed."""

    def __init__(self, cause: Exception):
        self.cause = cause
        super().__init__(str(cause))


def describe_failure(run: RunDir, exc: BaseException) -> tuple[str, str, str]:
    """(kind, message, hint) for an exception that ended the run."""
    from tuner_tui.training.callback import TrainingDiverged

    if isinstance(exc, TrainingDiverged):
        return (
            "diverged",
            f"Training diverged at step {exc.step}: loss={exc.loss}, grad_norm={exc.grad_norm}.",
            HINTS["diverged"],
        )
    if _is_oom(exc):
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return "oom", f"Out of memory: {first_line}.", HINTS["oom"]
    full = disk_full(exc, run.checkpoints)
    if full is not None:  # also when evaluation hit it: the report is as lost as a checkpoint
        first_line = (str(exc).splitlines() or [""])[0]
        return (
            "disk_full",
            f"The disk is full: {full.describe()} ({type(exc).__name__}: {first_line}).",
            HINTS["disk_full"],
        )
    if isinstance(exc, EvaluationFailed):
        cause = exc.cause
        hint = f"The adapter is saved in {run.adapter}. Fix the cause, then: tuner eval {run.root}"
        if not isinstance(cause, TunerError):
            hint += f" The full traceback is in {run.log}."
        return "evaluation", f"Training completed but evaluation failed: {cause}", hint
    if isinstance(exc, TunerError):
        return "invalid", str(exc), "Fix the recipe or files named above and run again."
    if isinstance(exc, KeyboardInterrupt):
        return "crash", "Interrupted.", f"Resume with `tuner run --resume {run.root}`."
    return "crash", f"{type(exc).__name__}: {exc}", f"The full traceback is in {run.log}."


def _fail(owner: Owner, exc: BaseException) -> int:
    run, rank = owner.run, owner.rank
    kind, message, hint = describe_failure(run, exc)
    full = disk_full(exc, run.checkpoints) if kind == "disk_full" else None  # before _make_room
    if full is not None and rank.primary:
        _make_room(owner)
    with contextlib.suppress(OSError):  # worker.log may be on the full disk too
        traceback.print_exc(file=sys.stderr)
    if rank.distributed:
        # The supervisor reports it: it alone sees which rank failed first and which only lost
        # their peers.
        peer_lost = ranks.is_peer_lost(exc, kind)
        ranks.write_rank_error(run.root, rank, kind, message, hint, peer_lost)
        return ranks.EXIT_PEER_LOST if peer_lost else EXIT_RUN_FAILED
    last_good = last_good_checkpoint(run)
    if kind in ("diverged", "oom", "crash", "disk_full") and last_good:
        hint += f" Last good checkpoint: {last_good} (`tuner run --resume {run.root}` continues from it)."
    detail = {"free_bytes": full.free, "folder": str(full.folder)} if full is not None else {}
    try:
        owner.events.emit("error", kind=kind, message=message, hint=hint, last_checkpoint=last_good, **detail)
        owner.phase("failed", error_kind=kind)
    except OSError as write_error:  # no room (left): state.json, at least
        if rank.primary:
            _make_room(owner)
        with contextlib.suppress(OSError):
            print(f"worker: could not record the failure ({write_error})", file=sys.stderr, flush=True)
        with contextlib.suppress(OSError):  # else viewers see the worker gone, the run `crashed`
            owner.state(phase="failed", error_kind=kind)
    return EXIT_RUN_FAILED


def _make_room(owner: Owner) -> None:
    """On a full disk: free the worker's reserve and the half-written checkpoint, so the error
    event and state.json fit. Complete checkpoints are never touched."""
    release_reserve(owner.run.root)
    checkpoints.remove_incomplete(owner.run.checkpoints)


def _join_run(rank: Rank, run_dir: Path | None) -> Path:
    """Every rank's run directory: rank 0's, sent over the process group (nodes other than 0 are
    started without one)."""
    shared = ranks.broadcast(str(run_dir) if run_dir else None, rank)
    if shared is None:
        raise TunerError("No run directory: node 0 must be started with a recipe or --resume RUN_DIR.")
    path = Path(shared)
    if not (path / "state.json").is_file():
        raise TunerError(
            f"Node {rank.node_rank} cannot see the run directory {path} that node 0 created: the runs "
            "directory must be on a filesystem every node shares (NFS, Lustre, ...). Pass the same "
            "--runs-dir on a shared mount to every node."
        )
    return path


def _check_same_recipe(rank: Rank, path: Path) -> None:
    """A node started with another recipe than node 0's would train something else: refuse."""
    expected = os.environ.get("TUNER_EXPECT_RECIPE_HASH")
    actual = read_raw_state(path / "state.json").get("recipe_hash")
    if expected and actual != expected:
        raise TunerError(
            f"Node {rank.node_rank} was started with a different recipe (hash {expected[:12]}) than "
            f"node 0's run {path} (hash {str(actual)[:12]})."
        )


def _run_rank(run_dir: Path | None, stop: threading.Event) -> int:
    """One of several ranks under torchrun: join the group and the run, then work as `rank`."""
    rank = Rank.from_env()
    ranks.die_with_parent()
    if run_dir is not None and not rank.primary:
        log = ranks.rank_log(run_dir, rank.rank)
        print(f"rank {rank.rank} (node {rank.node_rank}): its log is {log}", flush=True)
        ranks.redirect_output(log)
    try:
        ranks.init_process_group(os.environ.get("TUNER_DEVICE", "auto"))
    except TunerError as exc:
        return _refuse(rank, run_dir, exc, "Fix [training] in the recipe and run again.")
    try:
        try:
            path = _join_run(rank, run_dir)
        except TunerError as exc:  # nowhere to write but this node's supervisor log
            return _refuse(rank, None, exc, "")
        if run_dir is None:
            join_file = os.environ.get("TUNER_JOIN_FILE")
            if join_file and rank.local_rank == 0:  # tells this node's supervisor where to report
                Path(join_file).write_text(str(path), encoding="utf-8")
            if not rank.primary:
                log = ranks.rank_log(path, rank.rank)
                print(f"rank {rank.rank} (node {rank.node_rank}) joined {path}; its log: {log}", flush=True)
                ranks.redirect_output(log)
        processes = ranks.gather(
            {"host": socket.gethostname(), "pid": os.getpid(), "started": process_start_time(os.getpid())},
            rank,
        )
        if rank.primary:  # so a resume waits for ranks that outlive a killed supervisor
            write_state(RunDir(path).state, rank_pids=processes)
        try:
            _check_same_recipe(rank, path)
        except TunerError as exc:
            hint = "Start every node with the same recipe file and the same --nnodes."
            return _refuse(rank, path, exc, hint)
        return run_worker(path, stop, rank)
    finally:
        ranks.destroy_process_group()


def _refuse(rank: Rank, run_root: Path | None, exc: TunerError, hint: str) -> int:
    """A rank that cannot take part: say why in its log and, when the run is known, to the
    supervisor (which reports it as this rank's `invalid` error)."""
    print(f"rank {rank.rank}: {exc}", file=sys.stderr, flush=True)
    if run_root is not None:
        ranks.write_rank_error(run_root, rank, "invalid", str(exc), hint, peer_lost=False)
    return EXIT_RUN_FAILED


# -- re-evaluation (`tuner eval`, the wizard's Re-evaluate; started by launcher.start_evaluation) --


def run_evaluation(run_dir: Path, stop: threading.Event, pairs_file: Path | None = None) -> int:
    """`RUN_DIR --evaluate-only`: evaluate the run's saved adapter again and rewrite its report/.

    Holds the run's lock (handed down by `start_evaluation`, else taken here) for its whole life,
    and ends like the worker's evaluation phase: `completed` with the new verdict; `stopped` when
    asked to (`tuner stop`, the wizard's stop, SIGTERM/SIGINT; checked between stages and
    batches), the old report unchanged; `failed` with an `error` event. Returns the exit code (2,
    having written nothing, when another process holds the lock)."""
    run = RunDir.open(run_dir)
    try:
        lock = RunLock.take(run.root)
    except RunBusy as exc:
        print(f"worker: {exc}", file=sys.stderr, flush=True)
        return EXIT_INVALID_INPUT
    try:
        return _evaluate_only(run, stop, pairs_file)
    finally:
        release_reserve(run.root)
        lock.close()


def _evaluate_only(run: RunDir, stop: threading.Event, pairs_file: Path | None) -> int:
    events = EventWriter(run.events)
    owner = Owner(run, events, SINGLE)
    sampler: TelemetrySampler | None = None
    try:
        pid = os.getpid()
        owner.state(pid=pid, pid_started=process_start_time(pid))
        make_reserve(run.root)
        if read_raw_state(run.state).get("phase") != "evaluating":  # started by hand, not by the launcher
            owner.phase("evaluating", reevaluation=True)
        sampler = _telemetry_sampler(run, events, SINGLE)  # the dashboard's gauges, as in a run
        if sampler:
            sampler.start()
        return _reevaluate(owner, stop, pairs_file)
    except BaseException as exc:  # noqa: BLE001 - every failure must end in a terminal phase
        return _fail(owner, exc)
    finally:
        if sampler:
            sampler.stop()
        honour_umask(run.root)
        events.close()


def _reevaluate(owner: Owner, stop: threading.Event, pairs_file: Path | None) -> int:
    from tuner_tui.evaluation.run import evaluate_run
    from tuner_tui.evaluation.scoring import EvaluationStopped
    from tuner_tui.recipe import RecipeError
    from tuner_tui.training.run import resolve_device

    run, events = owner.run, owner.events
    recipe, problems, _ = read_recipe(run.recipe)
    if problems:
        raise RecipeError(str(run.recipe), problems)
    try:
        report = evaluate_run(
            recipe,
            run,
            events,
            resolve_device(recipe.training.device),
            pairs_file,
            should_stop=control.StopRequests(run.control, stop),
        )
    except EvaluationStopped:
        events.emit(
            "log",
            level="info",
            message=f"Re-evaluation stopped as requested; the report in {run.report} is unchanged. "
            f"Evaluate it again with: tuner eval {run.root}",
        )
        owner.phase("stopped", adapter=str(run.adapter), stopped_in="evaluating")
        return EXIT_OK
    except Exception as exc:  # NoHeldOutData too: asked to evaluate, there is nothing to evaluate on
        raise EvaluationFailed(exc) from exc
    owner.phase("completed", adapter=str(run.adapter), verdict=report["verdict"])
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    usage = "usage: python -m tuner_tui.runs.worker (RUN_DIR [--evaluate-only [--pairs FILE]] | --join)"
    evaluate_only = "--evaluate-only" in args
    pairs_file: Path | None = None
    if evaluate_only:
        args = [a for a in args if a != "--evaluate-only"]
        if "--pairs" in args:
            at = args.index("--pairs")
            if at + 1 >= len(args):
                print(usage, file=sys.stderr)
                return 2
            pairs_file = Path(args[at + 1])
            args = args[:at] + args[at + 2 :]
    if len(args) != 1 or (evaluate_only and args[0] == "--join"):
        print(usage, file=sys.stderr)
        return 2
    stop = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        print(
            f"received {signal.Signals(signum).name}: stopping after this step",
            file=sys.stderr,
            flush=True,
        )
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    run_dir = None if args[0] == "--join" else Path(args[0])
    if evaluate_only:
        return run_evaluation(Path(args[0]), stop, pairs_file)
    if Rank.from_env().distributed:
        return _run_rank(run_dir, stop)
    if run_dir is None:
        print("--join needs torchrun's environment (RANK, WORLD_SIZE, ...)", file=sys.stderr)
        return 2
    return run_worker(run_dir, stop)


if __name__ == "__main__":
    sys.exit(main())
