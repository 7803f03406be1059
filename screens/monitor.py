"""Monitor: a served run's traffic (requests, requests/s, latency p50/p95, from its
serve/requests.jsonl, re-read every few seconds) and its drift checks against the training data
(`tuner monitor RUN_DIR --json` in a separate process, on demand: it loads the data and, for a
classifier, the model, which the wizard never does itself)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from tuner_tui.views.drift import CHECK_COLUMNS, check_cells, headline, latency_lines

REFRESH_S = 3.0


@dataclass
class DriftMeasured(Message):
    """`tuner monitor --json` answered: its report, or the error it printed."""

    report: dict[str, Any] | None
    error: str = ""


class MonitorScreen(Screen[None]):
    """Traffic and drift of one run's server."""

    CSS_PATH = "monitor.tcss"
    BINDINGS = [
        Binding("escape", "dismiss", "Close"),
        Binding("r", "measure", "Measure drift"),
    ]

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="monitor"):
            yield Static(f"Monitor: {self.run_dir.name}", classes="step-title", markup=False)
            yield Static("", id="server", markup=False)
            yield Static("", id="traffic", markup=False)
            yield Static("Drift checks: press r to measure the requests log against the training data.",
                         id="drift-status", markup=False)  # fmt: skip
            yield DataTable(id="checks", cursor_type="none", show_cursor=False)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#checks", DataTable).add_columns(*CHECK_COLUMNS)
        self._refresh_traffic()
        self.set_interval(REFRESH_S, self._refresh_traffic)

    def _refresh_traffic(self) -> None:
        from tuner_tui.deploy.serve import requests_log, served

        state = served(self.run_dir)
        server = self.query_one("#server", Static)
        if state:
            server.update(f"Served at {state.get('url')} by {state.get('engine')} (pid {state.get('pid')}).")
        else:
            server.update(f"Not being served now. Start it: tuner serve {self.run_dir} --detach")
        log = requests_log(self.run_dir)
        self.query_one("#traffic", Static).update(traffic_text(log))

    def action_measure(self) -> None:
        self.query_one("#drift-status", Static).update("Measuring drift in a separate process...")
        self._measure(self.run_dir)

    @work(thread=True, exclusive=True, group="drift", description="tuner monitor", exit_on_error=False)
    def _measure(self, run_dir: Path) -> None:
        command = [sys.executable, "-m", "tuner_tui.cli", "monitor", str(run_dir), "--json"]
        result = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            self.post_message(
                DriftMeasured(None, result.stderr.strip()[-600:] or f"exit {result.returncode}")
            )
            return
        try:
            self.post_message(DriftMeasured(json.loads(result.stdout[result.stdout.index("{") :])))
        except ValueError:
            self.post_message(DriftMeasured(None, "tuner monitor printed no report"))

    @on(DriftMeasured)
    def _show_drift(self, message: DriftMeasured) -> None:
        status = self.query_one("#drift-status", Static)
        table = self.query_one("#checks", DataTable)
        table.clear()
        if message.report is None:
            status.update(message.error)
            return
        status.update(headline(message.report))
        for check in message.report.get("checks", []):
            table.add_row(*check_cells(check))


def traffic_text(log: Path) -> str:
    """Requests, requests/s and latency from a requests log (stdlib only: read every refresh)."""
    records = []
    try:
        lines = log.read_text(encoding="utf-8").splitlines()
    except OSError:
        return "No requests yet."
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    from tuner_tui.deploy.monitor import latency_summary

    summary = latency_summary(records)
    if summary is None:
        return "No requests yet."
    return "\n".join(latency_lines(summary))
