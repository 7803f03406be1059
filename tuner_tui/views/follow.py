"""Following a run directory: its events a chunk at a time from where the last read stopped, and
its state.json when it changed. The dashboard's follow thread and `tuner attach --plain` both
read a run through a `RunFollower`, so replay and tailing behave the same in both."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from tuner_tui.runs.events import read_events
from tuner_tui.runs.layout import RunDir
from tuner_tui.runs.state import CRASHED, TERMINAL_PHASES, read_state


class RunFollower:
    """Where a reader of one run is: the byte offset in its events.jsonl, and the state it saw.

    Never holds more than one chunk of events (see `read_events`): a run of a million events
    streams through it. Owns nothing of the run; any number of followers read at once."""

    def __init__(self, run: RunDir, offset: int = 0) -> None:
        self.run = run
        self.offset = offset
        self._size_read = -1  # events.jsonl's size when it was last read to its end
        self._state_key: dict[str, Any] | None = None

    def new_events(self, batch: int | None = None) -> Iterator[list[dict[str, Any]]]:
        """The complete events written since the last call, a chunk (or `batch` events) at a
        time; nothing, at the cost of one stat, when the file did not grow. A half-written last
        line is left for a later call."""
        try:
            size = os.stat(self.run.events).st_size
        except FileNotFoundError:
            return
        if size == self._size_read:
            return
        while True:
            events, offset = read_events(self.run.events, self.offset)
            if offset == self.offset:
                break
            self.offset = offset
            if batch is None:
                yield events
            else:
                for start in range(0, len(events), batch):
                    yield events[start : start + batch]
        self._size_read = size if self.offset == size else -1

    def state(self) -> dict[str, Any]:
        """state.json as a viewer sees it (see runs.state.read_state)."""
        return read_state(self.run.state)

    def changed_state(self) -> dict[str, Any] | None:
        """The state when what a viewer shows of it changed since the last call, else None
        (`updated` changes on every write and alone is no change)."""
        state = self.state()
        key = {k: v for k, v in state.items() if k != "updated"}
        if key == self._state_key:
            return None
        self._state_key = key
        return state


def has_ended(state: dict[str, Any]) -> bool:
    """The run (or evaluation) is over: a terminal phase, or `crashed` (its worker is gone)."""
    return state.get("phase") in TERMINAL_PHASES or state.get("phase") == CRASHED
