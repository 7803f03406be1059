"""Messages shared by the App and its screens (kept apart so screens need not import the App)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual.message import Message


@dataclass
class DraftEdited(Message):
    """A screen changed recipe values: key path -> new value (e.g. "training.epochs": 2.0)."""

    changes: dict[str, Any]


@dataclass
class RunPhaseChanged(Message):
    """The phase shown for the followed run changed (bubbles to the App, which enables or
    disables stop and save-now)."""

    run: Path
    phase: str | None


@dataclass
class RunChosen(Message):
    """The user picked an existing run to follow (from Welcome's list of runs)."""

    run: Path


@dataclass
class DataInspected(Message):
    """The Data step inspected `path` (the draft's data.path): `ok` when it loaded without error."""

    path: str
    ok: bool
