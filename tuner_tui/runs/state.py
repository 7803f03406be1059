"""`state.json`: the run's current phase, step and worker pid, replaced atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tuner_tui.runs.events import now_iso

PHASES = ("queued", "preparing", "training", "evaluating", "completed", "failed", "stopped")
ACTIVE_PHASES = frozenset({"queued", "preparing", "training", "evaluating"})
TERMINAL_PHASES = frozenset({"completed", "failed", "stopped"})
# Reported by viewers (never written by the worker): an active phase whose worker is gone.
CRASHED = "crashed"


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temp file in the same folder, fsync, then rename over the target."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def process_start_time(pid: int) -> float | None:
    import psutil  # here, not at module scope: the wizard's start-up does not need it

    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def write_state(path: Path, **fields: Any) -> dict[str, Any]:
    """Merge `fields` into state.json (creating it) and stamp `updated`."""
    state = read_raw_state(path)
    state.update(fields)
    state["updated"] = now_iso()
    atomic_write_json(path, state)
    return state


def read_raw_state(path: Path) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}


def _this_host() -> str:
    import socket

    return socket.gethostname()


def _process_alive(pid: Any, recorded_start: Any) -> bool:
    """`pid` runs, is not a zombie, and started when recorded (not a reused pid)."""
    import psutil

    if not isinstance(pid, int):
        return False
    started = process_start_time(pid)
    if started is None:
        return False
    try:
        if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return False
    except psutil.NoSuchProcess:
        return False
    return recorded_start is None or abs(started - float(recorded_start)) < 1.0


def worker_alive(state: dict[str, Any]) -> bool:
    """True when the worker (or supervisor) pid in `state` is running and is the same process.

    A worker on another machine (a run in a shared directory, seen from a login node) cannot be
    checked from here: it counts as alive, and the recorded phase stands."""
    host = state.get("host")
    if host and host != _this_host():
        return True
    return _process_alive(state.get("pid"), state.get("pid_started"))


def ranks_alive(state: dict[str, Any]) -> bool:
    """True while any of the run's rank processes on this machine still runs (ranks outlive a
    killed supervisor for the moments it takes them to stop and save)."""
    here = _this_host()
    return any(
        _process_alive(entry.get("pid"), entry.get("started"))
        for entry in state.get("rank_pids") or []
        if isinstance(entry, dict) and entry.get("host") == here
    )


def read_state(path: Path) -> dict[str, Any]:
    """state.json as a viewer should see it: an active phase with a dead worker is `crashed`."""
    state = read_raw_state(path)
    if state.get("phase") in ACTIVE_PHASES and not (worker_alive(state) or ranks_alive(state)):
        state["recorded_phase"] = state["phase"]
        state["phase"] = CRASHED
    return state
