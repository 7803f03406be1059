"""Experiment trackers (`[training] report_to`): TensorBoard, MLflow and trackio, all local.

Each tracker is the Trainer's own integration callback; what this module adds is where they
write (inside the run directory, never a home-folder default and never a hosted service unless
the user's environment already points there) and a clear error when a package is missing.

| tracker     | package     | writes to                                                        |
|-------------|-------------|------------------------------------------------------------------|
| tensorboard | tensorboard | RUN/tensorboard/ (event files; `tensorboard --logdir RUN`)        |
| mlflow      | mlflow      | MLFLOW_TRACKING_URI when set, else a file store in RUN/mlruns/    |
| trackio     | trackio     | RUN/trackio/ (a local database; `trackio show` with TRACKIO_DIR)  |

Standard library only at import: pre-flight (the wizard, `tuner validate`) asks `tracker_problems`
on every edit.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tuner_tui.errors import TunerError
from tuner_tui.recipe import Problem

TRACKER_PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow", "trackio": "trackio"}
"""Tracker name (a REPORTERS entry) -> the Python module it needs."""
INSTALL_HINT = "pip install 'tuner-tui[trackers]'"


def tracker_dirs(run_root: Path) -> dict[str, Path]:
    """Where each tracker writes inside a run directory."""
    return {
        "tensorboard": run_root / "tensorboard",
        "mlflow": run_root / "mlruns",
        "trackio": run_root / "trackio",
    }


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_trackers(report_to: list[str]) -> list[str]:
    """The trackers of `report_to` whose package is not installed."""
    return [name for name in report_to if name in TRACKER_PACKAGES and not _installed(TRACKER_PACKAGES[name])]


def _missing_message(names: list[str]) -> str:
    packages = ", ".join(TRACKER_PACKAGES[n] for n in names)
    return (
        f"[training] report_to names {', '.join(names)}, but the package{'s' if len(names) > 1 else ''} "
        f"{packages} {'are' if len(names) > 1 else 'is'} not installed. Install the trackers with "
        f"{INSTALL_HINT} (or pip install {' '.join(TRACKER_PACKAGES[n] for n in names)}), or remove "
        f"{'them' if len(names) > 1 else 'it'} from report_to."
    )


def tracker_problems(report_to: list[str]) -> list[Problem]:
    """Pre-flight problems: one for each tracker whose package is missing, at its key path."""
    return [
        Problem(f"training.report_to[{report_to.index(name)}]", _missing_message([name]))
        for name in missing_trackers(report_to)
    ]


def check_trackers(report_to: list[str]) -> None:
    """Raise before training starts when a tracker's package is missing.

    Raises:
        TunerError: naming the trackers and the install command.
    """
    missing = missing_trackers(report_to)
    if missing:
        raise TunerError(_missing_message(missing))


def tracker_arguments(report_to: list[str], project: str, run_id: str, primary: bool) -> dict[str, object]:
    """TrainingArguments for the trackers. Only the primary rank (global rank 0) reports: the
    other ranks get "none", so no second writer touches the run directory (the Trainer's
    callbacks also check `is_world_process_zero`; this keeps them from being built at all)."""
    names = list(report_to) if primary else []
    values: dict[str, object] = {"report_to": names or "none", "run_name": run_id}
    if "trackio" in names:
        # Local only: no Gradio Space, and no static Space synced after training or on push.
        values |= {"project": project, "trackio_space_id": None, "trackio_static_space_id": False}
    return values


@contextmanager
def tracker_environment(
    report_to: list[str], run_root: Path, primary: bool = True
) -> Iterator[dict[str, str]]:
    """Point the trackers of `report_to` into the run directory while training; yields the
    variables set, and restores the environment on exit.

    TensorBoard's callback reads TENSORBOARD_LOGGING_DIR, MLflow's MLFLOW_TRACKING_URI (a value the
    user set is kept: their server is where they want runs to go) and trackio TRACKIO_DIR.
    """
    if not primary or not report_to:
        yield {}
        return
    dirs = tracker_dirs(Path(run_root))
    wanted: dict[str, str] = {}
    if "tensorboard" in report_to:
        wanted["TENSORBOARD_LOGGING_DIR"] = str(dirs["tensorboard"])
    if "mlflow" in report_to and not os.environ.get("MLFLOW_TRACKING_URI"):
        wanted["MLFLOW_TRACKING_URI"] = dirs["mlflow"].as_uri()
    if "trackio" in report_to:
        wanted["TRACKIO_DIR"] = str(dirs["trackio"])
    before = {key: os.environ.get(key) for key in wanted}
    os.environ.update(wanted)
    try:
        yield wanted
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
