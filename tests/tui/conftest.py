"""Fixtures for the wizard's tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from textual import events
from textual.pilot import Pilot

KEY_NAMES = {" ": "space", "-": "minus", ".": "full_stop", "_": "underscore", "/": "slash"}


async def burst(pilot: Pilot, text: str) -> None:
    """Keys as a terminal delivers them at 50+ characters/s: each arrives while the app is still
    answering the ones before, so the drafts of earlier keys come back between later keys. One key
    per event-loop turn does that (Pilot's `press` waits after each key, and queueing every key at
    once has them all handled before the first draft returns: neither shows the race)."""
    for char in text:
        pilot.app.post_message(events.Key(KEY_NAMES.get(char, char), char))
        # Two turns of the event loop per key: the key reaches its field, and the draft of an earlier
        # key comes back (checked: with the echo guard off, the burst tests then fail).
        await asyncio.sleep(0)
        await asyncio.sleep(0)
    for _ in range(5):
        await pilot.pause()


async def until(pilot: Pilot, predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Until `predicate()` holds. Not `pilot.pause()`: it returns once the process looks idle, and
    a process starved of CPU by other work looks idle while its messages still wait."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.02)


async def workers_done(pilot: Pilot, skip_groups: tuple[str, ...] = ()) -> None:
    """Until every worker of the app (but those of `skip_groups`, which run as long as a run is
    shown) has ended: succeeded, failed or cancelled. A failed worker is no error here: its
    step shows the failure (StepScreen.worker_failed), and that is what a test checks."""
    from textual.worker import WorkerCancelled, WorkerFailed

    for worker in [w for w in pilot.app.workers if w.group not in skip_groups]:
        try:
            await worker.wait()
        except (WorkerFailed, WorkerCancelled):
            pass


@pytest.fixture(autouse=True)
def _placeholder_hub_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """Recipes here name hub models ('org/model') that no test downloads: count them as in the
    local cache, so a step's status shows what the test is about. tests/test_preflight.py checks
    the real lookup."""
    monkeypatch.setattr("tuner_tui.preflight._hub_cached", lambda repo_id, revision: True)


@pytest.fixture
def snap_compare(snap_compare: Callable[..., bool]) -> Callable[..., bool]:
    """pytest-textual-snapshot's `snap_compare`, with notifications cleared before the picture: a
    toast ("Opened built-in demo.") fades on a timer, so whether it is on screen depends on how
    busy the machine is, not on the screen under test."""

    def compare(app, *args, run_before=None, **kwargs) -> bool:  # type: ignore[no-untyped-def]
        async def before(pilot: Pilot) -> None:
            if run_before is not None:
                await run_before(pilot)
            pilot.app.clear_notifications()
            await pilot.pause()

        return snap_compare(app, *args, run_before=before, **kwargs)

    return compare
