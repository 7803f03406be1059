"""Start and resume runs: freeze the recipe into a new run directory and spawn the worker.

The worker runs in its own session (`start_new_session=True`), reads /dev/null and writes to
`worker.log`, so neither a closed terminal, a dropped SSH connection nor a viewer that stops
reading can stall or kill it. With several processes the same holds for the supervisor
(runs/supervisor.py, torchrun), which starts the ranks. On nodes other than 0 nothing is created:
the node's supervisor joins the run node 0 made (`join_run`).
"""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from tuner_tui.errors import TunerError
from tuner_tui.paths import absolute_if_local
from tuner_tui.recipe import Recipe, RecipeError, read_recipe, save_recipe
from tuner_tui.runs import control
from tuner_tui.runs.events import EventWriter, now_iso
from tuner_tui.runs.layout import RunDir, new_run_id
from tuner_tui.runs.ranks import check_strategy
from tuner_tui.runs.state import (
    TERMINAL_PHASES,
    process_start_time,
    ranks_alive,
    read_raw_state,
    worker_alive,
    write_state,
)


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

    def fit(self, recipe: Recipe, source: object) -> None:
        """Apply the command line's node settings to `recipe` (read from `source`) and refuse
        what cannot run: recipe problems, a node rank outside the nodes, a missing package."""
        self.apply(recipe)
        problems = recipe.problems()
        if problems:
            raise RecipeError(str(source), problems)
        self.check(recipe)
        check_strategy(recipe.training.strategy)

    def check(self, recipe: Recipe) -> None:
        if not 0 <= self.node_rank < recipe.training.nnodes:
            raise TunerError(
                f"--node-rank {self.node_rank} is outside 0..{recipe.training.nnodes - 1} "
                f"(nnodes = {recipe.training.nnodes}): number the nodes 0 to nnodes - 1."
            )


LOCAL = Placement()


def _popen_detached(command: list[str], log_path: Path, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
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


def spawn_worker(run: RunDir) -> subprocess.Popen:
    """Start the run's worker detached: `python -m tuner_tui.runs.worker RUN_DIR` for one process,
    else the supervisor (torchrun) for node 0's ranks. Records its pid in state.json."""
    recipe, problems, _ = read_recipe(run.recipe)
    if problems:
        raise RecipeError(str(run.recipe), problems)
    if recipe.training.world_size > 1:
        check_strategy(recipe.training.strategy)
        command = supervisor_command(recipe, 0, run)
    else:
        command = [sys.executable, "-m", "tuner_tui.runs.worker", str(run.root)]
    proc = _popen_detached(command, run.log, run.root)
    write_state(
        run.state,
        pid=proc.pid,
        pid_started=process_start_time(proc.pid),
        host=socket.gethostname(),
        rank_pids=[],
    )
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
    placement.fit(recipe, recipe_path or resume)
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
    """Validate the recipe, create the run directory with its frozen recipe, start the worker."""
    run = create_run(recipe_path, runs_dir, placement)
    spawn_worker(run)
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
    recipe.data.path = absolute_if_local(recipe.data.path, base)
    recipe.model.name_or_path = absolute_if_local(recipe.model.name_or_path, base)
    if recipe.bias.probes != "builtin":
        recipe.bias.probes = absolute_if_local(recipe.bias.probes, base)
    if recipe.bias.pairs_file:
        recipe.bias.pairs_file = absolute_if_local(recipe.bias.pairs_file, base)
    recipe.environment = {"source_recipe": str(recipe_path.resolve()), "recipe_hash": recipe_hash}
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


def resume_run(run_dir: Path, placement: Placement = LOCAL) -> RunDir:
    """Restart the worker of an interrupted, stopped or failed run; it resumes from the newest
    complete checkpoint. Node 0 of several may meet the others at a new --master-addr/-port."""
    run = RunDir.open(run_dir)
    state = read_raw_state(run.state)
    if state.get("phase") == "completed":
        raise TunerError(f"The run {run.root} already completed; nothing to resume. Start a new run instead.")
    if state.get("phase") not in TERMINAL_PHASES and worker_alive(state):
        raise TunerError(
            f"The run {run.root} is still running (worker pid {state.get('pid')}): attach with "
            f"`tuner attach {run.root}` or stop it with `tuner stop {run.root}`."
        )
    _wait_for_exit(state, run)
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
    write_state(run.state, phase="queued", resumes=int(state.get("resumes", 0)) + 1)
    with EventWriter(run.events) as events:
        events.emit("status", phase="queued", resume=True)
    spawn_worker(run)
    return run
