"""Step 2, Data: pick the data, check its format and mapping, inspect it, and set up cleaning.

Loading, inspecting and previewing the cleaning run in thread workers (group `data`), which import
the data engine (datasets, pyarrow) only when they run, so the wizard starts without it. Workers
report by posting past-tense messages tagged with a job number; Cancel bumps the number, so
whatever a cancelled worker still posts is ignored, and the worker itself stops at its next stage.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, DataTable, Input, Label, LoadingIndicator, Select, Static
from textual.worker import get_current_worker

from tuner_tui.data.formats import DEFAULT_FIELDS  # stdlib only: safe at start-up
from tuner_tui.errors import TunerError
from tuner_tui.recipe import DATA_FORMATS, field_help
from tuner_tui.screens.step import StepScreen
from tuner_tui.widgets.cleaning_list import CleaningList, CleaningStepsEdited
from tuner_tui.widgets.histogram import Histogram, bar
from tuner_tui.widgets.path_input import PathSuggester

if TYPE_CHECKING:
    from tuner_tui.app import Draft

PREVIEW_ROWS = 50
"""Rows loaded into the preview table; the rest stay on disk (memory-mapped)."""
CELL_CHARS = 48
"""A preview cell is cut to this many characters, on one line."""


# --- messages (posted by the workers, handled on the event loop) ------------------------------


@dataclass
class DataStageReached(Message):
    """A worker started a stage (loading, inspecting, cleaning step 2 of 3)."""

    job: int
    stage: str


@dataclass
class DataLoaded(Message):
    """The data was read: its columns, first rows and how it was loaded."""

    job: int
    path: str
    dataset: Any
    """The `datasets.Dataset` (kept for re-inspection and cleaning without reloading)."""
    columns: list[str]
    rows: int
    preview: list[dict[str, Any]]
    detected: dict[str, Any] | None
    """Auto-detection on the raw columns: format, fields, evidence (None: not recognised)."""
    load: dict[str, Any]


@dataclass
class DatasetProfiled(Message):
    """The DataReport of the loaded data, as JSON."""

    job: int
    report: dict[str, Any]


@dataclass
class DataFailed(Message):
    """Loading, inspecting or cleaning failed; `message` says why and what to do."""

    job: int
    stage: str
    message: str


@dataclass
class CleaningPreviewed(Message):
    """The cleaning steps ran on the loaded data: one StepReport (JSON) per step."""

    job: int
    steps: list[dict[str, Any]]
    rows_before: int
    rows_after: int


def data_base_dir(draft: Draft | None) -> Path:
    """The folder the recipe's relative paths start from: the recipe's, the demo's, or cwd."""
    from tuner_tui.app import DEMO_ORIGIN  # the app imports this module: import when used

    if draft is not None and draft.path is not None:
        return draft.path.parent
    if draft is not None and draft.origin == DEMO_ORIGIN:
        return Path(str(importlib.resources.files("tuner_tui.assets") / "demo"))
    return Path.cwd()


def cell(value: Any) -> str:
    """A preview cell: the value on one line, cut to CELL_CHARS."""
    text = " ".join(str(value).split()) if value is not None else "∅"
    return text if len(text) <= CELL_CHARS else text[: CELL_CHARS - 1] + "…"


class DataScreen(StepScreen):
    STEP = "data"
    STEP_TITLE = "Data"
    JUMP_KEY = "2"
    SECTIONS = ("data",)
    INTRO = (
        "Point at a data file or folder (relative to the recipe), inspect it (Enter), check the "
        "detected format and field mapping, and clean it with named, counted steps."
    )
    CSS_PATH = ["step.tcss", "data.tcss"]

    def __init__(self) -> None:
        super().__init__()
        self._job = 0
        """Number of the current worker job; messages from older jobs are stale."""
        self._dataset: Any = None
        self._loaded: tuple[str, Path] | None = None
        """(path, base folder) of the loaded dataset."""
        self._columns: list[str] = []
        self._detected: dict[str, Any] | None = None
        self._profiled_for: tuple[str, tuple[tuple[str, str], ...]] | None = None
        """(format, fields) the shown report was computed with."""
        self._mapping_key: tuple[Any, ...] | None = None
        self._shown_columns: dict[str, Any] = {}
        """role -> the column its Select shows, to tell edits from the Select's own mount echo."""

    # --- layout ------------------------------------------------------------------------------

    def compose_content(self) -> ComposeResult:
        draft = self.tuner.draft
        data = draft.recipe.data if draft else None
        yield Static(self.STEP_TITLE, classes="step-title")
        yield Static(self.INTRO, classes="step-intro", markup=False)
        yield Static("", id="draft-note", markup=False)
        yield Static("", id="problems")
        with Vertical(id="form"):
            with Horizontal(id="path-row"):
                yield Label("path", classes="field-label")
                yield Input(
                    data.path if data else "",
                    id="data-path",
                    compact=True,
                    placeholder="data/train.jsonl",
                    tooltip=field_help("data", "path") + " Tab completes file names; Enter inspects.",
                    suggester=PathSuggester(lambda: data_base_dir(self.tuner.draft)),
                )
                yield Button("Inspect", id="inspect", compact=True, variant="primary")
                yield Button("Cancel", id="cancel", compact=True, variant="error", disabled=True)
            with Horizontal(id="busy-row"):
                yield LoadingIndicator(id="busy")
                yield Static("", id="data-status", markup=False)
            yield Static("", id="data-error", markup=False)
            with Horizontal(id="format-row"):
                yield Label("format", classes="field-label")
                yield Select(
                    [(f, f) for f in DATA_FORMATS],
                    value=data.format if data and data.format in DATA_FORMATS else Select.NULL,
                    allow_blank=False,
                    id="data-format",
                    compact=True,
                    tooltip=field_help("data", "format"),
                )
                yield Static("", id="detected", markup=False)
            yield Vertical(id="mapping")
            yield Static("Preview", classes="section-title", id="preview-title")
            yield DataTable(id="preview", zebra_stripes=True, cursor_type="row")
            yield Static("Report", classes="section-title", id="report-title")
            yield Static("", id="report-overview")
            with Horizontal(id="histograms"):
                yield Histogram("characters", id="chars-histogram")
                yield Histogram("words", id="tokens-histogram")
            yield Static("", id="report-quality")
            yield Static("Cleaning", classes="section-title")
            yield CleaningList(data.cleaning if data else [], id="cleaning")
            with Horizontal(id="cleaning-bar"):
                yield Button("Run cleaning", id="run-cleaning", compact=True, variant="primary")
                yield Static("", id="cleaning-status", markup=False)
            yield Static("", id="cleaning-result")

    def on_mount(self) -> None:
        self.query_one("#busy-row").display = False
        self.query_one("#data-error").display = False
        for widget in ("#preview-title", "#preview", "#report-title", "#histograms"):
            self.query_one(widget).display = False

    # --- draft -> widgets ----------------------------------------------------------------------

    def show_draft(self, draft: Draft | None) -> None:
        if not self.show_form(draft, "#form"):
            return
        assert draft is not None
        data = draft.recipe.data
        with self.prevent(Input.Changed, Select.Changed):
            path = self.query_one("#data-path", Input)
            if path.value != data.path:
                path.value = data.path
            fmt = self.query_one("#data-format", Select)
            if data.format in DATA_FORMATS and fmt.value != data.format:
                fmt.value = data.format
        self.call_later(self.query_one(CleaningList).set_steps, data.cleaning)
        self._show_mapping()
        self.query_one("#problems", Static).update(self._problems_text(draft.problems))
        # A new format or mapping changes what the report counts: inspect again (no reload).
        if self._dataset is not None and self._profiled_for not in (None, self._format_key()):
            self._start_profile(reload=False)

    def _format_key(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        data = self.tuner.draft.recipe.data if self.tuner.draft else None
        if data is None:
            return ("auto", ())
        return (data.format, tuple(sorted(data.fields.items())))

    def _effective_format(self) -> str | None:
        draft = self.tuner.draft
        if draft is None:
            return None
        if draft.recipe.data.format != "auto":
            return draft.recipe.data.format
        return self._detected["format"] if self._detected else None

    def _show_mapping(self) -> None:
        """One role -> column Select per role of the format; only once the columns are known."""
        draft = self.tuner.draft
        fmt = self._effective_format()
        detected = self._detected or {}
        key = (fmt, tuple(self._columns), self._format_key())
        if key == self._mapping_key or draft is None:
            return
        self._mapping_key = key
        box = self.query_one("#mapping", Vertical)
        box.remove_children()
        if not self._columns or fmt is None or fmt not in DEFAULT_FIELDS:
            return
        fields = draft.recipe.data.fields
        self._shown_columns = {}
        rows = []
        for role, default in DEFAULT_FIELDS[fmt].items():
            # The recipe's mapping, else what detection found, else the format's default name.
            column = fields.get(role) or (detected.get("fields") or {}).get(role) or default
            self._shown_columns[role] = column
            options = [(c, c) for c in self._columns]
            if column not in self._columns:
                options.insert(0, (f"{column} (no such column)", column))
            rows.append(
                Horizontal(
                    Label(role, classes="field-label"),
                    Select(
                        options,
                        value=column,
                        allow_blank=True,
                        prompt="(not mapped)",
                        compact=True,
                        name=role,
                        classes="role-column",
                        tooltip=f"The column that holds '{role}'. " + field_help("data", "fields"),
                    ),
                    classes="mapping-row",
                )
            )
        box.mount_all(rows)

    # --- widgets -> DraftEdited ----------------------------------------------------------------

    def _edit(self, changes: dict[str, Any]) -> None:
        from tuner_tui.app import DraftEdited  # the app imports this module: import when used

        self.post_message(DraftEdited(changes))

    @on(Input.Changed, "#data-path")
    def _path_typed(self, event: Input.Changed) -> None:
        draft = self.tuner.draft
        if draft is not None and event.value != draft.recipe.data.path:
            self._edit({"data.path": event.value})

    @on(Input.Submitted, "#data-path")
    @on(Button.Pressed, "#inspect")
    def _inspect(self) -> None:
        self._start_profile(reload=True)

    @on(Select.Changed, "#data-format")
    def _format_chosen(self, event: Select.Changed) -> None:
        draft = self.tuner.draft
        if draft is None or event.value == Select.NULL or event.value == draft.recipe.data.format:
            return
        # Keep only the mapped roles the new format has; the rest would be noise in the recipe.
        roles = DEFAULT_FIELDS.get(str(event.value), {})
        fields = {r: c for r, c in draft.recipe.data.fields.items() if r in roles}
        self._edit({"data.format": event.value, "data.fields": fields})

    @on(Select.Changed, ".role-column")
    def _column_chosen(self, event: Select.Changed) -> None:
        event.stop()
        draft = self.tuner.draft
        role = event.select.name
        if draft is None or role is None:
            return
        fields = dict(draft.recipe.data.fields)
        if event.value == self._shown_columns.get(role):
            return  # a Select reports its first value when mounted: not an edit
        self._shown_columns[role] = event.value
        if event.value == Select.NULL:
            fields.pop(role, None)
        else:
            fields[role] = str(event.value)
        if fields != draft.recipe.data.fields:
            self._edit({"data.fields": fields})

    @on(CleaningStepsEdited, "#cleaning")
    def _cleaning_edited(self, event: CleaningStepsEdited) -> None:
        draft = self.tuner.draft
        if draft is not None and event.steps != draft.recipe.data.cleaning:
            self._edit({"data.cleaning": event.steps})

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self._job += 1  # whatever the cancelled workers still post is now stale
        self.workers.cancel_group(self, "data")
        self._set_busy(None)
        self.query_one("#data-status", Static).update("Cancelled.")
        self.query_one("#busy-row").display = True
        self.query_one("#busy", LoadingIndicator).display = False

    @on(Button.Pressed, "#run-cleaning")
    def _run_cleaning(self) -> None:
        draft = self.tuner.draft
        if draft is None:
            return
        if self._dataset is None:
            self.query_one("#cleaning-status", Static).update("Inspect the data first (Enter in the path).")
            return
        if not draft.recipe.data.cleaning:
            self.query_one("#cleaning-status", Static).update("Add a step first.")
            return
        self._job += 1
        self._set_busy("Cleaning…")
        self.query_one("#cleaning-result", Static).update("")
        data = draft.recipe.data
        self._clean(self._job, self._dataset, list(data.cleaning), data.format, dict(data.fields))

    # --- starting work ---------------------------------------------------------------------------

    def _start_profile(self, *, reload: bool) -> None:
        draft = self.tuner.draft
        if draft is None:
            return
        path = self.query_one("#data-path", Input).value.strip()
        if not path:
            self._say("#data-error", "Set a data path first.")
            return
        base = data_base_dir(draft)
        if reload or self._loaded != (path, base):
            self._dataset = None
        self._job += 1
        self._profiled_for = self._format_key()
        self._say("#data-error", "")
        self._set_busy("Loading…" if self._dataset is None else "Inspecting…")
        data = draft.recipe.data
        self._profile_dataset(self._job, path, base, self._dataset, data.format, dict(data.fields))

    def _say(self, selector: str, content: Text | str) -> None:
        """Show `content` in a message line, hiding the line while it is empty."""
        line = self.query_one(selector, Static)
        line.update(content)
        line.display = bool(str(content))

    def _set_busy(self, stage: str | None) -> None:
        self.query_one("#busy-row").display = stage is not None
        self.query_one("#busy", LoadingIndicator).display = stage is not None
        self.query_one("#cancel", Button).disabled = stage is None
        if stage is not None:
            self.query_one("#data-status", Static).update(stage)

    # --- workers (threads: no widget access, only post_message) -----------------------------------

    @work(thread=True, exclusive=True, group="data", description="Load and inspect the data")
    def _profile_dataset(
        self, job: int, path: str, base: Path, dataset: Any, fmt: str, fields: dict[str, str]
    ) -> None:
        worker = get_current_worker()
        stage = "load"
        try:
            from tuner_tui.data.formats import detect_format
            from tuner_tui.data.load import load_data
            from tuner_tui.data.report import inspect_dataset
            from tuner_tui.recipe import DataConfig

            if dataset is None:
                self.post_message(DataStageReached(job, f"Loading {path}…"))
                dataset, info = load_data(path, base)
                load = info.to_json()
                if worker.is_cancelled:
                    return
                preview = dataset.select(range(min(PREVIEW_ROWS, len(dataset)))).to_list()
                try:
                    found = detect_format(dataset.column_names, preview[:20])
                    detected = {"format": found.format, "fields": found.fields, "evidence": found.evidence}
                except TunerError:
                    detected = None
                self.post_message(
                    DataLoaded(
                        job, path, dataset, dataset.column_names, len(dataset), preview, detected, load
                    )
                )
            stage = "inspect"
            self.post_message(DataStageReached(job, f"Inspecting {len(dataset):,} rows…"))
            report = inspect_dataset(dataset, recipe_data=DataConfig(path=path, format=fmt, fields=fields))
        except TunerError as error:
            if not worker.is_cancelled:
                self.post_message(DataFailed(job, stage, str(error)))
            return
        except Exception as error:  # noqa: BLE001 - a bad file must read as a message, never a traceback
            if not worker.is_cancelled:
                self.post_message(DataFailed(job, stage, f"{type(error).__name__}: {error}"))
            return
        if not worker.is_cancelled:
            self.post_message(DatasetProfiled(job, report.to_json()))

    @work(thread=True, exclusive=True, group="data", description="Preview the cleaning steps")
    def _clean(
        self, job: int, dataset: Any, steps: list[dict[str, Any]], fmt: str, fields: dict[str, str]
    ) -> None:
        worker = get_current_worker()
        try:
            from tuner_tui.data.clean import apply_cleaning, validate_step
            from tuner_tui.data.formats import resolve_format

            for i, step in enumerate(steps):
                validate_step(i, step)  # every step is checked before any runs, as in training
            sample = dataset.select(range(min(20, len(dataset)))).to_list()
            detection = resolve_format(fmt, fields, dataset.column_names, sample)
            rows_before = len(dataset)
            reports = []
            for i, step in enumerate(steps):
                if worker.is_cancelled:
                    return
                self.post_message(
                    DataStageReached(job, f"Cleaning: step {i + 1} of {len(steps)}, {step['op']}…")
                )
                dataset, (report,) = apply_cleaning(dataset, [step], detection)
                reports.append(report.to_json())
        except TunerError as error:
            if not worker.is_cancelled:
                self.post_message(DataFailed(job, "clean", str(error)))
            return
        except Exception as error:  # noqa: BLE001 - shown as a message, never a traceback
            if not worker.is_cancelled:
                self.post_message(DataFailed(job, "clean", f"{type(error).__name__}: {error}"))
            return
        if not worker.is_cancelled:
            self.post_message(CleaningPreviewed(job, reports, rows_before, len(dataset)))

    # --- worker messages -------------------------------------------------------------------------

    @on(DataStageReached)
    def _stage_reached(self, message: DataStageReached) -> None:
        if message.job == self._job:
            self._set_busy(message.stage)

    @on(DataLoaded)
    def _data_loaded(self, message: DataLoaded) -> None:
        if message.job != self._job:
            return
        self._dataset = message.dataset
        self._loaded = (message.path, data_base_dir(self.tuner.draft))
        self._columns = message.columns
        self._detected = message.detected
        self._mapping_key = None
        self._show_detected()
        self._show_mapping()
        table = self.query_one("#preview", DataTable)
        table.clear(columns=True)
        table.add_columns(*message.columns)
        table.add_rows([[cell(row.get(c)) for c in message.columns] for row in message.preview])
        shown = len(message.preview)
        title = self.query_one("#preview-title", Static)
        title.update(f"Preview: first {shown:,} of {message.rows:,} rows")
        for widget in ("#preview-title", "#preview"):
            self.query_one(widget).display = True

    def _show_detected(self) -> None:
        detected = self._detected
        text = (
            f"detected {detected['format']}: {'; '.join(detected['evidence'])}"
            if detected
            else "not recognised: choose a format and map its fields"
        )
        self.query_one("#detected", Static).update(text)

    @on(DatasetProfiled)
    def _profiled(self, message: DatasetProfiled) -> None:
        if message.job != self._job:
            return
        self._set_busy(None)
        report = message.report
        self.query_one("#data-status", Static).update("")
        self.query_one("#report-title").display = True
        self.query_one("#histograms").display = True
        self.query_one("#report-overview", Static).update(overview_table(report))
        self.query_one("#chars-histogram", Histogram).show(report["char_lengths"], "characters per row")
        words = (
            "words per row" if "whitespace" in report["token_lengths"].get("counted_with", "") else "tokens"
        )
        self.query_one("#tokens-histogram", Histogram).show(report["token_lengths"], words)
        self.query_one("#report-quality", Static).update(quality_table(report))

    @on(DataFailed)
    def _failed(self, message: DataFailed) -> None:
        if message.job != self._job:
            return
        self._set_busy(None)
        what = {"load": "Could not load the data", "inspect": "Could not inspect the data"}.get(
            message.stage, "Cleaning failed"
        )
        target = "#cleaning-status" if message.stage == "clean" else "#data-error"
        self._say(target, Text(f"{what}: {message.message}", style="red"))

    @on(CleaningPreviewed)
    def _cleaning_previewed(self, message: CleaningPreviewed) -> None:
        if message.job != self._job:
            return
        self._set_busy(None)
        self.query_one("#cleaning-status", Static).update(
            f"{message.rows_before:,} rows -> {message.rows_after:,} rows "
            f"({message.rows_before - message.rows_after:,} dropped). A preview: nothing was written; "
            "training runs the same steps."
        )
        self.query_one("#cleaning-result", Static).update(cleaning_table(message.steps))


# --- report rendering (pure functions of the report JSON) -------------------------------------


def overview_table(report: dict[str, Any]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column(overflow="fold")
    grid.add_row("format", report["format"] + ("" if report["trainable"] else " (not trainable yet)"))
    grid.add_row("evidence", "; ".join(report["evidence"]))
    grid.add_row("fields", ", ".join(f"{k} → {v}" for k, v in report["fields"].items()))
    grid.add_row("rows", f"{report['rows']:,}")
    grid.add_row("columns", ", ".join(report["columns"]))
    lengths = report["token_lengths"]
    if lengths.get("mean") is not None:
        grid.add_row("lengths", f"mean {lengths['mean']:,} ({lengths.get('counted_with', '')})")
    for warning in report["warnings"]:
        grid.add_row(Text("warning", style="yellow"), Text(warning, style="yellow"))
    return grid


def quality_table(report: dict[str, Any]) -> Table:
    """Duplicates, PII (counts by kind, masked examples) and labels with imbalance."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column(overflow="fold")
    dup = f"{report['exact_duplicates']:,} exact duplicate row(s)"
    if report["near_duplicate_rows"] is not None:
        dup += (
            f"; {report['near_duplicate_rows']:,} near-duplicate row(s) in "
            f"{report['near_duplicate_clusters']:,} cluster(s) "
            f"at Jaccard ≥ {report['near_duplicate_threshold']:g}"
        )
    grid.add_row("duplicates", dup)
    for example in report["exact_duplicate_examples"][:2]:
        grid.add_row("", Text(f"“{example}”", style="dim"))
    if report["pii"]:
        grid.add_row("PII", f"{report['pii_rows']:,} row(s) with PII")
        for kind, count in report["pii"].items():
            grid.add_row(f"  {kind}", f"{count:,}")
            for example in report["pii_examples"].get(kind, [])[:2]:
                grid.add_row("", Text(f"“{example}”", style="dim"))
    else:
        grid.add_row("PII", "none found")
    labels = report.get("labels")
    if labels:
        ratio = report.get("label_imbalance_ratio")
        grid.add_row(
            "labels",
            f"{len(labels)} distinct" + (f", imbalance {ratio:g}× (largest / smallest)" if ratio else ""),
        )
        top = max(labels.values())
        for label, count in labels.items():
            grid.add_row(f"  {label}", Text(f"{bar(count, top, 20):<21}{count:,}"))
    return grid


def cleaning_table(steps: list[dict[str, Any]]) -> Table:
    table = Table(box=None, padding=(0, 1), show_edge=False, header_style="bold")
    table.add_column("#", justify="right")
    table.add_column("step", no_wrap=True)
    table.add_column("before", justify="right")
    table.add_column("after", justify="right")
    table.add_column("changed", justify="right")
    table.add_column("examples", overflow="fold")
    for i, step in enumerate(steps, 1):
        lines = []
        for example in step.get("examples", [])[:2]:
            if "dropped" in example:
                lines.append(f"dropped: {example['dropped']}")
            elif "before" in example:
                lines.append(f"{example['before']} → {example['after']}")
        table.add_row(
            str(i),
            step["op"],
            f"{step['rows_before']:,}",
            f"{step['rows_after']:,}",
            f"{step.get('changed_rows', 0):,}",
            Text("\n".join(lines), style="dim"),
        )
    return table
