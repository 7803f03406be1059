"""The last lines of a log file that keeps growing (a run's worker.log), read cheaply.

`worker.log` can reach megabytes (tracebacks, library warnings, progress noise). A viewer only
shows its last few hundred lines, so it reads backwards from the end once, then only the bytes
appended since. The reading functions do blocking file I/O: call them from a thread worker.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from textual.widgets import Log

TAIL_LINES = 200
_BLOCK = 16 * 1024
# Past this many new bytes in one poll, reading them all is wasted work: read the tail instead.
_CATCH_UP_BYTES = 512 * 1024


def _decode(data: bytes) -> list[str]:
    return data.decode("utf-8", errors="replace").splitlines()


def read_tail(path: Path, max_lines: int = TAIL_LINES) -> tuple[list[str], int]:
    """The last `max_lines` complete lines of `path` and the offset just after them.

    Reads blocks backwards from the end, so the cost depends on the lines wanted, not on the
    file's size. A last line without its newline is still being written: it is left for later.
    """
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            data = b""
            pos = size
            while pos > 0 and data.count(b"\n") <= max_lines:
                step = min(_BLOCK, pos)
                pos -= step
                f.seek(pos)
                data = f.read(step) + data
    except FileNotFoundError:
        return [], 0
    end = data.rfind(b"\n")
    if end < 0:
        return [], pos
    complete = data[: end + 1]
    lines = _decode(complete)
    if pos > 0:
        lines = lines[1:]  # the first line was cut by the block boundary
    return lines[-max_lines:], pos + end + 1


@dataclass
class LogFollower:
    """Follows one log file: the tail first, then what was appended; a file that shrank (was
    rotated or truncated) is read from its tail again."""

    path: Path
    max_lines: int = TAIL_LINES
    offset: int | None = None
    _size: int = field(default=-1, repr=False)

    def poll(self) -> tuple[list[str], bool] | None:
        """(new lines, whether they replace everything shown), or None when nothing changed."""
        try:
            size = os.stat(self.path).st_size
        except FileNotFoundError:
            return None
        if size == self._size:
            return None
        self._size = size
        if self.offset is None or size < self.offset or size - self.offset > _CATCH_UP_BYTES:
            lines, self.offset = read_tail(self.path, self.max_lines)
            return lines, True
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read(size - self.offset)
        end = data.rfind(b"\n")
        if end < 0:
            return None  # a partial line: it is read once its newline arrives (the size grows)
        self.offset += end + 1
        return _decode(data[: end + 1])[-self.max_lines :], False


class LogTail(Log):
    """A scrolling view of the last lines of a log; older lines fall off the top."""

    DEFAULT_CSS = """
    LogTail {
        height: 12;
        min-height: 5;
        border: round $foreground 30%;
        background: $surface;
    }
    """

    def __init__(
        self,
        max_lines: int = TAIL_LINES,
        *,
        id: str | None = None,  # noqa: A002
        classes: str | None = None,
    ) -> None:
        super().__init__(max_lines=max_lines, auto_scroll=True, id=id, classes=classes)

    def show_lines(self, lines: list[str], replace: bool = False) -> None:
        """Append `lines`, or show only them when `replace`."""
        if replace:
            self.clear()
        if lines:
            self.write_lines(lines)
