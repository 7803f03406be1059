"""The last lines of a log file that keeps growing (a run's worker.log), read cheaply.

`worker.log` can reach megabytes (tracebacks, library warnings, progress noise). A viewer only
shows its last few hundred lines, so it reads backwards from the end once, then only the bytes
appended since. The reading functions do blocking file I/O: call them from a thread worker.

Libraries write for a terminal: colours and bold (`ESC[1m...ESC[0m`), progress bars redrawn with
a carriage return. The lines read are made ready to show: escape sequences removed, a redrawn
line shown as its last state, any other control character replaced by U+FFFD. A raw ESC must never
reach the screen: it is drawn as "[1m" noise, and it makes an SVG screenshot invalid XML.
"""

from __future__ import annotations

import os
import re
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from textual.widgets import Log

TAIL_LINES = 200
_BLOCK = 16 * 1024
# Past this many new bytes in one poll, reading them all is wasted work: read the tail instead.
_CATCH_UP_BYTES = 512 * 1024


_ESCAPES = re.compile(
    r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC: window titles, hyperlinks (ends with BEL or ST)
    r"|\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours and styles (SGR), cursor moves, erase line
    r"|\x9b[0-?]*[ -/]*[@-~]"  # CSI in its one-character form
    r"|\x1b[ -/]*[0-~]"  # the other escape sequences (charset, keypad mode, ...)
)
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")  # C0 and C1 controls, tab excepted


def display_line(line: str) -> str:
    """`line` (one line of a log, without its newline) as a terminal would leave it, in plain
    text: escape sequences removed; after a carriage return (a progress bar redrawn in place) only
    the last state; any other control character replaced by U+FFFD. Tabs stay."""
    line = line.rstrip("\r")  # a CRLF line end
    if "\r" in line:
        line = line.rsplit("\r", 1)[1]
    return _CONTROL.sub("\ufffd", _ESCAPES.sub("", line))


_NOISE = re.compile(
    r"\d+%\|"  # a tqdm progress bar: " 40%|####      | 20/50 [00:01<00:02, 9.9it/s]"
    r"|\[\d+:\d+(?::\d+)?<[^\]]*\]"  # tqdm's [elapsed<remaining, rate] without a percentage
    r"|\b\d+(?:\.\d+)?\s*(?:it|s/it|ba|examples|ex|B|kB|MB|GB)/s\b"  # a bare rate
    r"|\b(?:Future|Deprecation|PendingDeprecation|User|Runtime)Warning\b"
    r"|^\s*warnings\.warn\("  # the source line Python prints under a warning
    r"|\bis deprecated\b|\bdeprecated and will be removed\b"
    r"|^(?:Map|Filter|Generating \w+ split|Downloading|Fetching \d+ files)\b"
    r"|Writing model shards|Loading checkpoint shards"
    r"|huggingface/tokenizers: The current process just got forked"
    r"|^\[transformers\]|^Some weights of \w+ were not initialized"
    r"|^You should probably TRAIN this model"
    # transformers 5's load report under "[transformers] ... LOAD REPORT": a table of the weights
    # that were missing (a new classification head: expected) or unexpected, and its notes.
    r"|^Key\s*\|\s*Status\s*\|"
    r"|^-+\+-+"
    r"|^\S+\s*\|\s*(?:MISSING|UNEXPECTED|MISMATCH)\s*\|"
    r"|^Notes:\s*$"
    r"|^- (?:MISSING|UNEXPECTED|MISMATCH):",
    re.IGNORECASE,
)


def is_noise(line: str) -> bool:
    """Whether a (display-ready) log line is library chatter rather than the run's own report:
    progress bars, deprecation and future warnings, dataset mapping, shard loading and writing.
    Tracebacks and the worker's own lines are never noise."""
    return bool(_NOISE.search(line))


def _decode(data: bytes) -> list[str]:
    """Complete lines (`data` ends with a newline) ready to show. Split on newlines only: a
    carriage return redraws a line, it does not start one."""
    return [display_line(line) for line in data.decode("utf-8", errors="replace").split("\n")[:-1]]


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
    """A scrolling view of the last lines of a log; older lines fall off the top.

    Library noise (`is_noise`) is hidden unless `show_all`; the border's subtitle says how many of
    the lines kept are hidden, and how to see them."""

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
        self.kept: deque[str] = deque(maxlen=max_lines)
        """The last lines read, noise included (what `show_all` shows)."""
        self.show_all = False
        self.toggle_key = "l"
        """The key named in the subtitle (the screen binds it to `toggle_noise`)."""

    @property
    def hidden_count(self) -> int:
        """How many of the kept lines are hidden as noise."""
        return 0 if self.show_all else sum(1 for line in self.kept if is_noise(line))

    def clear(self) -> LogTail:
        self.kept.clear()
        super().clear()
        self._draw_subtitle()
        return self

    def show_lines(self, lines: list[str], replace: bool = False) -> None:
        """Append `lines` (as read by `read_tail` or `LogFollower`, or raw: they are made ready
        to show either way), or show only them when `replace`."""
        if replace:
            self.clear()
        ready = [display_line(line) for line in lines]
        self.kept.extend(ready)
        shown = ready if self.show_all else [line for line in ready if not is_noise(line)]
        if shown:
            self.write_lines(shown)
        self._draw_subtitle()

    def toggle_noise(self) -> None:
        """Show every line, or hide library noise again."""
        self.show_all = not self.show_all
        kept = list(self.kept)
        super().clear()
        shown = kept if self.show_all else [line for line in kept if not is_noise(line)]
        if shown:
            self.write_lines(shown)
        self._draw_subtitle()

    def _draw_subtitle(self) -> None:
        hidden = self.hidden_count
        if self.show_all:
            self.border_subtitle = f"all lines · {self.toggle_key}: hide library noise"
        elif hidden:
            noun = "line" if hidden == 1 else "lines"
            self.border_subtitle = f"{hidden} library {noun} hidden · {self.toggle_key}: show all"
        else:
            self.border_subtitle = ""
