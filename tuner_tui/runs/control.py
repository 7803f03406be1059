"""Control requests from viewers to the worker: files in `control/`, created atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tuner_tui.runs.events import now_iso
from tuner_tui.runs.state import atomic_write_json

REQUESTS = ("stop", "save-now")


def request(control_dir: Path, name: str, by: str = "") -> Path:
    """Ask the worker to `stop` or `save-now`; returns the request file."""
    if name not in REQUESTS:
        raise ValueError(f"unknown control request {name!r}")
    path = Path(control_dir) / name
    atomic_write_json(path, {"requested": now_iso(), "by": by or f"pid {os.getpid()}"})
    return path


def pending(control_dir: Path, name: str) -> bool:
    return (Path(control_dir) / name).exists()


def consume(control_dir: Path, name: str) -> dict | None:
    """Take a request (remove its file); None when there was none."""
    path = Path(control_dir) / name
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except ValueError:
        data = {}
    path.unlink(missing_ok=True)
    return data
