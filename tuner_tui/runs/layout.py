"""The run directory: where a run's recipe, events, state, checkpoints and results live."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tuner_tui.errors import TunerError
from tuner_tui.runs.events import read_events
from tuner_tui.runs.state import RunStatus, read_state


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run directory (see ARCHITECTURE.md, "The run directory")."""

    root: Path

    @property
    def run_id(self) -> str:
        return self.root.name

    @property
    def recipe(self) -> Path:
        return self.root / "recipe.toml"

    @property
    def events(self) -> Path:
        return self.root / "events.jsonl"

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def log(self) -> Path:
        return self.root / "worker.log"

    @property
    def control(self) -> Path:
        return self.root / "control"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def adapter(self) -> Path:
        return self.root / "adapter"

    @property
    def report(self) -> Path:
        return self.root / "report"

    def create(self) -> None:
        self.root.mkdir(parents=True, exist_ok=False)
        for sub in (self.control, self.checkpoints, self.report):
            sub.mkdir()

    @classmethod
    def open(cls, path: Path | str) -> RunDir:
        """An existing run directory, or a TunerError that says what is wrong with the path."""
        root = Path(path).expanduser().resolve()
        if not root.is_dir():
            raise TunerError(
                f"{path} is not a run directory (it does not exist). List runs with `tuner runs`."
            )
        run = cls(root)
        if not run.looks_like_a_run():
            raise TunerError(
                f"{path} is not a run directory: it has no recipe.toml with events.jsonl or "
                "state.json. Pass the folder that `tuner run` printed (under runs/), or list runs "
                "with `tuner runs`."
            )
        return run

    def looks_like_a_run(self) -> bool:
        """The frozen recipe and a record of the run (state.json, or events.jsonl when state.json
        was lost: state is rebuilt from the events)."""
        return self.recipe.is_file() and (self.state.exists() or self.events.exists())


def new_run_id(project_name: str, recipe_hash: str, when: datetime | None = None) -> str:
    when = when or datetime.now()
    slug = re.sub(r"[^a-z0-9]+", "-", project_name.lower()).strip("-")[:32] or "run"
    return f"{when:%Y%m%d-%H%M%S}-{slug}-{recipe_hash[:6]}"


def last_metric(run: RunDir) -> dict[str, Any] | None:
    """The newest `metric` event of a run (reads the tail of events.jsonl only)."""
    try:
        size = run.events.stat().st_size
    except FileNotFoundError:  # no events yet, or the run was removed while being listed
        size = 0
    offset = max(0, size - 256 * 1024)
    events, _ = read_events(run.events, offset)
    for event in reversed(events):
        if event.get("type") == "metric":
            return event
    return None


@dataclass(frozen=True)
class RunSummary:
    """One run as `tuner runs` and the wizard's run pickers list it."""

    run_id: str
    path: str
    phase: str
    step: int
    max_steps: int | None
    loss: float | None
    created: str | None
    updated: str | None
    damaged: str | None = None
    """Why its state was rebuilt (state.json missing or unreadable); None when it was fine."""
    problem: str | None = None
    """Why its files could not be read (phase `unreadable`); None otherwise."""


def list_runs(runs_dir: Path) -> list[RunSummary]:
    """Summaries of the runs under `runs_dir`, newest first.

    Hidden entries are not runs: `.staging-*` is a run being created (renamed into place once
    complete, see launcher.create_run), `.nodes` holds the logs of nodes joining a run. One run
    whose files cannot be read is listed as `unreadable` with the reason, and the others as usual."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    rows = []
    for path in runs_dir.iterdir():
        run = RunDir(path)
        if path.name.startswith(".") or not run.looks_like_a_run():  # hidden, or not a run
            continue
        try:
            rows.append(_summary(run))
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            rows.append(
                RunSummary(run.run_id, str(path), "unreadable", 0, None, None, None, None,
                           problem=f"{type(exc).__name__}: {exc}")
            )  # fmt: skip
    rows.sort(key=lambda r: r.created or "", reverse=True)
    return rows


def _summary(run: RunDir) -> RunSummary:
    status = RunStatus.of(read_state(run.state))
    metric = last_metric(run)
    loss = metric.get("loss") if metric else None
    return RunSummary(
        run_id=run.run_id,
        path=str(run.root),
        phase=status.phase or "unknown",
        step=status.step,
        max_steps=status.max_steps,
        loss=float(loss) if isinstance(loss, (int, float)) else None,
        created=status.created,
        updated=status.updated,
        damaged=status.damaged,
    )


def format_age(iso: str | None, now: float | None = None) -> str:
    """'12s', '5m', '3h', '2d' since an ISO time stamp; '-' when unknown."""
    import time
    from datetime import datetime

    if not iso:
        return "-"
    try:
        stamp = datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except (ValueError, AttributeError):  # a hand-edited state.json
        return "-"
    seconds = (now if now is not None else time.time()) - stamp
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{max(seconds, 0):.0f}s"
