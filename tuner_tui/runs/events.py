"""The event stream: `events.jsonl`, append-only, one JSON object a line.

Every event has `seq` (monotonic across the whole run, resumes included), `time` (ISO 8601, UTC)
and `type` (status, metric, eval, telemetry, checkpoint, log, error). The worker is the only
writer; any number of readers replay the file from any byte offset and follow it as it grows.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

EVENT_TYPES = ("status", "metric", "eval", "telemetry", "checkpoint", "log", "error")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _json_safe(value: Any) -> Any:
    """JSON has no NaN/Infinity: a diverged loss is written as the string "nan"/"inf"."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


class EventWriter:
    """Appends events to a run's `events.jsonl`; safe to call from several threads.

    Opening the file repairs a torn last line (a writer killed mid-line) by cutting it, and
    continues `seq` from the last complete event, so a resumed run extends the same stream.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._seq = _repair_and_last_seq(self.path)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())

    def emit(self, type: str, **fields: Any) -> dict[str, Any]:  # noqa: A002
        if type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {type!r}")
        with self._lock:
            self._seq += 1
            event = {"seq": self._seq, "time": now_iso(), "type": type, **_json_safe(fields)}
            self._file.write(json.dumps(event, ensure_ascii=False) + "\n")
            self._file.flush()
        return event

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.flush()
                os.fsync(self._file.fileno())
                self._file.close()

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DiscardedEvents(EventWriter):
    """The events of a rank other than 0: validated like real ones, then dropped (rank 0 alone
    writes events.jsonl, so its `seq` stays one monotonic count)."""

    def __init__(self) -> None:
        self._seq = 0

    def emit(self, type: str, **fields: Any) -> dict[str, Any]:  # noqa: A002
        if type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {type!r}")
        return {"type": type, **fields}

    def close(self) -> None:
        pass


def _repair_and_last_seq(path: Path) -> int:
    if not path.exists():
        return 0
    with open(path, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        # Read backwards until the last newline is found.
        chunk = 65536
        pos = size
        tail = b""
        while pos > 0:
            step = min(chunk, pos)
            pos -= step
            f.seek(pos)
            tail = f.read(step) + tail
            if tail.count(b"\n") >= 2 or pos == 0:
                break
        if not tail.endswith(b"\n"):
            cut = tail.rfind(b"\n")
            keep = pos + cut + 1 if cut >= 0 else 0
            f.truncate(keep)
            tail = tail[: cut + 1] if cut >= 0 else b""
        lines = [line for line in tail.split(b"\n") if line.strip()]
        for line in reversed(lines):
            try:
                return int(json.loads(line)["seq"])
            except (ValueError, KeyError, TypeError):
                continue
    return 0


READ_CHUNK_BYTES = 1 << 20
"""Most bytes one `read_events` call takes in (plus the rest of a line longer than that): a
reader of a long run holds one chunk of it at a time, never the whole file."""


def read_events(
    path: Path, offset: int = 0, max_bytes: int = READ_CHUNK_BYTES
) -> tuple[list[dict[str, Any]], int]:
    """Complete events from byte `offset` on (about `max_bytes` of them), and the offset just after
    the last one read; call again from there for the next ones (`iter_events` does).

    A last line without its newline is being written (or was torn): it is left for the next call.
    A line that is not valid JSON, or is JSON but not an object, is skipped.
    """
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read(max_bytes)
            while data and b"\n" not in data:  # one line longer than a chunk: read to its end
                more = f.read(max_bytes)
                if not more:
                    break
                data += more
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n")
    if end < 0:
        return [], offset
    events = []
    for line in data[: end + 1].split(b"\n"):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events, offset + end + 1


def iter_events(path: Path, offset: int = 0) -> Iterator[dict[str, Any]]:
    """Every complete event from byte `offset` to the current end of the file, a chunk at a time."""
    while True:
        events, next_offset = read_events(path, offset)
        if next_offset == offset:
            return
        yield from events
        offset = next_offset


def follow_events(
    path: Path,
    offset: int = 0,
    *,
    poll_s: float = 0.2,
    should_stop: Callable[[], bool] = lambda: False,
) -> Iterator[list[dict[str, Any]]]:
    """Replay from `offset`, then yield each new batch of events as the file grows.

    Yields an empty list on each idle poll so the caller can refresh or decide to stop.
    """
    while True:
        start = offset
        events, offset = read_events(path, offset)
        yield events
        if should_stop():
            while True:
                events, next_offset = read_events(path, offset)
                if next_offset == offset:
                    return
                offset = next_offset
                if events:
                    yield events
        if offset == start:  # caught up (or a line is half-written): wait for more
            time.sleep(poll_s)
