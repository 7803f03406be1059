"""Step 5, Evaluation: metrics, the base-vs-tuned comparison and the bias report.

The screen shows the report of one run: the run the App follows (`TunerApp.run_dir`), or one the
user picks from the runs directory. It reads `report/report.json` in a thread worker and draws it;
"Re-evaluate" runs the evaluation again in-process (in a worker: it loads models) and reloads.
Below the report, the draft recipe's evaluation settings are listed as on every step.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, DataTable, Select, Static

from tuner_tui.recipe import Recipe
from tuner_tui.runs.state import ACTIVE_PHASES, read_state
from tuner_tui.screens.step import StepScreen
from tuner_tui.widgets.value_table import ValueTable

CELL_CHARS = 60
"""Longest sample text shown in a table cell; report.md has the rest."""
SAMPLE_COLUMNS = ("input", "reference", "base", "tuned")
BIAS_PARTS = (
    ("data_audit", "Data audit"),
    ("counterfactual", "Counterfactual probes"),
    ("paired", "Paired sentences"),
)


def num(value: Any) -> str:
    """A metric value for a table cell: 4 decimals, '-' when missing."""
    if isinstance(value, bool) or value is None:
        return "-" if value is None else ("yes" if value else "no")
    if isinstance(value, float):
        return "nan" if math.isnan(value) else (f"{value:.4f}" if abs(value) < 1000 else f"{value:,.1f}")
    return str(value)


def cell(text: Any) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= CELL_CHARS else flat[: CELL_CHARS - 1] + "…"


# --- messages (posted by the workers) -------------------------------------------------------------


@dataclass
class RunsListed(Message):
    """The runs under the runs directory, newest first (list_runs rows)."""

    runs: list[dict[str, Any]]


@dataclass
class ReportRead(Message):
    """report.json of `run` was read; `report` is None when there is none (`reason` says why)."""

    run: Path
    report: dict[str, Any] | None
    reason: str = ""


@dataclass
class RunReevaluated(Message):
    """A re-evaluation of `run` finished and rewrote its report."""

    run: Path
    verdict: str


@dataclass
class ReevaluationFailed(Message):
    """A re-evaluation of `run` failed; `message` says why."""

    run: Path
    message: str


class EvaluationScreen(StepScreen):
    STEP = "evaluation"
    STEP_TITLE = "Evaluation"
    JUMP_KEY = "5"
    SECTIONS = ("evaluation", "bias")
    INTRO = (
        "Evaluate the tuned model on held-out data, compare it with the base model, give a "
        "verdict on each objective, and write a bias report."
    )
    CSS_PATH = ["step.tcss", "evaluation.tcss"]
    BINDINGS = [
        Binding("o", "open_report", "report.md"),
        Binding("e", "reevaluate", "Re-evaluate"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.run_root: Path | None = None
        """The run whose report is shown."""
        self.report: dict[str, Any] | None = None
        """Its report.json, once read."""
        self.evaluating = False

    def compose_content(self) -> ComposeResult:
        yield Static(self.STEP_TITLE, classes="step-title")
        yield Static(self.INTRO, classes="step-intro", markup=False)
        with Horizontal(id="run-bar"):
            yield Select[str]([], id="run-select", prompt="Choose a run", compact=True)
            yield Button("report.md", id="open-report", compact=True, tooltip="o: read report.md here")
            yield Button("Re-evaluate", id="reevaluate", compact=True, tooltip="e: evaluate the run again")
        yield Static("", id="report-status", markup=False)
        with Vertical(id="report"):
            yield Static("", id="verdict")
            yield Static("Objectives", id="objectives-title", classes="section")
            yield DataTable(id="objectives", cursor_type="none", show_cursor=False)
            yield Static("Metrics", classes="section")
            yield DataTable(id="metrics", cursor_type="none", show_cursor=False)
            yield Static("", id="confusion-title", classes="section")
            yield DataTable(id="confusion", cursor_type="none", show_cursor=False)
            yield Static("Samples, side by side", id="samples-title", classes="section")
            yield DataTable(id="samples", cursor_type="none", show_cursor=False)
            yield Static("Best and worst (tuned)", id="best-worst-title", classes="section")
            yield DataTable(id="best-worst", cursor_type="none", show_cursor=False)
            yield Static("Bias report", classes="section")
            yield Static("", id="bias")
        yield Static("", id="draft-note", markup=False)
        yield Static("Evaluation settings in the draft recipe:", id="values-caption")
        yield ValueTable(id="values")
        yield Static("", id="problems")

    def on_mount(self) -> None:
        self.query_one("#report").display = False
        self.watch(self.app, "run_dir", self._run_dir_changed)
        self._list_runs(Path(self.tuner.runs_dir))

    def on_screen_resume(self) -> None:
        super().on_screen_resume()
        # A run may have finished (or a new one started) while another step was shown.
        self._list_runs(Path(self.tuner.runs_dir))
        if self.run_root is not None:
            self._read_report(self.run_root)

    # --- which run ---------------------------------------------------------------------------

    def _run_dir_changed(self, run_dir: Path | None) -> None:
        if run_dir is not None:
            self.show_run(Path(run_dir))
        elif self.run_root is None:
            self._show_status("No run chosen: start one from the Training step (press 4), or pick one above.")

    def show_run(self, root: Path) -> None:
        """Show the report of the run at `root`."""
        self._add_run_option(root)
        select = self.query_one("#run-select", Select)
        with self.prevent(Select.Changed):
            select.value = str(root)
        if root == self.run_root and self.report is not None:
            return
        self.run_root = root
        self.report = None
        self._show_status(f"Reading the report of {root.name}…")
        self._read_report(root)

    def _add_run_option(self, root: Path, label: str | None = None) -> None:
        select = self.query_one("#run-select", Select)
        options = dict(getattr(self, "_options", {}))
        options.setdefault(str(root), label or root.name)
        if label is not None:
            options[str(root)] = label
        self._options = options
        current = select.value
        with self.prevent(Select.Changed):
            select.set_options((text, path) for path, text in options.items())
            if isinstance(current, str) and current in options:
                select.value = current

    @work(thread=True, exclusive=True, group="list-runs", description="List runs")
    def _list_runs(self, runs_dir: Path) -> None:
        from tuner_tui.runs.layout import list_runs

        try:
            runs = list_runs(runs_dir)
        except OSError:
            runs = []
        self.post_message(RunsListed(runs))

    @on(RunsListed)
    def _runs_listed(self, message: RunsListed) -> None:
        for run in message.runs:
            self._add_run_option(Path(run["path"]), f"{run['run_id']} ({run.get('phase', '?')})")

    @on(Select.Changed, "#run-select")
    def _run_chosen(self, event: Select.Changed) -> None:
        if isinstance(event.value, str):
            self.show_run(Path(event.value))

    # --- reading the report -----------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="read-report", description="Read report.json")
    def _read_report(self, root: Path) -> None:
        report_file = root / "report" / "report.json"
        state = read_state(root / "state.json") if (root / "state.json").exists() else {}
        phase = state.get("phase")
        if not report_file.exists():
            if phase in ACTIVE_PHASES:
                reason = (
                    f"No report yet: the run is still {phase}. The report is written when it "
                    "finishes evaluating; this page shows it then."
                )
            elif phase == "completed":
                reason = "No report in this run: press e to evaluate it now."
            elif phase is None:
                reason = f"{root} is not a run directory (no state.json)."
            else:
                reason = (
                    f"No report: the run ended as '{phase}' before evaluation. Resume it with "
                    f"`tuner run --resume {root}`."
                )
            self.post_message(ReportRead(root, None, reason))
            return
        try:
            report = json.loads(report_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            self.post_message(ReportRead(root, None, f"{report_file} could not be read: {error}"))
            return
        if not isinstance(report, dict):
            self.post_message(ReportRead(root, None, f"{report_file} is not a report (not a JSON object)."))
            return
        self.post_message(ReportRead(root, report))

    @on(ReportRead)
    def _report_read(self, message: ReportRead) -> None:
        if message.run != self.run_root:
            return
        self.report = message.report
        if message.report is None:
            self.query_one("#report").display = False
            self._show_status(message.reason)
            return
        self._show_status("")
        self.query_one("#report").display = True
        self._draw_report(message.report)

    def _show_status(self, text: str) -> None:
        status = self.query_one("#report-status", Static)
        status.update(text)
        status.display = bool(text)

    # --- drawing ---------------------------------------------------------------------------------

    def _draw_report(self, report: dict[str, Any]) -> None:
        verdict = str(report.get("verdict", "?"))
        words = {
            "pass": ("PASS", "every objective is met", "bold green"),
            "fail": ("FAIL", "at least one objective is not met", "bold red"),
            "no_objectives": ("NO VERDICT", "no objectives were set", "bold yellow"),
        }.get(verdict, (verdict.upper(), "", "bold"))
        text = Text()
        text.append(f" {words[0]} ", f"{words[2]} reverse").append(f"  {words[1]}")
        where = [
            f"task {report['task']}" if report.get("task") else "",
            f"{report['split']} split" if report.get("split") else "",
            f"{report['examples']} examples" if report.get("examples") is not None else "",
        ]
        if any(where):
            text.append("\n" + ", ".join(w for w in where if w), "dim")
        self.query_one("#verdict", Static).update(text)
        self._draw_objectives(report.get("objectives") or [])
        self._draw_metrics(report.get("metrics") or {})
        samples = report.get("samples") or {}
        self._draw_samples(samples)
        self.query_one("#bias", Static).update(bias_text(report.get("bias") or {}))

    def _draw_objectives(self, objectives: list[dict[str, Any]]) -> None:
        table = self.query_one("#objectives", DataTable)
        table.clear(columns=True)
        table.add_columns("metric", "target", "base", "tuned", "margin", "result")
        for o in objectives:
            passed = bool(o.get("passed"))
            result = Text("pass", "bold green") if passed else Text("FAIL", "bold red")
            table.add_row(
                str(o.get("metric", "?")),
                f"{o.get('direction', '')} {num(o.get('target'))}".strip(),
                num(o.get("base")),
                num(o.get("tuned")),
                num(o.get("margin")),
                result,
            )
        self._show_table(table, bool(objectives))

    def _draw_metrics(self, metrics: dict[str, Any]) -> None:
        table = self.query_one("#metrics", DataTable)
        table.clear(columns=True)
        models = [m for m in ("base", "tuned") if isinstance(metrics.get(m), dict)]
        table.add_columns("metric", *models)
        names = sorted(
            {
                k
                for m in models
                for k, v in metrics[m].items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)
            }
        )
        for name in names:
            table.add_row(name, *(num(metrics[m].get(name)) for m in models))
        # The engine keeps the confusion matrix under the tuned model's metrics.
        confusion = metrics.get("confusion_matrix") or (metrics.get("tuned") or {}).get("confusion_matrix")
        ctable = self.query_one("#confusion", DataTable)
        title = self.query_one("#confusion-title", Static)
        ctable.clear(columns=True)
        if isinstance(confusion, dict) and confusion.get("labels") and confusion.get("matrix"):
            labels = [str(label) for label in confusion["labels"]]
            ctable.add_columns("reference \\ predicted", *labels)
            for label, row in zip(labels, confusion["matrix"], strict=False):
                ctable.add_row(
                    Text(label, "bold"),
                    *(Text(str(v), "bold green" if j == i else ("red" if v else "dim"))
                      for i, j, v in ((labels.index(label), j, v) for j, v in enumerate(row))),
                )  # fmt: skip
            title.update("Confusion matrix (tuned; rows = reference, columns = prediction)")
            ctable.display = title.display = True
        else:
            ctable.display = title.display = False

    def _draw_samples(self, samples: dict[str, Any]) -> None:
        shown = [s for s in samples.get("shown") or [] if isinstance(s, dict)]
        table = self.query_one("#samples", DataTable)
        table.clear(columns=True)
        columns = [c for c in SAMPLE_COLUMNS if any(c in s for s in shown)]
        table.add_columns(*columns)
        for sample in shown:
            table.add_row(*(cell(sample.get(c, "")) for c in columns))
        self._show_table(table, bool(shown))

        ranked = [("best", s) for s in samples.get("best") or []] + [
            ("worst", s) for s in samples.get("worst") or []
        ]
        ranked = [(kind, s) for kind, s in ranked if isinstance(s, dict)]
        table = self.query_one("#best-worst", DataTable)
        table.clear(columns=True)
        columns = [c for c in SAMPLE_COLUMNS if any(c in s for _, s in ranked)]
        table.add_columns("", *columns)
        for kind, sample in ranked:
            style = "green" if kind == "best" else "red"
            table.add_row(Text(kind, style), *(cell(sample.get(c, "")) for c in columns))
        self._show_table(table, bool(ranked))

    def _show_table(self, table: DataTable, show: bool) -> None:
        """Show or hide a table together with its section title."""
        table.display = show
        self.query_one(f"#{table.id}-title").display = show

    # --- actions ----------------------------------------------------------------------------------

    @on(Button.Pressed, "#open-report")
    def action_open_report(self) -> None:
        """Show the run's report.md in a reader inside the app."""
        if self.run_root is None:
            self.notify("No run chosen.", severity="warning")
            return
        path = self.run_root / "report" / "report.md"
        try:
            markdown = path.read_text(encoding="utf-8")
        except OSError:
            self.notify(f"{path} does not exist yet.", severity="warning", markup=False)
            return
        from tuner_tui.widgets.markdown_modal import MarkdownModal

        self.app.push_screen(MarkdownModal(str(path), markdown))

    @on(Button.Pressed, "#reevaluate")
    def action_reevaluate(self) -> None:
        """Evaluate the chosen run again (its report is rewritten), then show the new report."""
        if self.run_root is None:
            self.notify("No run chosen.", severity="warning")
            return
        if self.evaluating:
            self.notify("Already evaluating; the report refreshes when it is done.")
            return
        self.evaluating = True
        self.query_one("#reevaluate", Button).disabled = True
        self._show_status(f"Re-evaluating {self.run_root.name}… (this loads the base and tuned models)")
        self._reevaluate(self.run_root)

    @work(thread=True, exclusive=True, group="reevaluate", description="Re-evaluate a run")
    def _reevaluate(self, root: Path) -> None:
        # Heavy: imports torch/transformers and loads both models.
        from tuner_tui.errors import TunerError
        from tuner_tui.evaluation.run import reevaluate
        from tuner_tui.runs.layout import RunDir

        try:
            report = reevaluate(RunDir.open(root))
        except TunerError as error:
            self.post_message(ReevaluationFailed(root, str(error)))
            return
        except Exception as error:  # a crash in evaluation must leave the wizard usable
            self.post_message(ReevaluationFailed(root, f"{type(error).__name__}: {error}"))
            return
        self.post_message(RunReevaluated(root, str(report.get("verdict", "?"))))

    @on(RunReevaluated)
    def _reevaluated(self, message: RunReevaluated) -> None:
        self._evaluation_ended()
        self.notify(f"Re-evaluated {message.run.name}: {message.verdict}.", markup=False)
        if message.run == self.run_root:
            self._read_report(message.run)

    @on(ReevaluationFailed)
    def _reevaluation_failed(self, message: ReevaluationFailed) -> None:
        self._evaluation_ended()
        self.notify(message.message, title="Re-evaluation failed", severity="error", timeout=10, markup=False)
        if message.run == self.run_root:
            self._show_status(f"Re-evaluation failed: {message.message}")

    def _evaluation_ended(self) -> None:
        self.evaluating = False
        self.query_one("#reevaluate", Button).disabled = False

    # --- the recipe values below the report ----------------------------------------------------------

    def rows(self, recipe: Recipe) -> list[tuple[str, Any]]:
        evaluation, bias = recipe.evaluation, recipe.bias
        return [
            ("evaluation.metrics", evaluation.metrics or "task defaults"),
            ("evaluation.max_samples", evaluation.max_samples),
            ("evaluation.compare_base", evaluation.compare_base),
            ("evaluation.generation.max_new_tokens", evaluation.generation.max_new_tokens),
            ("bias.enabled", bias.enabled),
            ("bias.probes", bias.probes),
            ("bias.groups", bias.groups or "all"),
        ]


def _key_numbers(name: str, part: dict[str, Any]) -> list[str]:
    """The few numbers of a bias part worth reading before its findings."""
    numbers: list[str] = []
    if name == "data_audit":
        families = part.get("families") or {}
        groups = [
            (f"{family}/{group}", g.get("rows", 0))
            for family, entry in families.items()
            for group, g in (entry.get("groups") or {}).items()
            if isinstance(g, dict) and g.get("rows")
        ]
        if groups:
            numbers.append("rows mentioning: " + ", ".join(f"{g} {n}" for g, n in groups[:6]))
        numbers.append(f"{len(part.get('flags') or [])} flag(s)")
    elif name == "counterfactual":
        pairs = part.get("pairs") or {}
        overall = (part.get("comparison") or {}).get("overall") or {}
        shown = [f"{pairs.get('total', overall.get('n', '?'))} pairs"]
        shown += [
            f"{key.replace('_', ' ')} {num(value)}"
            for key, value in overall.items()
            if key != "n" and isinstance(value, (int, float, bool))
        ]
        numbers.append(", ".join(shown))
    elif name == "paired":
        for model in ("base", "tuned"):
            overall = ((part.get(model) or {}).get("overall")) or {}
            if "share" in overall:
                ci = overall.get("share_ci95")
                ci_text = (
                    f" (95% CI {num(ci[0])}-{num(ci[1])})" if isinstance(ci, list) and len(ci) == 2 else ""
                )
                numbers.append(
                    f"{model}: prefers the stereotype in {num(overall['share'])} "
                    f"of {overall.get('n', '?')} pairs{ci_text}"
                )
    return numbers


def bias_text(bias: dict[str, Any]) -> Text:
    """The three parts of the bias report: status, key numbers and findings."""
    text = Text()
    for name, title in BIAS_PARTS:
        part = bias.get(name)
        if text:
            text.append("\n")
        text.append(title, "bold")
        if not isinstance(part, dict):
            text.append(": not in this report\n", "dim")
            continue
        status = str(part.get("status", "?"))
        text.append(f": {status.replace('_', ' ')}\n", "green" if status == "ok" else "yellow")
        if status != "ok":
            if part.get("reason"):
                text.append(f"  {part['reason']}\n", "dim")
            continue
        for line in _key_numbers(name, part):
            text.append(f"  {line}\n")
        for finding in part.get("findings") or []:
            text.append(f"  • {finding}\n")
    return text
