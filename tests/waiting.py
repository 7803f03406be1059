"""Waiting on a condition, never on a fixed sleep: the suite runs on loaded machines too."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tuner_tui.runs.events import iter_events
from tuner_tui.runs.layout import RunDir


def wait_for(predicate: Callable[[], Any], timeout: float = 180.0, what: str = "condition") -> float:
    """Poll `predicate` until it holds; the seconds it took. The timeouts are generous: a run on
    a 2-core machine busy with other tests can take many times its usual time."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - start


def events_of(run: RunDir, kind: str | None = None) -> list[dict[str, Any]]:
    """The run's events so far (of one type)."""
    return [e for e in iter_events(run.events) if kind is None or e.get("type") == kind]
