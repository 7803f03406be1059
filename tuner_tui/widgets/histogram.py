"""A length histogram as horizontal unicode bars: one line per bin, label, bar, count."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from tuner_tui.views.bars import bar, bin_labels


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
        counts = summary["histogram"]["counts"]
        labels = bin_labels(summary["histogram"])
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
