"""Charts of a run's metrics (plotext in Textual), fed with decimated `Series`.

This module imports plotext; the Training screen imports it only when it first composes, so the
wizard's first paint does not pay for it.
"""

from __future__ import annotations

from collections.abc import Sequence

from textual_plotext import PlotextPlot

from tuner_tui.views.series import Trace


class MetricChart(PlotextPlot):
    """A titled plotext chart of metric traces over training steps.

    `show()` replaces the data and schedules one repaint; the caller decides how often to call
    it (the Training screen coalesces bursts of events into a few redraws a second).
    """

    DEFAULT_CSS = """
    MetricChart {
        height: 12;
        min-height: 8;
        min-width: 30;
    }
    """

    def __init__(
        self,
        title: str,
        *,
        y_label: str = "",
        id: str | None = None,  # noqa: A002
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.title = title
        self.y_label = y_label
        self.traces: tuple[Trace, ...] = ()
        """What the chart shows now (kept for tests and for redraws after a resize)."""
        self.redraws = 0
        """How many times the data was replaced; the benchmark reads it."""

    def on_mount(self) -> None:
        self._configure()

    def _configure(self) -> None:
        plt = self.plt
        plt.title(self.title)
        plt.xlabel("step")
        if self.y_label:
            plt.ylabel(self.y_label)

    def show(self, traces: Sequence[Trace], title: str | None = None) -> None:
        """Draw these traces instead of the previous ones (under a new title, if given)."""
        if title is not None and title != self.title:
            self.title = title
            self.plt.title(title)
        self.traces = tuple(traces)
        self.redraws += 1
        plt = self.plt
        plt.clear_data()
        for trace in self.traces:
            if not trace.xs:
                continue
            color = trace.color or "default"
            if trace.points:
                plt.scatter(list(trace.xs), list(trace.ys), label=trace.label, marker="x", color=color)
            else:
                plt.plot(list(trace.xs), list(trace.ys), label=trace.label, marker="braille", color=color)
        self.refresh()
