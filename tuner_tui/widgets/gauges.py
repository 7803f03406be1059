"""Gauges: labelled bars for GPU and host telemetry, drawn as one table in one widget.

A telemetry event arrives every few seconds with a handful of values per GPU; one Static that
renders a grid is cheaper to update than a widget per bar, and the bars stretch with the
terminal's width.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rich.console import RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, ItemGrid
from textual.widgets import Static

GIB = 1024**3


@dataclass(frozen=True)
class Gauge:
    """One row: a label, a fill in [0, 1] (None: no bar, e.g. power without a known limit),
    and the value in words."""

    label: str
    fraction: float | None
    text: str

    @property
    def style(self) -> str:
        """Bar colour: calm, then warning, then hot, so a saturated resource stands out."""
        if self.fraction is None or self.fraction < 0.75:
            return "green"
        return "yellow" if self.fraction < 0.9 else "red"


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _fraction(used: float | None, total: float | None) -> float | None:
    if used is None or not total:
        return None
    return max(0.0, min(1.0, used / total))


def _gib(value: float) -> str:
    return f"{value / GIB:.1f}"


def telemetry_gauges(event: Mapping[str, Any]) -> list[Gauge]:
    """The gauges a telemetry event calls for: per GPU util, memory, temperature and power;
    host CPU and memory when there is no GPU (and process RSS always, it is what the run uses)."""
    gauges: list[Gauge] = []
    gpus = event.get("gpus") or []
    for gpu in gpus:
        node = f"node {gpu['node']} " if "node" in gpu else ""  # another node's GPU
        name = f"{node}GPU {gpu.get('index', '?')}"
        util = _number(gpu.get("util"))
        used, total = _number(gpu.get("memory_used")), _number(gpu.get("memory_total"))
        temperature, power = _number(gpu.get("temperature")), _number(gpu.get("power_w"))
        gauges.append(
            Gauge(
                f"{name} util",
                None if util is None else util / 100,
                "-" if util is None else f"{util:.0f}%  {gpu.get('name', '')}".rstrip(),
            )
        )
        gauges.append(
            Gauge(
                f"{name} memory",
                _fraction(used, total),
                f"{_gib(used)} / {_gib(total)} GiB" if used is not None and total else "-",
            )
        )
        # 100 °C is where GPUs throttle hard; the bar is a scale for the eye, not a limit.
        gauges.append(
            Gauge(
                f"{name} temp",
                None if temperature is None else temperature / 100,
                "-" if temperature is None else f"{temperature:.0f} °C",
            )
        )
        gauges.append(Gauge(f"{name} power", None, "-" if power is None else f"{power:.0f} W"))
    if not gpus:
        cpu = _number(event.get("cpu_percent"))
        gauges.append(Gauge("CPU", None if cpu is None else cpu / 100, "-" if cpu is None else f"{cpu:.0f}%"))
        used, total = _number(event.get("ram_used_bytes")), _number(event.get("ram_total_bytes"))
        gauges.append(
            Gauge(
                "RAM",
                _fraction(used, total),
                f"{_gib(used)} / {_gib(total)} GiB" if used is not None and total else "-",
            )
        )
    rss, total = _number(event.get("rss_bytes")), _number(event.get("ram_total_bytes"))
    process_cpu = _number(event.get("process_cpu_percent"))
    if rss is not None:
        cpu_text = f"  ({process_cpu:.0f}% CPU)" if process_cpu is not None else ""
        processes = _number(event.get("processes"))
        label = f"{processes:.0f} ranks RSS" if processes is not None and processes > 1 else "worker RSS"
        gauges.append(Gauge(label, _fraction(rss, total), f"{_gib(rss)} GiB{cpu_text}"))
    return gauges


class GaugePanel(Static):
    """Rows of label, bar and value; `set_gauges` replaces them all."""

    DEFAULT_CSS = """
    GaugePanel {
        height: auto;
        min-height: 1;
    }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:  # noqa: A002
        super().__init__("", id=id, classes=classes)
        self.gauges: list[Gauge] = []

    def set_gauges(self, gauges: Iterable[Gauge], empty: str = "No telemetry yet.") -> None:
        self.gauges = list(gauges)
        if not self.gauges:
            self.update(Text(empty, style="dim"))
            return
        self.update(self._table())

    def _table(self) -> RenderableType:
        grid = Table.grid(padding=(0, 1), expand=True)
        grid.add_column(no_wrap=True, style="dim")
        grid.add_column(ratio=1, min_width=6)
        grid.add_column(no_wrap=True)
        for gauge in self.gauges:
            bar: RenderableType = (
                ProgressBar(total=1.0, completed=gauge.fraction, complete_style=gauge.style)
                if gauge.fraction is not None
                else Text("")
            )
            grid.add_row(Text(gauge.label), bar, Text(gauge.text))
        return grid

    def as_text(self) -> str:
        """The rows in plain words (tests and screen readers)."""
        return "\n".join(f"{g.label}: {g.text}" for g in self.gauges)


@dataclass(frozen=True)
class Cell:
    """One labelled figure of the metric row: `value` already formatted, with its unit."""

    label: str
    value: str
    style: str = "bold"


class MetricCells(ItemGrid):
    """Labelled figures in a grid of cells, as many to a row as the width allows: each cell holds
    its label and its value in cells of their own, so a value never runs into the next label."""

    DEFAULT_CSS = """
    MetricCells {
        height: auto;
        grid-gutter: 0 2;
    }
    MetricCells > .metric-cell {
        height: 1;
        width: 1fr;
    }
    MetricCells .metric-label {
        width: 10;
        color: $text-muted;
    }
    MetricCells .metric-value {
        width: 1fr;
    }
    """

    def __init__(
        self,
        labels: Iterable[str],
        *,
        min_column_width: int = 24,
        id: str | None = None,  # noqa: A002
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes, min_column_width=min_column_width)
        self.labels = tuple(labels)
        self.cells: dict[str, Cell] = {label: Cell(label, "-") for label in self.labels}

    @staticmethod
    def cell_id(label: str) -> str:
        return "cell-" + "-".join(label.split())

    def compose(self) -> ComposeResult:
        for label in self.labels:
            with Horizontal(classes="metric-cell", id=self.cell_id(label)):
                yield Static(label, classes="metric-label", markup=False)
                yield Static("-", classes="metric-value", markup=False)

    def set_cells(self, cells: Iterable[Cell]) -> None:
        """Show these values; a label not given is hidden (e.g. eval loss before the first eval)."""
        given = {cell.label: cell for cell in cells}
        for label in self.labels:
            box = self.query_one(f"#{self.cell_id(label)}")
            cell = given.get(label)
            box.display = cell is not None
            if cell is not None:
                box.query_one(".metric-value", Static).update(Text(cell.value, style=cell.style))
        self.cells = given

    def as_text(self) -> str:
        """The cells in plain words, one `label value` per line (tests and screen readers)."""
        return "\n".join(f"{c.label} {c.value}" for c in self.cells.values())
