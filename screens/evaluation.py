"""Step 5, Evaluation: metrics, the base-vs-tuned comparison and the bias report.

The screen shows the report of one run: the run the App follows (`TunerApp.run_dir`), or one the
user picks from the runs directory. It reads `report/report.json` in a thread worker and draws it,
and watches the run's state.json in another: whenever the run's phase changes (a training run
reaches `completed`, a re-evaluation starts or ends) the report is read again.

"Re-evaluate" starts the evaluation as a detached process through the launcher
(`start_evaluation`, the same as `tuner eval`): it holds the run's lock, writes the run's events
and state like a worker, and goes on when the wizard quits. This process never loads a model or
imports torch; the run the App follows becomes the one being evaluated (unless another is active),
so the Training step's dashboard and its stop follow it too.
Below the report, the draft recipe's evaluation settings are listed as on every step.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, DataTable, Select, Static
from textual.worker import Worker, get_current_worker

from tuner_tui.runs.state import ACTIVE_PHASES, RunStatus, read_state
from tuner_tui.screens.messages import RunPhaseChanged
from tuner_tui.screens.step import StepScreen
from tuner_tui.views.evaluation_report import (
    OBJECTIVE_COLUMNS,
    ReportUnreadable,
    ReportView,
    bias_text,
    confusion_cells,
    cut,
    load_report,
    result_text,
    verdict_text,
)
from tuner_tui.views.fields import SPECS
from tuner_tui.views.runs import run_label
from tuner_tui.widgets.recipe_form import RecipeForm

if TYPE_CHECKING:
    from tuner_tui.runs.layout import RunSummary
    from tuner_tui.views.draft import Draft

EVALUATION_KEYS = tuple(k for k in SPECS if k.startswith("evaluation."))
BIAS_KEYS = tuple(k for k in SPECS if k.startswith("bias."))

STATE_POLL_S = 0.5
"""How often the shown run's state.json is looked at (a stat; read when it changed or is active)."""
CELL_CHARS = 60
"""Longest sample text shown in a table cell; report.md has the rest."""


# --- messages (posted by the workers) -------------------------------------------------------------


@dataclass
class RunsListed(Message):
    """The runs under the runs directory, newest first (list_runs rows)."""

    runs: list[RunSummary]


@dataclass
class ReportRead(Message):
    """report.json of `run` was read; `report` is None when there is none (`reason` says why).
    `phase` is the run's phase when it was read; `error`, what a failed re-evaluation said."""

    run: Path
    report: ReportView | None
    reason: str = ""
    phase: str | None = None
    error: str = ""


@dataclass
class RunStateRead(Message):
    """The shown run's state.json changed phase or pid (phase `crashed`: its worker is gone)."""

    run: Path
    state: RunStatus


@dataclass
class ReevaluationStarted(Message):
    """A detached re-evaluation of `run` started: process `pid`, its events from `events_offset`."""

    run: Path
    pid: int
    events_offset: int


@dataclass
class ReevaluationNotStarted(Message):
    """The launcher refused to re-evaluate `run` (busy, no adapter, ...); `message` says why."""

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
        # Deploy (issue 16): hidden from the footer, listed by ? (help).
        Binding("y", "try_it", "Try it: chat with base and tuned", show=False),
        Binding("m", "monitor", "Monitor the served run", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.run_root: Path | None = None
        """The run whose report is shown."""
        self.report: ReportView | None = None
        """Its report.json, once read."""
        self.state = RunStatus()
        """Its state.json as last watched (`read_state`: phase `crashed` when the worker is gone)."""
        self.starting = False
        """A re-evaluation is being started (the launcher has not answered yet)."""
        self._report_phase: str | None = None
        self._started: dict[Path, tuple[int, int]] = {}
        """Re-evaluations started here and not seen ending: run -> (pid, events offset)."""
        self._reevaluating: Path | None = None
        """The run of the last re-evaluation asked for here."""
        self._error_since: int | None = None
        """Where in the shown run's events.jsonl a re-evaluation started here began, once it has
        ended: a failure shows the error it wrote from there."""

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
        with Vertical(id="settings"):
            yield RecipeForm(
                EVALUATION_KEYS, title="Evaluation settings (saved in the recipe)", id="eval-form"
            )
            yield RecipeForm(BIAS_KEYS, title="Bias report settings", id="bias-form")
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
            self._reread(self.run_root)

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
        if root != self.run_root:
            self.state = RunStatus()
            self._error_since = None
            self._watch_state(root)
        self.run_root = root
        self.report = None
        self._show_status(f"Reading the report of {root.name}…")
        self._reread(root)

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

    @work(thread=True, exit_on_error=False, exclusive=True, group="list-runs", description="List runs")
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
            self._add_run_option(Path(run.path), run_label(run))

    @on(Select.Changed, "#run-select")
    def _run_chosen(self, event: Select.Changed) -> None:
        if isinstance(event.value, str):
            self.show_run(Path(event.value))

    # --- reading the report -----------------------------------------------------------------------

    @work(
        thread=True, exit_on_error=False, exclusive=True, group="read-report", description="Read report.json"
    )
    def _read_report(self, root: Path, since: int | None = None) -> None:
        """Read the report and the run's phase; with `since` (where a re-evaluation started in
        events.jsonl), also what that re-evaluation said when it failed."""
        report_file = root / "report" / "report.json"
        state = read_state(root / "state.json") if (root / "state.json").exists() else {}
        phase = state.get("phase")
        error = _last_error(root, since) if since is not None and phase in ("failed", "crashed") else ""
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
            elif (root / "adapter").is_dir():
                reason = (
                    f"No report: the run ended as '{phase}' before its evaluation finished; its "
                    "adapter is saved. Press e to evaluate it."
                )
            else:
                reason = (
                    f"No report: the run ended as '{phase}' before evaluation. Resume it with "
                    f"`tuner run --resume {root}`."
                )
            self.post_message(ReportRead(root, None, reason, phase, error))
            return
        try:
            report = load_report(report_file)
        except ReportUnreadable as problem:
            self.post_message(ReportRead(root, None, str(problem), phase, error))
            return
        self.post_message(ReportRead(root, report, "", phase, error))

    @on(ReportRead)
    def _report_read(self, message: ReportRead) -> None:
        if message.run != self.run_root:
            return
        self.report = message.report
        self._report_phase = message.phase
        notes = []
        if message.report is None:
            notes.append(message.reason)
        elif message.phase in ACTIVE_PHASES:
            notes.append(
                f"The run is {message.phase} now: below is its previous report; this page shows the "
                "new one when it ends."
            )
        if message.error:
            notes.append(f"Re-evaluation failed: {message.error}")
        self._show_status("\n".join(notes))
        self.query_one("#report").display = message.report is not None
        if message.report is not None:
            self._draw_report(message.report)
        watched = self.state.phase
        if watched is not None and watched != message.phase:  # the phase moved on while the report was read
            self._reread(message.run)

    def _reread(self, root: Path) -> None:
        self._read_report(root, self._error_since)

    # --- following the run's phase ------------------------------------------------------------

    @work(
        thread=True,
        exit_on_error=False,
        exclusive=True,
        group="watch-run",
        description="Watch the run's phase",
    )
    def _watch_state(self, root: Path) -> None:
        """Post the run's state whenever its phase (or worker pid) changes, until cancelled."""
        worker = get_current_worker()
        path = root / "state.json"
        stamp: tuple[int, int] | None = None
        seen: tuple[Any, Any] | None = None
        while not worker.is_cancelled:
            try:
                info = os.stat(path)
                now = (info.st_mtime_ns, info.st_size)
            except OSError:
                now = None
            # An active phase is re-read every time: only that shows a worker that died silently.
            if now != stamp or (seen is not None and seen[0] in ACTIVE_PHASES):
                stamp = now
                state = read_state(path) if now is not None else {}
                key = (state.get("phase"), state.get("pid"))
                if key != seen:
                    seen = key
                    self.post_message(RunStateRead(root, RunStatus.of(state)))
            time.sleep(STATE_POLL_S)

    @on(RunStateRead)
    def _state_read(self, message: RunStateRead) -> None:
        if message.run != self.run_root:
            return
        root, state = message.run, message.state
        before, self.state = self.state.phase, state
        phase = state.phase
        self._draw_button()
        ended = False
        started = self._started.get(root)
        if started is not None and phase not in ACTIVE_PHASES and state.pid == started[0]:
            del self._started[root]  # the re-evaluation started here has ended
            self._error_since, ended = started[1], True
            self._evaluation_ended(root, state)
        if phase != before:
            self.post_message(RunPhaseChanged(root, phase))  # the App follows this run's phase
            self._list_runs(Path(self.tuner.runs_dir))  # the run picker shows phases
        if phase != self._report_phase or ended:
            self._reread(root)

    def _evaluation_ended(self, root: Path, state: RunStatus) -> None:
        phase = state.phase
        if phase == "completed":
            self.notify(f"Re-evaluated {root.name}: {state.verdict or '?'}.", markup=False)
        elif phase == "stopped":
            self.notify(f"Re-evaluation of {root.name} stopped; its report is unchanged.", markup=False)
        else:
            self.notify(
                f"Re-evaluation of {root.name} ended '{phase}'; the page says why.",
                title="Re-evaluation failed",
                severity="error",
                timeout=10,
                markup=False,
            )

    def _show_status(self, text: str) -> None:
        status = self.query_one("#report-status", Static)
        status.update(text)
        status.display = bool(text)

    # --- drawing ---------------------------------------------------------------------------------

    def _draw_report(self, report: ReportView) -> None:
        self.query_one("#verdict", Static).update(verdict_text(report))
        table = self.query_one("#objectives", DataTable)
        table.clear(columns=True)
        table.add_columns(*OBJECTIVE_COLUMNS)
        for o in report.objectives:
            table.add_row(*o.cells(), result_text(o.passed))
        self._show_table(table, bool(report.objectives))
        self._draw_metrics(report)
        self._draw_samples(report)
        self.query_one("#bias", Static).update(bias_text(report))

    def _draw_metrics(self, report: ReportView) -> None:
        table = self.query_one("#metrics", DataTable)
        table.clear(columns=True)
        table.add_columns("metric", *report.models)
        for name, values in report.metrics:
            table.add_row(name, *values)
        ctable = self.query_one("#confusion", DataTable)
        title = self.query_one("#confusion-title", Static)
        ctable.clear(columns=True)
        confusion = report.confusion
        if confusion is not None:
            ctable.add_columns("reference \\ predicted", *confusion.labels)
            for row in confusion_cells(confusion):
                ctable.add_row(*row)
            title.update("Confusion matrix (tuned; rows = reference, columns = prediction)")
        ctable.display = title.display = confusion is not None

    def _draw_samples(self, report: ReportView) -> None:
        shown = report.shown
        table = self.query_one("#samples", DataTable)
        table.clear(columns=True)
        table.add_columns(*shown.columns)
        for row in shown.rows:
            table.add_row(*(cut(c, CELL_CHARS) for c in row))
        self._show_table(table, bool(shown.rows))

        ranked = report.ranked
        table = self.query_one("#best-worst", DataTable)
        table.clear(columns=True)
        table.add_columns("", *ranked.columns)
        for kind, row in zip(ranked.kinds, ranked.rows, strict=True):
            style = "green" if kind == "best" else "red"
            table.add_row(Text(kind, style), *(cut(c, CELL_CHARS) for c in row))
        self._show_table(table, bool(ranked.rows))

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

    @property
    def evaluating(self) -> bool:
        """The shown run is being (re-)evaluated, or a re-evaluation of it is starting."""
        return self.starting or self.state.phase == "evaluating"

    def _draw_button(self) -> None:
        button = self.query_one("#reevaluate", Button)
        button.disabled = self.starting or self.state.phase in ACTIVE_PHASES

    @on(Button.Pressed, "#reevaluate")
    def _completed_run(self) -> Path | None:
        root = self.run_root
        if root is None or self.state.phase != "completed":
            self.notify("Choose a completed run first.", severity="warning")
            return None
        return root

    def action_try_it(self) -> None:
        """Open the Try it panel on the chosen run (its models load in a separate process)."""
        root = self._completed_run()
        if root is not None:
            from tuner_tui.screens.try_it import TryItScreen

            self.app.push_screen(TryItScreen(root))

    def action_monitor(self) -> None:
        """Open the Monitor view of the chosen run's server."""
        root = self._completed_run()
        if root is not None:
            from tuner_tui.screens.monitor import MonitorScreen

            self.app.push_screen(MonitorScreen(root))

    def action_reevaluate(self) -> None:
        """Evaluate the chosen run again in a detached process; the report refreshes when it ends."""
        root = self.run_root
        if root is None:
            self.notify("No run chosen.", severity="warning")
            return
        phase = self.state.phase
        if self.starting or phase in ACTIVE_PHASES:
            self.notify(
                f"{root.name} is {phase or 'starting'}; this page refreshes when it ends.", markup=False
            )
            return
        self.starting = True
        self._draw_button()
        self._show_status(f"Starting the re-evaluation of {root.name}…")
        self._reevaluating = root
        self._start_reevaluation(root)

    @work(
        thread=True,
        exit_on_error=False,
        exclusive=True,
        group="reevaluate",
        description="Start a re-evaluation",
    )
    def _start_reevaluation(self, root: Path) -> None:
        # The launcher only: the evaluation (torch, both models) runs in the process it starts.
        from tuner_tui.runs.launcher import start_evaluation

        started = start_evaluation(root, by="tuner (TUI)")
        self.post_message(ReevaluationStarted(root, started.pid, started.events_offset))

    def worker_failed(self, worker: Worker[Any], message: str) -> None:
        # A run that cannot be evaluated, or an unreadable run directory: the wizard stays usable.
        if worker.name == "_start_reevaluation" and self._reevaluating is not None:
            self._reevaluation_not_started(ReevaluationNotStarted(self._reevaluating, message))
        else:
            super().worker_failed(worker, message)

    @on(ReevaluationStarted)
    def _reevaluation_started(self, message: ReevaluationStarted) -> None:
        self.starting = False
        self._started[message.run] = (message.pid, message.events_offset)
        if message.run == self.run_root:
            self._error_since = None  # an earlier failure is no longer the news
        tuner = self.tuner
        if tuner.run_dir != message.run and tuner.run_phase not in ACTIVE_PHASES:
            tuner.run_dir = message.run  # followed like a run: the dashboard, stop, the sidebar
        self.post_message(RunPhaseChanged(message.run, "evaluating"))  # what the launcher wrote
        self.notify(
            f"Re-evaluating {message.run.name} in a detached process (pid {message.pid}); quitting "
            "tuner leaves it running.",
            markup=False,
        )
        if message.run == self.run_root:
            self._draw_button()
            self._reread(message.run)  # the status says it is evaluating

    @on(ReevaluationNotStarted)
    def _reevaluation_not_started(self, message: ReevaluationNotStarted) -> None:
        self.starting = False
        self.notify(
            message.message, title="Re-evaluation not started", severity="error", timeout=10, markup=False
        )
        if message.run == self.run_root:
            self._draw_button()
            self._show_status(f"Re-evaluation not started: {message.message}")

    # --- the recipe values below the report ----------------------------------------------------------

    def show_draft(self, draft: Draft | None) -> None:
        if not self.show_form(draft, "#settings"):
            return
        assert draft is not None
        for form in self.query(RecipeForm):
            form.show(draft.recipe, draft.problems)
        edited = {*EVALUATION_KEYS, *BIAS_KEYS}
        rest = tuple(p for p in draft.problems if p.path not in edited)
        self.query_one("#problems", Static).update(self._problems_text(rest))


def _last_error(root: Path, since: int) -> str:
    """What the last `error` event from byte `since` of the run's events.jsonl said."""
    from tuner_tui.runs.events import iter_events

    errors = [e for e in iter_events(root / "events.jsonl", since) if e.get("type") == "error"]
    if not errors:
        return f"no error was recorded; see {root / 'worker.log'}"
    last = errors[-1]
    return f"{last.get('message')} {last.get('hint') or ''}".strip()
