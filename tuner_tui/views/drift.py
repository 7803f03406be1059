"""The drift report as a person reads it: one presenter for `tuner monitor` and the wizard's
Monitor view. Textual-free (rich allowed); works on the report's JSON form, so the wizard can
show a report a separate process computed."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

CHECK_COLUMNS = ("check", "value", "threshold", "verdict", "what it means")


def verdict_of(check: dict[str, Any]) -> str:
    drifted = check.get("drifted")
    return "not measured" if drifted is None else ("DRIFT" if drifted else "ok")


def check_cells(check: dict[str, Any]) -> tuple[str, str, str, str, str]:
    """The row of `CHECK_COLUMNS` for one check of `MonitorReport.to_json()["checks"]`."""
    statistic = check.get("statistic")
    value = "-" if statistic is None else f"{statistic:.3f}"
    return (str(check.get("title", check.get("name"))), value, f"{check.get('threshold', 0):g}",
            verdict_of(check), str(check.get("words", "")))  # fmt: skip


def headline(report: dict[str, Any]) -> str:
    """One line: drift or not, over how many inputs, from where."""
    drifted = [c["title"] for c in report.get("checks", []) if c.get("drifted")]
    what = f"{report.get('inputs')} inputs from {report.get('inputs_path')}"
    if drifted:
        return f"DRIFT in {', '.join(drifted)} ({what}, against {report.get('training_rows')} training rows)."
    return f"No drift ({what}, against {report.get('training_rows')} training rows)."


def latency_lines(latency: dict[str, Any] | None) -> list[str]:
    if not latency:
        return []
    rate = latency.get("requests_per_s")
    lines = [
        f"Requests: {latency['requests']}"
        + (f" over {latency['span_s']:.0f} s ({rate:.2f}/s)" if rate else ""),
        f"Latency: p50 {latency['p50_s'] * 1000:.0f} ms, p95 {latency['p95_s'] * 1000:.0f} ms",
    ]
    return lines


def print_report(console: Console, report: dict[str, Any]) -> None:
    """`tuner monitor`'s output: the headline, the checks table, latency and notes."""
    style = "bold red" if report.get("drift") else "bold green"
    console.print(Text(headline(report), style=style))
    table = Table(*CHECK_COLUMNS, title=Text("Drift checks against the training data"))
    for check in report.get("checks", []):
        cells = check_cells(check)
        verdict_style = {"DRIFT": "red", "ok": "green"}.get(cells[3], "dim")
        table.add_row(*(Text(c) for c in cells[:3]), Text(cells[3], style=verdict_style), Text(cells[4]))
    console.print(table)
    for line in latency_lines(report.get("latency")):
        console.print(Text(line))
    for note in report.get("notes", []):
        console.print(Text(f"note: {note}", style="yellow"))
