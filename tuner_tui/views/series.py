"""Metric series of a run: every point counted, a fixed-size summary kept for the chart.

A long run logs millions of loss values. Keeping them all would cost a viewer memory in
proportion to the run (a million points in Python lists: hundreds of MB), and plotting them
all would cost the event loop more than a terminal can show (a chart is ~100 cells wide). So a
series keeps only a running min/max summary: appending is O(1), and the summary has a fixed
size however long the run gets. Min and max (rather than every n-th point) keep loss spikes
visible after decimation; under `max_points` points nothing is merged, so a short run is
charted point for point.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

MAX_PLOT_POINTS = 500
"""Most points one series hands to plotext per redraw."""


class Series:
    """A metric over steps: how many points, the last one, and a fixed-size min/max summary.

    Non-finite values (a diverged loss, written as "nan" in events.jsonl) count, and can be the
    last value, but are left out of the summary: plotext cannot place them, and the dashboard
    reports them in words instead.
    """

    def __init__(self, max_points: int = MAX_PLOT_POINTS) -> None:
        self._count = 0
        self._last: float | None = None
        # Each bucket is [x_min_point, y_min, x_max_point, y_max, count]; a bucket covers
        # `_span` finite points, and two neighbours merge when there are too many buckets.
        self._max_buckets = max(1, max_points // 2)
        self._span = 1
        self._buckets: list[list[float]] = []

    def __len__(self) -> int:
        return self._count

    def append(self, x: float, y: float) -> None:
        """Count a point and fold it into the summary."""
        self._count += 1
        self._last = y
        if not math.isfinite(y):
            return
        last = self._buckets[-1] if self._buckets else None
        if last is not None and last[4] < self._span:
            if y < last[1]:
                last[0], last[1] = x, y
            if y > last[3]:
                last[2], last[3] = x, y
            last[4] += 1
            return
        self._buckets.append([x, y, x, y, 1])
        if len(self._buckets) > self._max_buckets:
            self._halve()

    def _halve(self) -> None:
        merged = []
        for i in range(0, len(self._buckets), 2):
            pair = self._buckets[i : i + 2]
            low = min(pair, key=lambda b: b[1])
            high = max(pair, key=lambda b: b[3])
            merged.append([low[0], low[1], high[2], high[3], sum(b[4] for b in pair)])
        self._buckets = merged
        self._span *= 2

    def plot_points(self) -> tuple[list[float], list[float]]:
        """At most `max_points` finite points, in step order, keeping each bucket's extremes."""
        xs: list[float] = []
        ys: list[float] = []
        for x_low, y_low, x_high, y_high, _ in self._buckets:
            if x_low == x_high:
                xs.append(x_low)
                ys.append(y_low)
            elif x_low < x_high:
                xs += (x_low, x_high)
                ys += (y_low, y_high)
            else:
                xs += (x_high, x_low)
                ys += (y_high, y_low)
        return xs, ys

    @property
    def last(self) -> float | None:
        return self._last


@dataclass(frozen=True)
class Trace:
    """One series as drawn: a line, or scattered points (a few eval results)."""

    label: str
    xs: Sequence[float]
    ys: Sequence[float]
    points: bool = False
    color: str | None = None
