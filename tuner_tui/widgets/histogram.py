"""A length histogram as horizontal unicode bars: one line per bin, label, bar, count."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

_BLOCKS = " ▏▎▍▌▋▊▉█"


def bar(value: float, largest: float, width: int) -> str:
    """A bar of unicode blocks, eighth-cell precise; `width` cells stand for `largest`."""
    if largest <= 0 or value <= 0:
        return ""
    eighths = max(1, round(value / largest * width * 8))  # a non-empty bin never looks empty
    full, rest = divmod(eighths, 8)
    return "█" * full + (_BLOCKS[rest] if rest else "")


class Histogram(Static):
    """Shows a `length_summary` dict (min/p50/p95/max/mean and histogram edges/counts)."""

    DEFAULT_CSS = """
    Histogram {
        height: auto;
        width: 1fr;
        padding: 0 1 1 0;
    }
    """

    def __init__(self, title: str, *, bar_width: int = 24, id: str | None = None) -> None:  # noqa: A002
        super().__init__("", id=id)
        self.title = title
        self.bar_width = bar_width
        """The widest a bar gets; narrower when the widget is (two side by side at 80 columns)."""
        self.summary: dict[str, Any] | None = None

    def show(self, summary: dict[str, Any] | None, title: str | None = None) -> None:
        """Draw this summary (None clears it)."""
        self.summary = summary
        if title is not None:
            self.title = title
        self._draw()

    def on_resize(self) -> None:
        self._draw()

    def _draw(self) -> None:
        summary = self.summary
        if not summary or not summary.get("histogram"):
            self.update(Text(f"{self.title}: no rows", style="dim"))
            return
        edges, counts = summary["histogram"]["edges"], summary["histogram"]["counts"]
        # The last bin also holds everything above the 99th percentile.
        labels = [
            f"≥{edges[i]:,.0f}" if i == len(counts) - 1 else f"{edges[i]:,.0f}–{edges[i + 1]:,.0f}"
            for i in range(len(counts))
        ]
        numbers = [f"{count:,}" for count in counts]
        room = self.content_size.width - max(map(len, labels)) - max(map(len, numbers)) - 2
        width = min(self.bar_width, room) if self.content_size.width else self.bar_width
        grid = Table.grid(padding=(0, 1))
        grid.title = self.title
        grid.title_justify = "left"
        grid.title_style = "bold"
        grid.caption = f"p50 {summary['p50']:,} · p95 {summary['p95']:,} · max {summary['max']:,}"
        grid.caption_justify = "left"
        grid.add_column(justify="right", style="dim", no_wrap=True)
        grid.add_column(no_wrap=True, style="cyan")
        grid.add_column(justify="right", no_wrap=True)
        top = max(counts) or 1
        for label, count, number in zip(labels, counts, numbers, strict=True):
            grid.add_row(label, bar(count, top, max(width, 1)), number)
        self.update(grid)
