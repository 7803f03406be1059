"""The worker process: `python -m tuner_tui.runs.worker RUN_DIR` (or `--join` on nodes other than 0).

Started detached by the launcher (own session, stdin from /dev/null, output to worker.log), or,
for several processes, once per rank by torchrun under the supervisor. Rank 0 owns the run
directory while it lives: it alone writes events.jsonl, state.json and checkpoint commits. Every
way out of a single-process `run_worker` leaves a terminal phase in state.json and, on failure,
an `error` event with a kind, a message and a hint; with several ranks, a failing rank writes its
`worker.rank<N>.error.json` and the supervisor reports the one that failed first.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from tuner_tui.errors import EXIT_OK, EXIT_RUN_FAILED, TunerError
from tuner_tui.recipe import read_recipe, save_recipe
from tuner_tui.runs import checkpoints, ranks
from tuner_tui.runs.events import DiscardedEvents, EventWriter
from tuner_tui.runs.layout import RunDir
from tuner_tui.runs.ranks import SINGLE, Rank
from tuner_tui.runs.state import process_start_time, read_raw_state, write_state

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
    """Run (or resume) the run in `run_dir` as `rank`; returns the process exit code."""
    run = RunDir.open(run_dir)
    events: EventWriter = EventWriter(run.events) if rank.primary else DiscardedEvents()
    owner = Owner(run, events, rank)
    if not rank.distributed:  # with several ranks, state.json keeps the supervisor's pid
        pid = os.getpid()
        owner.state(pid=pid, pid_started=process_start_time(pid))
    sampler = _telemetry_sampler(run, events, rank)
    try:
        owner.phase("preparing")
        if sampler:
            sampler.start()
        return _prepare_and_train(owner, stop)
    except BaseException as exc:  # noqa: BLE001 - every failure must end in a terminal phase
        return _fail(owner, exc)
    finally:
        if sampler:
            sampler.stop()
        events.close()


def _prepare_and_train(owner: Owner, stop: threading.Event) -> int:
    from tuner_tui.evaluation.run import NoHeldOutData, evaluate_run
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
        resume_from = checkpoints.latest_complete(run.checkpoints)
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
    try:
        verdict = evaluate_run(recipe, run, events, resolve_device(recipe.training.device))["verdict"]
    except NoHeldOutData as exc:
        events.emit("log", level="warning", message=f"Evaluation skipped: {exc}")
        verdict = "not_evaluated"
    except Exception as exc:
        raise EvaluationFailed(exc) from exc
    owner.phase("completed", step=step, adapter=str(run.adapter), verdict=verdict)
    return EXIT_OK


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
    traceback.print_exc(file=sys.stderr)
    kind, message, hint = describe_failure(run, exc)
    if rank.distributed:
        # The supervisor reports it: it alone sees which rank failed first and which only lost
        # their peers.
        peer_lost = ranks.is_peer_lost(exc, kind)
        ranks.write_rank_error(run.root, rank, kind, message, hint, peer_lost)
        return ranks.EXIT_PEER_LOST if peer_lost else EXIT_RUN_FAILED
    last_good = last_good_checkpoint(run)
    if kind in ("diverged", "oom", "crash") and last_good:
        hint += f" Last good checkpoint: {last_good} (`tuner run --resume {run.root}` continues from it)."
    owner.events.emit("error", kind=kind, message=message, hint=hint, last_checkpoint=last_good)
    owner.phase("failed", error_kind=kind)
    return EXIT_RUN_FAILED


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


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m tuner_tui.runs.worker (RUN_DIR | --join)", file=sys.stderr)
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
    if Rank.from_env().distributed:
        return _run_rank(run_dir, stop)
    if run_dir is None:
        print("--join needs torchrun's environment (RANK, WORLD_SIZE, ...)", file=sys.stderr)
        return 2
    return run_worker(run_dir, stop)


if __name__ == "__main__":
    sys.exit(main())
