"""Start and resume runs: freeze the recipe into a new run directory and spawn the worker.

The worker runs in its own session (`start_new_session=True`), reads /dev/null and writes to
`worker.log`, so neither a closed terminal, a dropped SSH connection nor a viewer that stops
reading can stall or kill it. With several processes the same holds for the supervisor
(runs/supervisor.py, torchrun), which starts the ranks. On nodes other than 0 nothing is created:
the node's supervisor joins the run node 0 made (`join_run`).

One process at a time owns a run directory: the holder of its lock (`run.lock`, see
`state.RunLock`). A resume takes the lock before it reads or writes anything, and the worker it
starts inherits it, so two resumes at once start one worker and the other is refused. A
re-evaluation (`start_evaluation`: `tuner eval`, the wizard's Re-evaluate) is started the same
way: lock, phase `evaluating`, then a detached `worker --evaluate-only` that inherits the lock.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuner_tui.errors import TunerError
from tuner_tui.preflight import check_runnable, preflight_problems
from tuner_tui.recipe import Recipe, RecipeError, make_paths_absolute, read_recipe, save_recipe
from tuner_tui.runs import checkpoints, control, rebuild
from tuner_tui.runs.events import EventWriter, now_iso
from tuner_tui.runs.layout import RunDir, new_run_id
from tuner_tui.runs.ranks import check_strategy
from tuner_tui.runs.state import (
    ACTIVE_PHASES,
    LOCK_FD_ENV,
    RESERVE_BYTES,
    TERMINAL_PHASES,
    DiskFull,
    DiskFullError,
    RunLock,
    atomic_write_json,
    disk_full,
    format_bytes,
    free_bytes,
    process_start_time,
    ranks_alive,
    read_raw_state,
    read_state,
    worker_alive,
    write_state,
)

# Beyond the next checkpoint and the worker's reserve, room a resume wants for events and logs.
RESUME_HEADROOM_BYTES = 1 << 20


@dataclass(frozen=True)
class Placement:
    """Where this `tuner run` sits among the nodes: the command line's --nnodes, --node-rank,
    --master-addr and --master-port (None: the recipe's value)."""

    nnodes: int | None = None
    node_rank: int = 0
    master_addr: str | None = None
    master_port: int | None = None

    def apply(self, recipe: Recipe) -> None:
        if self.nnodes is not None:
            recipe.training.nnodes = self.nnodes
        if self.master_addr is not None:
            recipe.training.master_addr = self.master_addr
        if self.master_port is not None:
            recipe.training.master_port = self.master_port

    def fit(self, recipe: Recipe, source: Path, base_dir: Path | None = None) -> None:
        """Apply the command line's node settings to `recipe` (read from `source`) and refuse
        what cannot run, before anything is written: recipe problems, pre-flight problems (data,
        model, files, devices; relative paths start at `base_dir`, default the recipe's folder),
        a node rank outside the nodes."""
        self.apply(recipe)
        check_runnable(recipe, Path(source).resolve().parent if base_dir is None else base_dir, source)
        self.check(recipe)
        check_strategy(recipe.training.strategy)

    def check(self, recipe: Recipe) -> None:
        if not 0 <= self.node_rank < recipe.training.nnodes:
            raise TunerError(
                f"--node-rank {self.node_rank} is outside 0..{recipe.training.nnodes - 1} "
                f"(nnodes = {recipe.training.nnodes}): number the nodes 0 to nnodes - 1."
            )


LOCAL = Placement()


def _popen_detached(
    command: list[str],
    log_path: Path,
    cwd: Path,
    lock: RunLock | None = None,
    extra_env: dict[str, str] | None = None,
) -> subprocess.Popen:
    """Start `command` in its own session, output to `log_path`; with `lock`, the child inherits
    the run's lock (the same open file description, so it holds the same flock). `extra_env` is
    added to its environment (a sweep pins each trial to its GPU with CUDA_VISIBLE_DEVICES)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false", **(extra_env or {})}
    env.pop(LOCK_FD_ENV, None)
    if lock is not None:
        env[LOCK_FD_ENV] = str(lock.fd)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            pass_fds=(lock.fd,) if lock is not None else (),
            cwd=cwd,
            env=env,
        )
    # Reap the child when it ends, so a long-lived launcher (the TUI) keeps no zombie.
    threading.Thread(target=proc.wait, name=f"reap-{proc.pid}", daemon=True).start()
    return proc


def supervisor_command(
    recipe: Recipe, node_rank: int, run: RunDir | None, recipe_hash: str = "", join_file: Path | None = None
) -> list[str]:
    t = recipe.training
    command = [sys.executable, "-m", "tuner_tui.runs.supervisor"]
    command += [str(run.root)] if run else ["--expect-recipe-hash", recipe_hash]
    command += ["--nproc", str(t.num_processes), "--nnodes", str(t.nnodes), "--node-rank", str(node_rank)]
    command += ["--master-addr", t.master_addr, "--master-port", str(t.master_port), "--device", t.device]
    if join_file is not None:
        command += ["--join-file", str(join_file)]
    return command


def spawn_worker(
    run: RunDir, lock: RunLock | None = None, extra_env: dict[str, str] | None = None
) -> subprocess.Popen:
    """Start the run's worker detached: `python -m tuner_tui.runs.worker RUN_DIR` for one process,
    else the supervisor (torchrun) for node 0's ranks. Records its pid in state.json.

    The child inherits the run's lock (`lock`, held by the caller, else taken here): from the
    moment it exists it holds the lock this process took, so there is no instant at which a
    second launcher could take it between this one's writes and the worker's.

    Raises:
        RunBusy: `lock` not given, and another process holds the run's lock.
    """
    recipe, problems, _ = read_recipe(run.recipe)
    if problems:
        raise RecipeError(str(run.recipe), problems)
    if recipe.training.world_size > 1:
        check_strategy(recipe.training.strategy)
        command = supervisor_command(recipe, 0, run)
    else:
        command = [sys.executable, "-m", "tuner_tui.runs.worker", str(run.root)]
    own = lock is None
    held = RunLock.acquire(run.root) if lock is None else lock
    try:
        proc = _popen_detached(command, run.log, run.root, held, extra_env)
        held.record(proc.pid)  # whoever is refused from now on is told the worker's pid
        write_state(
            run.state,
            pid=proc.pid,
            pid_started=process_start_time(proc.pid),
            host=socket.gethostname(),
            rank_pids=[],
        )
    finally:
        if own:
            held.close()  # the worker's copy keeps the lock
    return proc


@dataclass
class JoinedNode:
    """A node other than 0, started: its supervisor process and the log it writes."""

    proc: subprocess.Popen
    log: Path
    node_rank: int
    nnodes: int
    rendezvous: str
    log_offset: int = 0  # where this attempt's output starts in the log


def join_run(
    recipe_path: Path | None, runs_dir: Path, placement: Placement, resume: Path | None = None
) -> JoinedNode:
    """Start this node's ranks (node_rank > 0): they join the run node 0 starts or resumes and learn
    its directory from rank 0."""
    if resume is not None:
        run = RunDir.open(resume)  # fails early when the shared run directory is not visible here
        recipe, problems, _ = read_recipe(run.recipe)
        recipe_hash = read_raw_state(run.state).get("recipe_hash", "")
        log = run.root / f"worker.node{placement.node_rank}.log"
        _check_same_size(recipe, placement, run)
        placement = dataclasses.replace(placement, nnodes=None)  # the run's own count stands
    else:
        recipe, problems, _ = read_recipe(Path(recipe_path))  # type: ignore[arg-type]
    if problems:
        raise RecipeError(str(recipe_path or resume), problems)
    placement.fit(recipe, run.recipe if resume is not None else Path(recipe_path))  # type: ignore[arg-type]
    t = recipe.training
    if resume is None:
        recipe_hash = recipe.hash()
        nodes_dir = Path(runs_dir).resolve() / ".nodes"
        nodes_dir.mkdir(parents=True, exist_ok=True)
        log = nodes_dir / f"node{placement.node_rank}-{t.master_addr}-{t.master_port}.log"
    command = supervisor_command(
        recipe, placement.node_rank, None, recipe_hash, log.with_name(f"{log.name}.run")
    )
    offset = log.stat().st_size if log.exists() else 0
    proc = _popen_detached(command, log, log.parent)
    return JoinedNode(proc, log, placement.node_rank, t.nnodes, f"{t.master_addr}:{t.master_port}", offset)


def _check_same_size(recipe: Recipe, placement: Placement, run: RunDir) -> None:
    if placement.nnodes is not None and placement.nnodes != recipe.training.nnodes:
        raise TunerError(
            f"The run {run.root} was started on {recipe.training.nnodes} node(s); resume it with "
            f"--nnodes {recipe.training.nnodes} (a different number of processes changes the batches)."
        )


def start_run(recipe_path: Path, runs_dir: Path, placement: Placement = LOCAL) -> RunDir:
    """Validate the recipe, create the run directory with its frozen recipe, start the worker.

    Raises:
        DiskFullError: no room under `runs_dir` for the run directory.
    """
    try:
        run = create_run(recipe_path, runs_dir, placement)
        try:
            spawn_worker(run)
        except BaseException as exc:  # no worker: the run must not read `queued` while we live
            write_state(run.state, phase="failed", error={"kind": "start", "message": str(exc)})
            raise
    except OSError as exc:
        full = disk_full(exc, Path(runs_dir))
        if full is None:
            raise
        raise DiskFullError(
            f"No room to start a run under {runs_dir}: {full.describe()}. Free space on that disk, "
            "or pass --runs-dir on one with room."
        ) from exc
    return run


def create_run(recipe_path: Path, runs_dir: Path, placement: Placement = LOCAL) -> RunDir:
    """A new run directory in the `queued` phase, its recipe frozen with absolute local paths and
    the command line's node settings."""
    recipe_path = Path(recipe_path)
    recipe, problems, document = read_recipe(recipe_path)
    if problems:
        raise RecipeError(str(recipe_path), problems)
    placement.fit(recipe, recipe_path)
    recipe_hash = recipe.hash()  # of the recipe as written, before paths are made absolute
    base = recipe_path.resolve().parent
    # The frozen copy must run from any folder: local paths become absolute.
    make_paths_absolute(recipe, base)
    recipe.environment = {"source_recipe": str(recipe_path.resolve()), "recipe_hash": recipe_hash}
    if recipe.model.task == "preference" and recipe.preference.start_from:
        from tuner_tui.training.start_from import adapter_folder, recipe_hash_of

        start = adapter_folder(recipe.preference.start_from, base)
        recipe.preference.start_from = str(start.resolve())  # the frozen copy runs from anywhere
        recipe.environment["start_from"] = str(start.resolve())
        started_hash = recipe_hash_of(start)
        if started_hash:  # the run it continues, by its recipe
            recipe.environment["start_from_recipe_hash"] = started_hash
    run_id = new_run_id(recipe.project.name, recipe_hash)
    runs_root = Path(runs_dir).resolve()
    # Built under a hidden name and renamed into place: a visible run directory is always complete.
    staging = RunDir(runs_root / f".staging-{run_id}-{os.getpid()}")
    staging.create()
    save_recipe(recipe, staging.recipe, document)
    for attempt in range(1, 100):
        run = RunDir(runs_root / (run_id if attempt == 1 else f"{run_id}-{attempt}"))
        if run.root.exists():
            continue
        write_state(
            staging.state,
            run_id=run.run_id,
            phase="queued",
            step=0,
            created=now_iso(),
            recipe_hash=recipe_hash,
            **_launcher_holds(),
        )
        with EventWriter(staging.events) as events:
            events.emit("status", phase="queued", run_id=run.run_id)
        try:
            os.rename(staging.root, run.root)
        except OSError:  # created by someone else between the check and the rename
            staging.events.unlink()
            continue
        break
    else:
        raise TunerError(f"Could not create a new run directory under {runs_dir}.")
    return run


def _launcher_holds() -> dict[str, Any]:
    """state.json's pid fields naming this process: a queued run stands for the launcher that is
    about to start its worker (spawn_worker then names the worker). Without them a viewer would
    read the run as `crashed` until the worker's pid is written; with them, a launcher that dies
    before it starts the worker leaves a run that reads `crashed`, as it is."""
    me = os.getpid()
    return {"pid": me, "pid_started": process_start_time(me), "host": socket.gethostname()}


def _wait_for_exit(state: dict, run: RunDir, timeout_s: float = 30.0) -> None:
    """A run that just ended may still have its worker (or supervisor) tearing down: wait for it,
    so two attempts never overlap on one run directory."""
    import time

    deadline = time.monotonic() + timeout_s
    while worker_alive(state) or ranks_alive(state):
        if time.monotonic() > deadline:
            raise TunerError(
                f"The previous worker of {run.root} (pid {state.get('pid')}) is still shutting down "
                f"after {timeout_s:.0f} s; wait for it to end (or kill it), then resume again."
            )
        time.sleep(0.1)


def _frozen(run: RunDir) -> tuple[Recipe, Path]:
    recipe, problems, _ = read_recipe(run.recipe)
    if problems:
        raise RecipeError(str(run.recipe), problems)
    return recipe, run.root


def resume_run(
    run_dir: Path, placement: Placement = LOCAL, extra_env: dict[str, str] | None = None
) -> RunDir:
    """Restart the worker of an interrupted, stopped or failed run; it resumes from the newest
    complete checkpoint. Node 0 of several may meet the others at a new --master-addr/-port.

    The run's lock is taken (without waiting) before anything is read or written, and handed to
    the worker (see spawn_worker): of two resumes at once, one starts the worker, the other fails.

    Raises:
        RunBusy: another process holds the run's lock (a live worker, another resume); names its pid.
        DiskFullError: the run's disk has no room for the next checkpoint.
    """
    run = RunDir.open(run_dir)
    # A worker that just ended (or was killed) may still be on its way out: wait for it.
    with RunLock.acquire(run.root, wait_s=30.0) as lock:
        try:
            _resume_locked(run, placement, lock, extra_env)
        except OSError as exc:
            full = disk_full(exc, run.root)
            if full is None:
                raise
            raise DiskFullError(_disk_full_message(run, full)) from exc
    return run


def _disk_full_message(run: RunDir, full: DiskFull, need: int | None = None) -> str:
    last = checkpoints.latest_complete(run.checkpoints, verify=False)
    needs = f"; resuming needs about {format_bytes(need)}" if need is not None else ""
    kept = f" Its last complete checkpoint, {last.name}, is kept." if last else ""
    return (
        f"Cannot resume {run.root}: the disk is full ({full.describe()}{needs}). Free space on it "
        f"(old runs, caches), then resume again.{kept}"
    )


def _check_room(run: RunDir) -> None:
    """Refuse to resume onto a disk without room for the next checkpoint (the size of the last
    one), the worker's reserve and some headroom for events and logs.

    Raises:
        DiskFullError: less free space than that.
    """
    last = checkpoints.latest_complete(run.checkpoints, verify=False)
    size = 0
    if last is not None:
        try:
            marker = json.loads((last / checkpoints.MARKER).read_text(encoding="utf-8"))
            size = sum(int(f["bytes"]) for f in marker["files"].values())
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            size = 0
    need = size + RESERVE_BYTES + RESUME_HEADROOM_BYTES
    free = free_bytes(run.root)
    if free is not None and free < need:
        raise DiskFullError(_disk_full_message(run, DiskFull(run.root, free), need))


def _resume_locked(
    run: RunDir, placement: Placement, lock: RunLock, extra_env: dict[str, str] | None = None
) -> None:
    damage = rebuild.state_damage(run.state)
    if damage is None:
        state = read_raw_state(run.state)
    else:  # lost or damaged: what it held is in the events and checkpoints
        state = rebuild.rebuild_state(run.root)
        state.pop("pid", None)  # the lock's last holder: this process, which holds it now
        state.pop("host", None)
        atomic_write_json(run.state, {**state, "updated": now_iso()})
        with EventWriter(run.events) as events:
            events.emit(
                "log",
                level="warning",
                message=f"state.json was {damage}: rebuilt from events.jsonl and the checkpoints "
                f"(phase {state['phase']}, step {state['step']}).",
            )
    if state.get("pid") == os.getpid():  # queued by this process, which holds the lock: not a worker
        state = {k: v for k, v in state.items() if k not in ("pid", "pid_started")}
    if state.get("phase") == "completed":
        raise TunerError(f"The run {run.root} already completed; nothing to resume. Start a new run instead.")
    if state.get("phase") not in TERMINAL_PHASES and worker_alive(state):
        raise TunerError(
            f"The run {run.root} is still running (worker pid {state.get('pid')}): attach with "
            f"`tuner attach {run.root}` or stop it with `tuner stop {run.root}`."
        )
    _wait_for_exit(state, run)
    _check_room(run)
    # The frozen recipe's local paths are absolute: what it needs must still be there.
    check_runnable(*_frozen(run), run.recipe)
    if placement != LOCAL:
        recipe, problems, document = read_recipe(run.recipe)
        if problems:
            raise RecipeError(str(run.recipe), problems)
        _check_same_size(recipe, placement, run)
        dataclasses.replace(placement, nnodes=None).apply(recipe)
        placement.check(recipe)
        save_recipe(recipe, run.recipe, document)
    for request in control.REQUESTS:  # asked of the last attempt, not of this one
        control.consume(run.control, request)
    write_state(run.state, phase="queued", resumes=int(state.get("resumes", 0)) + 1, **_launcher_holds())
    with EventWriter(run.events) as events:
        events.emit("status", phase="queued", resume=True)
    spawn_worker(run, lock, extra_env)


# -- re-evaluation ---------------------------------------------------------------------------------
# Pre-flight problems that concern the training processes' layout: evaluation runs in one process.
_LAYOUT_KEYS = frozenset({"training.strategy", "training.num_processes"})


@dataclass(frozen=True)
class StartedEvaluation:
    """A re-evaluation started by `start_evaluation`: its process, and where its events begin."""

    run: RunDir
    proc: subprocess.Popen
    events_offset: int
    """Byte offset in events.jsonl of its `evaluating` status event: a follower that wants only
    this evaluation reads from here (`read_events(run.events, events_offset)`)."""

    @property
    def pid(self) -> int:
        return self.proc.pid


def adapter_saved(run: RunDir) -> bool:
    """The run's training saved what evaluation loads: a PEFT adapter or a whole model."""
    return (run.adapter / "adapter_config.json").exists() or (run.adapter / "config.json").exists()


def start_evaluation(run_dir: Path, pairs: Path | None = None, by: str = "") -> StartedEvaluation:
    """Evaluate a finished run again in a detached process (`python -m tuner_tui.runs.worker
    RUN_DIR --evaluate-only [--pairs FILE]`), which rewrites its report/ and ends `completed`,
    `stopped` (asked to stop: the report is unchanged) or `failed` (with an `error` event).

    Like a resume: the run's lock is taken (without waiting for a working holder) before anything
    is read or written; the phase `evaluating` and its status event are written; the process is
    spawned holding the same lock (see spawn_worker), so from this call on no other worker,
    resume or evaluation can start on the run until the evaluation ends. Nothing here imports the
    ML stack: the wizard calls it from its own process.

    Args:
        run_dir: The run directory.
        pairs: A CrowS-Pairs-format CSV for the paired bias benchmark (`tuner eval --pairs`);
            relative to the current folder.
        by: Who asked (recorded in the status event), e.g. "tuner eval".

    Raises:
        RunBusy: another process holds the run's lock (its worker, a resume, an evaluation);
            the message names its pid.
        TunerError: the run has no trained adapter, its frozen recipe cannot run here, or the
            pairs file does not exist.
    """
    run = RunDir.open(run_dir)
    if pairs is not None:
        pairs = Path(pairs).expanduser().resolve()  # the process runs in the run directory
    try:
        return _start_evaluation(run, pairs, by)
    except OSError as exc:
        full = disk_full(exc, run.root)
        if full is None:
            raise
        raise DiskFullError(
            f"Cannot evaluate {run.root}: the disk is full ({full.describe()}). Free space on it "
            "(old runs, caches), then evaluate again."
        ) from exc


def _start_evaluation(run: RunDir, pairs: Path | None, by: str) -> StartedEvaluation:
    # A worker (or evaluation) that just ended may still be on its way out: wait for it.
    with RunLock.acquire(run.root, wait_s=30.0) as lock:
        state = read_state(run.state)
        _check_evaluable(run, state, pairs)
        command = [sys.executable, "-m", "tuner_tui.runs.worker", str(run.root), "--evaluate-only"]
        if pairs is not None:
            command += ["--pairs", str(pairs)]
        recorded = read_raw_state(run.state)
        before = {key: recorded.get(key) for key in ("phase", "pid", "pid_started", "host")}
        control.consume(run.control, "stop")  # asked of an earlier process, not of this evaluation
        me = os.getpid()
        by = by or f"pid {me}"
        with EventWriter(run.events) as events:
            offset = run.events.stat().st_size
            # This process holds the lock and stands for the evaluation until it is spawned.
            write_state(
                run.state,
                phase="evaluating",
                pid=me,
                pid_started=process_start_time(me),
                host=socket.gethostname(),
                rank_pids=[],
            )
            events.emit("status", phase="evaluating", reevaluation=True, by=by)
            try:
                proc = _popen_detached(command, run.log, run.root, lock)
            except OSError as exc:  # nothing started: the run is as it was
                write_state(run.state, **before)
                events.emit("status", phase=before["phase"], by=by)
                raise TunerError(f"Could not start the evaluation of {run.root}: {exc}") from exc
        lock.record(proc.pid)  # whoever is refused from now on is told the evaluation's pid
        write_state(run.state, pid=proc.pid, pid_started=process_start_time(proc.pid))
    return StartedEvaluation(run, proc, offset)


def _check_evaluable(run: RunDir, state: dict, pairs: Path | None) -> None:
    """Refuse, before anything is written, what the evaluation process would fail on at once."""
    phase = state.get("phase")
    if phase in ACTIVE_PHASES:  # the lock is free, yet state.json names a live worker: a
        # filesystem whose locks do not reach the worker's machine (see RunLock)
        raise TunerError(
            f"The run {run.root} is still {phase} (worker pid {state.get('pid')}): evaluate it "
            f"when it ends, or stop it with `tuner stop {run.root}`."
        )
    if not adapter_saved(run):
        shown = state.get("recorded_phase", phase)
        raise TunerError(
            f"The run {run.root} has no trained adapter in {run.adapter} (phase {shown}): "
            f"finish training first (tuner run --resume {run.root})."
        )
    if pairs is not None and not pairs.is_file():
        raise TunerError(f"The pairs file {pairs} does not exist. Pass a CrowS-Pairs-format CSV to --pairs.")
    recipe, _ = _frozen(run)
    problems = recipe.problems() + [
        p for p in preflight_problems(recipe, run.root) if p.path not in _LAYOUT_KEYS
    ]
    if problems:
        raise RecipeError(str(run.recipe), problems)
