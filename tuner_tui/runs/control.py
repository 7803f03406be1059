"""Control requests from viewers to the worker: files in `control/`, created atomically."""

from __future__ import annotations

import json
import os
import threading
import time
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


class StopRequests:
    """Whether the worker was asked to stop: by a signal (`signalled`, the event its SIGTERM and
    SIGINT handlers set) or by a `control/stop` file (`tuner stop`, the wizard). Once asked, it
    stays asked; the file is consumed, as the training callback does.

    Cheap enough to call per generated token: the event is checked every call, the folder at most
    every `poll_s` seconds.
    """

    def __init__(self, control_dir: Path, signalled: threading.Event | None = None, poll_s: float = 0.2):
        self.control_dir = Path(control_dir)
        self.signalled = signalled
        self.poll_s = poll_s
        self._asked = False
        self._next_poll = 0.0

    def __call__(self) -> bool:
        if self._asked:
            return True
        if self.signalled is not None and self.signalled.is_set():
            self._asked = True
        elif time.monotonic() >= self._next_poll:
            self._next_poll = time.monotonic() + self.poll_s
            self._asked = consume(self.control_dir, "stop") is not None
        return self._asked
