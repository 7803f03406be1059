"""`tuner sweep`: run a recipe over a grid or an Optuna search of hyperparameters.

A sweep is a folder (under `<runs-dir>/sweeps/`):

    sweep.json      the plan and the record: search space, metric, direction, `trials` (key values,
                    run dir, phase, metric) and `best`; replaced atomically after every change
    base.toml       the recipe swept, its local paths made absolute
    trials/         one recipe per trial (base.toml with the trial's values)
    runs/           one ordinary run directory per trial (every run guarantee holds)
    study.db        the Optuna study (SQLite): grid (GridSampler), random or TPE, median pruner
    best-recipe.toml  the best trial's recipe, once there is one
    sweep.log       the driver's output

The driver (`python -m tuner_tui.iterate.sweep SWEEP_DIR`) runs detached, in its own session,
holding `sweep.lock`; it starts trials with the launcher (`create_run` + `spawn_worker`), one
after another (or `parallel` at once, one GPU each through CUDA_VISIBLE_DEVICES), watches their
state.json, feeds validation `eval` events to Optuna's median pruner (a pruned trial is asked to
stop like `tuner stop`), and reads each finished run's report for the trial's metric. Killed at any
moment, it resumes with `tuner sweep --resume SWEEP_DIR`: finished trials stay as recorded, a
trial whose worker still runs is watched again, one whose worker died is resumed from its last
checkpoint (`resume_run`), and only the remaining trials are started.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from tuner_tui.errors import TunerError

SWEEP_FILE = "sweep.json"
LOCK_FILE = "sweep.lock"
SEARCHES = ("grid", "random", "tpe")
DONE = frozenset({"completed", "failed", "stopped", "pruned"})
"""Trial phases that are final."""
MAX_RESUMES = 2
"""A trial whose worker died is resumed at most this often, then counted failed."""
POLL_S = 0.3


# -- the search space -----------------------------------------------------------------------------


def _split_values(text: str) -> list[str]:
    """'1e-4,2e-4' -> ['1e-4', '2e-4']; commas inside [...] or quotes do not split."""
    parts, depth, quote, current = [], 0, "", ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        current += char
    parts.append(current)
    return [p.strip() for p in parts]


def _parse_value(text: str) -> Any:
    """A TOML value ('1e-4', 'true', '[\"q\", \"v\"]', '\"cosine\"'), else the text as a string."""
    import tomlkit
    import tomlkit.exceptions

    try:
        value = tomlkit.parse(f"v = {text}")["v"]
    except tomlkit.exceptions.TOMLKitError:
        return text
    return value.unwrap() if hasattr(value, "unwrap") else value


def parse_space(sets: list[str], recipe: Any) -> dict[str, dict[str, Any]]:
    """`--set KEY=V1,V2` (choices) or `--set KEY=LOW..HIGH[:log]` (a range, random/tpe only), each
    value checked against the recipe schema.

    Raises:
        TunerError: bad syntax, an unknown key, or a value the recipe refuses.
    """
    from tuner_tui.recipe import with_changes

    if not sets:
        raise TunerError(
            "Give at least one --set KEY=V1,V2 to sweep, e.g. --set training.learning_rate=1e-4,3e-4."
        )
    space: dict[str, dict[str, Any]] = {}
    for item in sets:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or "." not in key or not text.strip():
            raise TunerError(
                f"--set '{item}' is not KEY=VALUES: write the recipe key with its section, '=', then "
                "the values separated by commas, e.g. --set training.learning_rate=1e-4,3e-4 (or a "
                "range for random/tpe: --set training.learning_rate=1e-5..1e-3:log)."
            )
        if key in space:
            raise TunerError(f"--set {key} is given twice: give each key once, with all its values.")
        log = text.endswith(":log")
        body = text[: -len(":log")] if log else text
        if ".." in body and "," not in body:
            low_text, _, high_text = body.partition("..")
            low, high = _parse_value(low_text.strip()), _parse_value(high_text.strip())
            if (
                not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high))
                or low >= high
            ):
                raise TunerError(
                    f"--set {item}: a range is LOW..HIGH with numbers, LOW below HIGH (e.g. 1e-5..1e-3:log)."
                )
            if log and low <= 0:
                raise TunerError(f"--set {item}: a log range needs LOW above 0.")
            entry: dict[str, Any] = {"low": low, "high": high, "log": log,
                                     "int": isinstance(low, int) and isinstance(high, int)}  # fmt: skip
            candidates = [low, high]
        else:
            candidates = [_parse_value(v) for v in _split_values(text)]
            if any(v == "" for v in candidates):
                raise TunerError(f"--set {item}: a value is empty (two commas in a row, or one at the end).")
            entry = {"values": candidates}
        for value in candidates:
            _, problems = with_changes(recipe, {key: value})
            mine = [p for p in problems if p.path == key or p.path.startswith(key + "[") or
                    p.path == key.rsplit(".", 1)[0]]  # fmt: skip
            unknown = [p for p in problems if "is not a known key" in p.message and key.startswith(p.path)]
            for problem in unknown or mine:
                raise TunerError(f"--set {key}={value!r}: {problem.path}: {problem.message}")
        space[key] = entry
    return space


def grid_size(space: dict[str, dict[str, Any]]) -> int:
    return math.prod(len(e["values"]) for e in space.values())


# -- the sweep file -------------------------------------------------------------------------------


def read_sweep(folder: Path) -> dict[str, Any]:
    path = Path(folder) / SWEEP_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TunerError(
            f"{folder} is not a sweep folder (it has no {SWEEP_FILE}). Pass the folder `tuner sweep` printed "
            "(under RUNS_DIR/sweeps/)."
        ) from None
    except ValueError as exc:
        raise TunerError(f"{path} is not valid JSON ({exc}).") from None
    if not isinstance(data, dict) or not isinstance(data.get("trials"), list):
        raise TunerError(f"{path} is not a sweep record (no 'trials' list).")
    return data


def write_sweep(folder: Path, sweep: dict[str, Any]) -> None:
    from tuner_tui.runs.state import atomic_write_json

    sweep["updated"] = datetime.now().isoformat(timespec="seconds")
    atomic_write_json(Path(folder) / SWEEP_FILE, sweep)


def ranked_trials(sweep: dict[str, Any]) -> list[dict[str, Any]]:
    """Trials with a metric, best first; then the others in trial order."""
    lower = sweep.get("direction") == "minimize"
    scored = [t for t in sweep["trials"] if isinstance(t.get("metric"), (int, float))]
    scored.sort(key=lambda t: t["metric"] if lower else -t["metric"])
    return scored + [t for t in sweep["trials"] if t not in scored]


def best_trial(sweep: dict[str, Any]) -> dict[str, Any] | None:
    completed = [
        t for t in ranked_trials(sweep) if t.get("phase") == "completed" and t.get("metric") is not None
    ]
    return completed[0] if completed else None


def metric_key(metric: str) -> str:
    from tuner_tui.evaluation.metrics import METRICS

    return METRICS[metric].key if metric in METRICS else metric


def default_metric(recipe: Any) -> str:
    from tuner_tui.iterate.compare import DEFAULT_PRIMARY

    if recipe.objectives:
        return str(recipe.objectives[0].metric)
    return DEFAULT_PRIMARY[recipe.model.task]


# -- creating a sweep -----------------------------------------------------------------------------


def create_sweep(
    recipe_path: Path,
    sets: list[str],
    runs_dir: Path,
    search: str = "grid",
    trials: int | None = None,
    metric: str | None = None,
    parallel: int = 1,
    seed: int | None = None,
) -> Path:
    """Check everything, then write the sweep folder (base recipe, sweep.json); returns it."""
    from tuner_tui.preflight import check_runnable
    from tuner_tui.recipe import (
        LOWER_IS_BETTER,
        METRIC_TASKS,
        RecipeError,
        make_paths_absolute,
        read_recipe,
        save_recipe,
    )

    recipe_path = Path(recipe_path)
    recipe, problems, document = read_recipe(recipe_path)
    if problems:
        raise RecipeError(str(recipe_path), problems)
    if search not in SEARCHES:
        raise TunerError(f"--search '{search}' is not one of {', '.join(SEARCHES)}.")
    space = parse_space(sets, recipe)
    ranges = [k for k, e in space.items() if "values" not in e]
    if search == "grid" and ranges:
        raise TunerError(
            f"--search grid needs lists of values, but {', '.join(ranges)} is a range: give values "
            "(KEY=V1,V2) or use --search random or --search tpe."
        )
    if search == "grid":
        size = grid_size(space)
        if trials is not None and trials > size:
            raise TunerError(f"--trials {trials} is more than the {size} grid points: leave --trials out.")
        planned = trials or size
    else:
        planned = trials or 8
    if planned < 1:
        raise TunerError("--trials must be at least 1.")
    metric = metric or default_metric(recipe)
    if METRIC_TASKS.get(metric) != recipe.model.task:
        fitting = ", ".join(m for m, t in METRIC_TASKS.items() if t == recipe.model.task)
        raise TunerError(
            f"--metric '{metric}' is not a metric of {recipe.model.task} runs; choose one of {fitting}."
        )
    if parallel < 1:
        raise TunerError("--parallel must be at least 1.")
    if parallel > 1:
        check_gpus(parallel)
    base_dir = recipe_path.resolve().parent
    check_runnable(recipe, base_dir, recipe_path)
    make_paths_absolute(recipe, base_dir)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    slug = "".join(c if c.isalnum() else "-" for c in recipe.project.name.lower()).strip("-")[:24] or "sweep"
    root = Path(runs_dir).resolve() / "sweeps"
    folder = root / f"{stamp}-{slug}"
    for attempt in range(2, 100):
        if not folder.exists():
            break
        folder = root / f"{stamp}-{slug}-{attempt}"
    (folder / "trials").mkdir(parents=True)
    (folder / "runs").mkdir()
    save_recipe(recipe, folder / "base.toml", document)
    sweep = {
        "schema_version": 1,
        "id": folder.name,
        "source_recipe": str(recipe_path.resolve()),
        "search": search,
        "space": space,
        "trials_planned": planned,
        "metric": metric,
        "direction": "minimize" if metric in LOWER_IS_BETTER else "maximize",
        "seed": recipe.project.seed if seed is None else seed,
        "parallel": parallel,
        "phase": "queued",
        "created": datetime.now().isoformat(timespec="seconds"),
        "trials": [],
        "best": None,
    }
    write_sweep(folder, sweep)
    return folder


def check_gpus(parallel: int) -> None:
    """--parallel K runs K trials at once, one GPU each: this machine must have K GPUs."""
    count = 0
    try:
        import pynvml

        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
        pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - no NVIDIA driver: no GPUs to pin trials to
        count = 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        count = min(count, len([v for v in visible.split(",") if v.strip()]))
    if count < parallel:
        raise TunerError(
            f"--parallel {parallel} runs one trial per GPU, but this machine shows {count} GPU(s): use "
            f"--parallel {max(count, 1)} (trials then run one after another)."
        )


def gpu_ids(parallel: int) -> list[str]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = (
        [v.strip() for v in visible.split(",") if v.strip()] if visible else [str(i) for i in range(parallel)]
    )
    return ids[:parallel]


# -- starting, resuming, following ----------------------------------------------------------------


def sweep_running(folder: Path) -> int | None:
    """The driver's pid while one holds the sweep's lock, else None."""
    path = Path(folder) / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = read_sweep(folder).get("pid")
        return int(pid) if isinstance(pid, int) else -1
    finally:
        os.close(fd)
    return None


def start_driver(folder: Path) -> subprocess.Popen:
    """Start the sweep's driver detached (own session, output to sweep.log)."""
    folder = Path(folder).resolve()
    pid = sweep_running(folder)
    if pid is not None:
        raise TunerError(
            f"The sweep {folder} is already running (driver pid {pid}): follow it with "
            f"`tuner sweep --show {folder}`."
        )
    sweep = read_sweep(folder)
    if sweep.get("phase") == "completed":
        raise TunerError(f"The sweep {folder} already completed; see it with `tuner sweep --show {folder}`.")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(folder / "sweep.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tuner_tui.iterate.sweep", str(folder)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            cwd=folder,
            env=env,
        )
    threading.Thread(target=proc.wait, name=f"reap-{proc.pid}", daemon=True).start()
    return proc


# -- the driver -----------------------------------------------------------------------------------


class Driver:
    """Runs the trials of one sweep folder to the end (see the module docstring)."""

    def __init__(self, folder: Path, stop: threading.Event | None = None) -> None:
        self.folder = Path(folder).resolve()
        self.stop = stop or threading.Event()
        self.sweep = read_sweep(self.folder)
        self.study: Any = None
        self._offsets: dict[int, int] = {}

    # -- optuna
    def _open_study(self) -> Any:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        s = self.sweep
        space = s["space"]
        seed = int(s.get("seed", 0))
        if s["search"] in ("grid", "random"):
            # Grid: every point is enqueued once, in order, when the study is made (below);
            # Optuna's GridSampler would stop the study from inside `tell`, which only works
            # within `optimize`.
            sampler: Any = optuna.samplers.RandomSampler(seed=seed)
        else:
            sampler = optuna.samplers.RandomSampler(seed=seed)
            sampler = optuna.samplers.TPESampler(
                seed=seed, n_startup_trials=min(4, max(1, s["trials_planned"] // 2))
            )
        fresh = not (self.folder / "study.db").exists()
        study = optuna.create_study(
            study_name="sweep",
            storage=f"sqlite:///{self.folder / 'study.db'}",
            load_if_exists=True,
            direction=s["direction"],
            sampler=sampler,
            pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
        )
        if fresh and s["search"] == "grid":
            keys = list(space)
            points = itertools.product(*(range(len(space[k]["values"])) for k in keys))
            for point in itertools.islice(points, int(s["trials_planned"])):
                study.enqueue_trial(dict(zip(keys, point, strict=True)))
        return study

    def _distributions(self) -> dict[str, Any]:
        import optuna

        out: dict[str, Any] = {}
        for key, e in self.sweep["space"].items():
            if "values" in e:
                out[key] = optuna.distributions.CategoricalDistribution(list(range(len(e["values"]))))
            elif e.get("int"):
                out[key] = optuna.distributions.IntDistribution(int(e["low"]), int(e["high"]), log=e["log"])
            else:
                out[key] = optuna.distributions.FloatDistribution(
                    float(e["low"]), float(e["high"]), log=e["log"]
                )
        return out

    def _trial(self, number: int) -> Any:
        import optuna

        for frozen in self.study.get_trials(deepcopy=False):
            if frozen.number == number:
                return optuna.trial.Trial(self.study, frozen._trial_id)
        raise TunerError(
            f"{self.folder / 'study.db'} has no trial {number}: the study and sweep.json disagree."
        )

    def _values(self, params: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for key, e in self.sweep["space"].items():
            out[key] = e["values"][params[key]] if "values" in e else params[key]
        return out

    # -- the loop
    def save(self) -> None:
        best = best_trial(self.sweep)
        self.sweep["best"] = (
            {
                "trial": best["number"],
                "run_dir": best["run_dir"],
                "values": best["values"],
                "metric": best["metric"],
            }
            if best
            else None
        )
        write_sweep(self.folder, self.sweep)

    def run(self) -> int:
        self.sweep.update(phase="running", pid=os.getpid())
        self.save()
        failed = False
        try:
            self.study = self._open_study()
            while True:
                active = [t for t in self.sweep["trials"] if t.get("phase") not in DONE]
                for trial in active:
                    self._watch(trial)
                active = [t for t in self.sweep["trials"] if t.get("phase") not in DONE]
                if self.stop.is_set():
                    self._stop_all(active)
                    self.sweep["phase"] = "stopped"
                    break
                while len(active) < int(self.sweep.get("parallel", 1)) and len(self.sweep["trials"]) < int(
                    self.sweep["trials_planned"]
                ):
                    active.append(self._start_trial(self._free_gpu(active)))
                if not active:
                    break
                self.save()
                self.stop.wait(POLL_S)
        except BaseException:
            failed = True
            self.sweep["phase"] = "failed"
            raise
        finally:
            if not failed and self.sweep["phase"] == "running":
                self.sweep["phase"] = "completed"
            self.sweep.pop("pid", None)
            self.save()
            self._export_best()
        return 0

    def _free_gpu(self, active: list[dict[str, Any]]) -> str | None:
        parallel = int(self.sweep.get("parallel", 1))
        if parallel <= 1:
            return None
        used = {t.get("gpu") for t in active}
        return next(g for g in gpu_ids(parallel) if g not in used)

    def _env(self, trial: dict[str, Any]) -> dict[str, str] | None:
        return {"CUDA_VISIBLE_DEVICES": trial["gpu"]} if trial.get("gpu") is not None else None

    def _start_trial(self, gpu: str | None) -> dict[str, Any]:
        from tuner_tui.recipe import read_recipe, save_recipe, with_changes
        from tuner_tui.runs.launcher import create_run, spawn_worker

        asked = self.study.ask(self._distributions())
        values = self._values(asked.params)
        number = len(self.sweep["trials"])
        trial: dict[str, Any] = {"number": number, "optuna_trial": asked.number, "values": values,
                                 "phase": "creating", "run_dir": None, "run_id": None, "metric": None,
                                 "gpu": gpu}  # fmt: skip
        self.sweep["trials"].append(trial)
        self.save()
        base, _, document = read_recipe(self.folder / "base.toml")
        recipe, problems = with_changes(base, values)
        path = self.folder / "trials" / f"trial-{number:03d}.toml"
        if problems:
            trial.update(phase="failed", error="; ".join(str(p) for p in problems))
            self.study.tell(asked.number, state=_state("FAIL"))
            return trial
        save_recipe(recipe, path, document)
        trial["recipe"] = str(path)
        run = create_run(path, self.folder / "runs")
        trial.update(run_dir=str(run.root), run_id=run.run_id, phase="queued")
        self.save()
        spawn_worker(run, extra_env=self._env(trial))
        return trial

    def _watch(self, trial: dict[str, Any]) -> None:
        from tuner_tui.runs.layout import RunDir
        from tuner_tui.runs.state import CRASHED, read_state

        if trial.get("run_dir") is None:  # killed between asking Optuna and creating the run
            self._recreate(trial)
            return
        run = RunDir(Path(trial["run_dir"]))
        state = read_state(run.state)
        phase = state.get("phase")
        if phase == CRASHED:
            self._resume(trial, run)
            return
        if phase in ("completed", "failed", "stopped"):
            self._finish(trial, run, str(phase))
            return
        trial["phase"] = phase or "queued"
        trial["step"] = state.get("step")
        trial["max_steps"] = state.get("max_steps")
        if phase == "training":  # evaluating: the training is done, a stop would only lose the report
            self._prune_check(trial, run)

    def _recreate(self, trial: dict[str, Any]) -> None:
        """Start the run of a trial whose Optuna trial exists but whose run was never created."""
        from tuner_tui.recipe import read_recipe, save_recipe, with_changes
        from tuner_tui.runs.launcher import create_run, spawn_worker

        base, _, document = read_recipe(self.folder / "base.toml")
        recipe, _ = with_changes(base, trial["values"])
        path = self.folder / "trials" / f"trial-{trial['number']:03d}.toml"
        save_recipe(recipe, path, document)
        run = create_run(path, self.folder / "runs")
        trial.update(recipe=str(path), run_dir=str(run.root), run_id=run.run_id, phase="queued")
        self.save()
        spawn_worker(run, extra_env=self._env(trial))

    def _resume(self, trial: dict[str, Any], run: Any) -> None:
        from tuner_tui.runs.launcher import resume_run

        resumes = int(trial.get("resumes", 0))
        if resumes >= MAX_RESUMES:
            trial["error"] = f"its worker died {resumes + 1} times; see {run.log}"
            self._finish(trial, run, "failed")
            return
        trial["resumes"] = resumes + 1
        try:
            resume_run(run.root, extra_env=self._env(trial))
        except TunerError as exc:
            trial["error"] = str(exc)
            self._finish(trial, run, "failed")

    def _prune_check(self, trial: dict[str, Any], run: Any) -> None:
        """Report validation evals to Optuna; ask a hopeless trial to stop."""
        from tuner_tui.runs import control
        from tuner_tui.runs.events import read_events

        if trial.get("pruning"):
            return
        key = self._intermediate_key()
        if key is None:
            return
        offset = self._offsets.get(trial["number"], 0)
        while True:
            events, offset = read_events(run.events, offset)
            if not events:
                break
            for event in events:
                value = event.get(key)
                if (
                    event.get("type") == "eval"
                    and event.get("split") == "validation"
                    and isinstance(value, (int, float))
                ):
                    step = int(event.get("step") or 0)
                    if isinstance(trial.get("max_steps"), int) and step >= trial["max_steps"]:
                        continue  # the last evaluation: nothing left to save by stopping
                    optuna_trial = self._trial(trial["optuna_trial"])
                    optuna_trial.report(float(value), step)
                    trial.setdefault("intermediate", {})[str(step)] = float(value)
                    if optuna_trial.should_prune():
                        trial["pruning"] = step
                        control.request(run.control, "stop", by=f"tuner sweep (pruned at step {step})")
                        return
        self._offsets[trial["number"]] = offset

    def _intermediate_key(self) -> str | None:
        """The validation figure the pruner compares: the metric itself when the training loop logs
        it (accuracy for classifiers), else the validation loss when lower is better."""
        metric = self.sweep["metric"]
        if metric == "accuracy":
            return "accuracy"
        if metric in ("loss", "perplexity"):
            return "loss"
        return None

    def _finish(self, trial: dict[str, Any], run: Any, phase: str) -> None:
        value = None
        if phase == "completed":
            try:
                report = json.loads((run.report / "report.json").read_text(encoding="utf-8"))
                value = report.get("metrics", {}).get("tuned", {}).get(metric_key(self.sweep["metric"]))
            except (OSError, ValueError):
                value = None
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                trial["error"] = f"its report has no {self.sweep['metric']}"
                phase, value = "failed", None
        if phase == "stopped" and trial.get("pruning") is not None:
            phase = "pruned"
        trial.update(phase=phase, metric=value)
        number = trial["optuna_trial"]
        if phase == "completed":
            self.study.tell(number, float(value))  # type: ignore[arg-type]
        elif phase == "pruned":
            self.study.tell(number, state=_state("PRUNED"))
        else:
            self.study.tell(number, state=_state("FAIL"))

    def _stop_all(self, active: list[dict[str, Any]]) -> None:
        from tuner_tui.runs import control
        from tuner_tui.runs.layout import RunDir

        for trial in active:
            if trial.get("run_dir"):
                control.request(RunDir(Path(trial["run_dir"])).control, "stop", by="tuner sweep (stopped)")

    def _export_best(self) -> None:
        best = best_trial(self.sweep)
        if best and best.get("recipe"):
            import shutil

            shutil.copyfile(best["recipe"], self.folder / "best-recipe.toml")


def _state(name: str) -> Any:
    import optuna

    return getattr(optuna.trial.TrialState, name)


def export_best(folder: Path, out: Path) -> Path:
    """Copy the best trial's recipe to `out`."""
    import shutil

    sweep = read_sweep(folder)
    best = best_trial(sweep)
    if best is None or not best.get("recipe"):
        raise TunerError(f"The sweep {folder} has no completed trial yet: nothing to export.")
    shutil.copyfile(best["recipe"], out)
    return Path(out)


def follow_sweep(
    folder: Path,
    say: Callable[[dict[str, Any]], object],
    driver: subprocess.Popen | None = None,
    poll_s: float = 1.0,
) -> dict[str, Any]:
    """Call `say(sweep)` whenever sweep.json changes, until the driver ends.

    Raises:
        TunerError: the driver exited without finishing the sweep (its traceback is in sweep.log).
    """
    last = None
    while True:
        sweep = read_sweep(folder)
        if driver is not None and driver.poll() is not None and sweep.get("phase") in ("queued", "running"):
            raise TunerError(
                f"The sweep's driver (pid {driver.pid}) exited with code {driver.returncode} before the "
                f"sweep finished; see {Path(folder) / 'sweep.log'}, then `tuner sweep --resume {folder}`."
            )
        marker = json.dumps(sweep["trials"], sort_keys=True) + str(sweep.get("phase"))
        if marker != last:
            say(sweep)
            last = marker
        if sweep.get("phase") in ("completed", "failed", "stopped"):
            return sweep
        time.sleep(poll_s)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m tuner_tui.iterate.sweep SWEEP_DIR", file=sys.stderr)
        return 2
    folder = Path(args[0]).resolve()
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"sweep: {folder} is already being run by another driver", file=sys.stderr)
        return 2
    stop = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        print(f"received {signal.Signals(signum).name}: stopping the sweep's trials", flush=True)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    print(f"sweep driver pid {os.getpid()} on {folder}", flush=True)
    try:
        return Driver(folder, stop).run()
    except TunerError as exc:
        print(f"sweep: {exc}", file=sys.stderr, flush=True)
        return 2
    finally:
        os.close(fd)


if __name__ == "__main__":
    sys.exit(main())
