"""Start and resume runs: freeze the recipe into a new run directory and spawn the worker.

The worker runs in its own session (`start_new_session=True`), reads /dev/null and writes to
`worker.log`, so neither a closed terminal, a dropped SSH connection nor a viewer that stops
reading can stall or kill it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from tuner_tui.errors import TunerError
from tuner_tui.paths import absolute_if_local
from tuner_tui.recipe import RecipeError, read_recipe, save_recipe
from tuner_tui.runs.events import EventWriter, now_iso
from tuner_tui.runs.layout import RunDir, new_run_id
from tuner_tui.runs.state import (
    TERMINAL_PHASES,
    process_start_time,
    read_raw_state,
    worker_alive,
    write_state,
)


def spawn_worker(run: RunDir) -> subprocess.Popen:
    """Start `python -m tuner_tui.runs.worker RUN_DIR` detached; record its pid in state.json."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
    with open(run.log, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tuner_tui.runs.worker", str(run.root)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            cwd=run.root,
            env=env,
        )
    write_state(run.state, pid=proc.pid, pid_started=process_start_time(proc.pid))
    # Reap the child when it ends, so a long-lived launcher (the TUI) keeps no zombie.
    threading.Thread(target=proc.wait, name=f"reap-{proc.pid}", daemon=True).start()
    return proc


def start_run(recipe_path: Path, runs_dir: Path) -> RunDir:
    """Validate the recipe, create the run directory with its frozen recipe, start the worker."""
    run = create_run(recipe_path, runs_dir)
    spawn_worker(run)
    return run


def create_run(recipe_path: Path, runs_dir: Path) -> RunDir:
    """A new run directory in the `queued` phase, its recipe frozen with absolute local paths."""
    recipe_path = Path(recipe_path)
    recipe, problems, document = read_recipe(recipe_path)
    if problems:
        raise RecipeError(str(recipe_path), problems)
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


def resume_run(run_dir: Path) -> RunDir:
    """Restart the worker of an interrupted, stopped or failed run; it resumes from the newest
    complete checkpoint."""
    run = RunDir.open(run_dir)
    state = read_raw_state(run.state)
    if state.get("phase") == "completed":
        raise TunerError(f"The run {run.root} already completed; nothing to resume. Start a new run instead.")
    if state.get("phase") not in TERMINAL_PHASES and worker_alive(state):
        raise TunerError(
            f"The run {run.root} is still running (worker pid {state.get('pid')}): attach with "
            f"`tuner attach {run.root}` or stop it with `tuner stop {run.root}`."
        )
    write_state(run.state, phase="queued", resumes=int(state.get("resumes", 0)) + 1)
    with EventWriter(run.events) as events:
        events.emit("status", phase="queued", resume=True)
    spawn_worker(run)
    return run
