"""The checkpoints a run has saved, newest first, with the ones pruned since marked as gone."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from rich.table import Table
from rich.text import Text
from textual.widgets import Static


@dataclass
class Checkpoint:
    step: int
    name: str
    size_bytes: int | None
    removed: bool = False


def _size(value: int | None) -> str:
    if value is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024  # type: ignore[assignment]
    return str(value)


class CheckpointList(Static):
    """Folds `checkpoint` events into a small table: step, folder, size, kept or removed."""

    DEFAULT_CSS = """
    CheckpointList {
        height: auto;
        min-height: 1;
    }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:  # noqa: A002
        super().__init__("", id=id, classes=classes)
        self.checkpoints: dict[str, Checkpoint] = {}
        """By folder name, in the order they were saved."""

    def clear(self) -> None:
        self.checkpoints = {}
        self._redraw()

    def add_events(self, events: list[Mapping[str, Any]]) -> None:
        """Fold checkpoint events in (any other event is ignored), then redraw once."""
        for event in events:
            if event.get("type") != "checkpoint":
                continue
            name = PurePath(str(event.get("path") or f"checkpoint-{event.get('step')}")).name
            step = event.get("step")
            self.checkpoints[name] = Checkpoint(
                step if isinstance(step, int) else -1,
                name,
                event.get("bytes") if isinstance(event.get("bytes"), int) else None,
            )
            # The worker prunes old checkpoints as it saves new ones (keep_checkpoints).
            for gone in event.get("removed") or []:
                if gone in self.checkpoints:
                    self.checkpoints[gone].removed = True
        self._redraw()

    @property
    def kept(self) -> list[Checkpoint]:
        return [c for c in self.checkpoints.values() if not c.removed]

    def _redraw(self) -> None:
        if not self.checkpoints:
            self.update(Text("No checkpoints yet.", style="dim"))
            return
        grid = Table.grid(padding=(0, 2))
        grid.add_column(justify="right", no_wrap=True)
        grid.add_column(no_wrap=True, overflow="ellipsis")
        grid.add_column(justify="right", no_wrap=True)
        grid.add_column(no_wrap=True)
        grid.add_row(*(Text(h, style="bold dim") for h in ("step", "folder", "size", "")))
        for checkpoint in sorted(self.checkpoints.values(), key=lambda c: c.step, reverse=True):
            style = "dim strike" if checkpoint.removed else ""
            grid.add_row(
                Text(str(checkpoint.step), style=style),
                Text(checkpoint.name, style=style),
                Text(_size(checkpoint.size_bytes), style=style),
                Text(
                    "removed" if checkpoint.removed else "kept",
                    style="dim" if checkpoint.removed else "green",
                ),
            )
        self.update(grid)
