"""Step 2, Data: pick the data, check its format and mapping, inspect it, and set up cleaning.

Loading, inspecting and previewing the cleaning run in thread workers (group `data`), which import
the data engine (datasets, pyarrow) only when they run, so the wizard starts without it. Workers
report by posting past-tense messages tagged with a job number; Cancel bumps the number, so
whatever a cancelled worker still posts is ignored, and the worker itself stops at its next stage.

The report counts lengths as `tuner inspect --recipe` does: with the recipe model's tokenizer and
chat template, and the share of rows over training.max_length. The worker loads the tokenizer
(transformers is imported there, never at start-up) and hands it back, so a re-inspection with the
same model reuses it; when it cannot load, lengths are whitespace words and one line says why.
What is on screen always belongs to the path in the input: a new path clears the old report at
once, and a new model or max_length inspects again (token counts depend on them).
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, DataTable, Input, Label, LoadingIndicator, Select, Static
from textual.worker import Worker, get_current_worker

from tuner_tui.data.formats import DEFAULT_FIELDS  # stdlib only: safe at start-up
from tuner_tui.errors import TunerError
from tuner_tui.recipe import DATA_FORMATS, field_help
from tuner_tui.screens.messages import DataInspected
from tuner_tui.screens.step import StepScreen
from tuner_tui.views import data_report as present
from tuner_tui.widgets.cleaning_list import CleaningList, CleaningStepsEdited
from tuner_tui.widgets.histogram import Histogram
from tuner_tui.widgets.path_input import PathSuggester
from tuner_tui.widgets.recipe_form import EchoGuard, RecipeForm

if TYPE_CHECKING:
    from tuner_tui.data.clean import StepReport
    from tuner_tui.data.formats import Detection
    from tuner_tui.data.load import LoadInfo
    from tuner_tui.data.report import DataReport
    from tuner_tui.recipe import ModelConfig
    from tuner_tui.views.draft import Draft

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
    """The first rows as read (the preview table's cells)."""
    detected: Detection | None
    """Auto-detection on the raw columns: format, fields, evidence (None: not recognised)."""
    load: LoadInfo
    """How the file was read (encoding, skipped rows, notes): the report shows it."""


@dataclass
class TokenizerLoaded(Message):
    """The worker tried to load the recipe model's tokenizer, for the model `key` names."""

    job: int
    key: TokenizerKey
    tokenizer: Any
    """The tokenizer, or None: lengths are then whitespace words."""
    note: str
    """Why lengths are words (no model, the tokenizer did not load); empty with a tokenizer."""


@dataclass
class DatasetProfiled(Message):
    """The DataReport of the loaded data."""

    job: int
    report: DataReport


@dataclass
class DataFailed(Message):
    """Loading, inspecting or cleaning failed; `message` says why and what to do."""

    job: int
    stage: str
    message: str


@dataclass
class CleaningPreviewed(Message):
    """The cleaning steps ran on the loaded data: one StepReport per step."""

    job: int
    steps: list[StepReport]
    rows_before: int
    rows_after: int


def cell(value: Any) -> str:
    """A preview cell: the value on one line, cut to CELL_CHARS."""
    text = " ".join(str(value).split()) if value is not None else "∅"
    return text if len(text) <= CELL_CHARS else text[: CELL_CHARS - 1] + "…"


SPLIT_FIELDS = ("data.validation_fraction", "data.test_fraction")

TokenizerKey = tuple[str, str, str, bool, str]
"""What the tokenizer and its chat template depend on: the model's name_or_path, revision,
chat_template and trust_remote_code, and the base folder a relative model path starts from."""


def tokenizer_key(model: ModelConfig, base_dir: Path) -> TokenizerKey:
    return (
        model.name_or_path.strip(),
        model.revision,
        model.chat_template,
        model.trust_remote_code,
        str(base_dir),
    )


_TOKENIZER_LOCK = threading.Lock()
"""Held while a worker loads or uses a tokenizer. A cancelled worker's thread runs on to the end of
its stage, and neither two threads importing transformers at once (it can be seen half-initialised)
nor two encoding with one fast tokenizer ("Already borrowed") is safe."""


def tokenizer_in_use(tokenizer: Any) -> contextlib.AbstractContextManager[Any]:
    """`_TOKENIZER_LOCK` while `tokenizer` is used; nothing to hold for whitespace words."""
    return _TOKENIZER_LOCK if tokenizer is not None else contextlib.nullcontext()


def load_counting_tokenizer(model: ModelConfig, base_dir: Path) -> tuple[Any, str]:
    """(the model's tokenizer, "") or (None, why lengths are counted in words instead). Blocking:
    imports transformers, and may read the hub; call it in a worker, holding `_TOKENIZER_LOCK`."""
    name = model.name_or_path.strip()
    if not name:
        return None, "Lengths are whitespace words: no model chosen yet (step 3, Model)."
    try:
        from tuner_tui.modeling.loading import load_tokenizer
        from tuner_tui.modeling.ml_import import ensure_ml_imported

        ensure_ml_imported()  # the Model step's workers may be importing transformers right now
        tokenizer = load_tokenizer(model, base_dir)
    except Exception as error:  # noqa: BLE001 - any failure means "count words", said on screen
        reason = " ".join(str(error).split())  # hub errors span lines: the note is one
        return None, f"Lengths are whitespace words: the tokenizer of '{name}' did not load. {reason}"
    # The report names the tokenizer: the recipe's name, not the folder it resolved to.
    tokenizer.name_or_path = name
    return tokenizer, ""


class DataScreen(StepScreen):
    STEP = "data"
    STEP_TITLE = "Data"
    JUMP_KEY = "2"
    EDITS = {"data.path": "data-path", "data.format": "data-format"}
    SECTIONS = ("data",)
    INTRO = (
        "Point at a data file or folder (relative to the recipe), inspect it (Enter), check the "
        "detected format and field mapping, and clean it with named, counted steps."
    )
    CSS_PATH = ["step.tcss", "data.tcss"]

    def __init__(self) -> None:
        super().__init__()
        self._job = 0
        self._data_stage = "load"
        """What the data worker is doing ('load', 'inspect'): its failure is worded after it."""
        """Number of the current worker job; messages from older jobs are stale."""
        self._dataset: Any = None
        self._load_info: LoadInfo | None = None
        """How `_dataset` was read; its report says so."""
        self._loaded: tuple[str, Path] | None = None
        """(path, base folder) of the loaded dataset."""
        self._columns: list[str] = []
        self._detected: Detection | None = None
        self._profiled_for: tuple[Any, ...] | None = None
        """What the shown report was computed with: format, fields, tokenizer key, max_length."""
        self._mapping_key: tuple[Any, ...] | None = None
        self._shown_columns: dict[str, Any] = {}
        """role -> the column its Select shows, to tell edits from the Select's own mount echo."""
        self._report_path: str | None = None
        """The path whose data (preview, report) is on screen or being read; None: nothing shown."""
        self._path_value: str | None = None
        """What the path input holds as far as the draft knows (drawn from it or sent to it)."""
        self._guard = EchoGuard()
        """Keeps the draft's lagging echoes of typed paths out of the path input."""
        self._tokenizer: tuple[TokenizerKey, Any, str] | None = None
        """(key, tokenizer or None, note) from the last load, reused while the model is the same."""

    # --- layout ------------------------------------------------------------------------------

    def compose_content(self) -> ComposeResult:
        draft = self.tuner.draft
        data = draft.recipe.data if draft else None
        self._path_value = data.path if data else ""
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
                    suggester=PathSuggester(lambda: self._base_dir()),
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
            yield RecipeForm(SPLIT_FIELDS, title="Held-out splits", id="split-form")
            yield Static("Preview", classes="section-title", id="preview-title")
            yield DataTable(id="preview", zebra_stripes=True, cursor_type="row")
            yield Static("Report", classes="section-title", id="report-title")
            yield Static("", id="report-overview")
            yield Static("", id="tokenizer-note", markup=False)
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
        self.query_one("#tokenizer-note").display = False
        for widget in ("#preview-title", "#preview", "#report-title", "#histograms"):
            self.query_one(widget).display = False

    def on_screen_resume(self) -> None:
        super().on_screen_resume()
        self._reprofile_if_stale()  # the model or max_length may have changed on another step

    # --- draft -> widgets ----------------------------------------------------------------------

    def show_draft(self, draft: Draft | None) -> None:
        if not self.show_form(draft, "#form"):
            return
        assert draft is not None
        data = draft.recipe.data
        with self.prevent(Input.Changed, Select.Changed):
            path = self.query_one("#data-path", Input)
            if self._guard.may_write("data.path", data.path, path) and path.value != data.path:
                path.value = data.path
                self._path_value = data.path
            fmt = self.query_one("#data-format", Select)
            if data.format in DATA_FORMATS and fmt.value != data.format:
                fmt.value = data.format
        self.query_one("#split-form", RecipeForm).show(draft.recipe, draft.problems)
        self.call_later(self.query_one(CleaningList).set_steps, data.cleaning)
        self._show_mapping()
        self.query_one("#problems", Static).update(self._problems_text(draft.problems))
        self._forget_other_path(path.value)
        if self.is_current:
            self._reprofile_if_stale()

    def _reprofile_if_stale(self) -> None:
        """A new format, mapping, model or max_length changes what the report counts: inspect
        again (no reload)."""
        if self._dataset is not None and self._profiled_for not in (None, self._profile_key()):
            self._start_profile(reload=False)

    def _profile_key(self) -> tuple[Any, ...]:
        draft = self.tuner.draft
        if draft is None:
            return ()
        model_key = tokenizer_key(draft.recipe.model, draft.base_dir)
        return (self._format_key(), model_key, draft.recipe.training.max_length)

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
        return self._detected.format if self._detected else None

    def _show_mapping(self) -> None:
        """One role -> column Select per role of the format; only once the columns are known."""
        draft = self.tuner.draft
        fmt = self._effective_format()
        detected = self._detected.fields if self._detected else {}
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
            column = fields.get(role) or detected.get(role) or default
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

    def _base_dir(self) -> Path:
        draft = self.tuner.draft
        return draft.base_dir if draft is not None else Path.cwd()

    def _edit(self, changes: dict[str, Any]) -> None:
        from tuner_tui.app import DraftEdited  # the app imports this module: import when used

        self.post_message(DraftEdited(changes))

    @on(Input.Changed, "#data-path")
    def _path_typed(self, event: Input.Changed) -> None:
        if self.tuner.draft is None or event.value == self._path_value:
            return  # the value it was drawn with (the input's own mount echo): not an edit
        # Every change is sent, even one equal to the (lagging) draft: a burst may come back to it.
        self._path_value = event.value
        self._guard.sent("data.path", event.value)
        self._edit({"data.path": event.value})
        self._forget_other_path(event.value)

    def _forget_other_path(self, path: str) -> None:
        """Clear what was read from another path, at once: a report never sits under a new path."""
        if self._report_path is None or path.strip() == self._report_path:
            return
        self._job += 1  # whatever the old path's workers still post is now stale
        self.workers.cancel_group(self, "data")
        self._set_busy(None)
        self._dataset, self._loaded, self._report_path = None, None, None
        self._columns, self._detected, self._profiled_for = [], None, None
        self._show_mapping()
        self.query_one("#detected", Static).update("")
        self.query_one("#preview", DataTable).clear(columns=True)
        for widget in ("#preview-title", "#preview", "#report-title", "#histograms", "#tokenizer-note"):
            self.query_one(widget).display = False
        for line in ("#report-overview", "#report-quality", "#cleaning-status", "#cleaning-result"):
            self.query_one(line, Static).update("")
        self._say("#data-error", "")
        self.query_one("#data-status", Static).update("Not inspected yet: Enter inspects this path.")
        self.query_one("#busy-row").display = True

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
        if role not in self._shown_columns or not event.select.is_attached:
            return  # from a mapping redrawn since (another format): no longer what is shown
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
        tokenizer = self._tokenizer[1] if self._tokenizer else None  # length_filter counts tokens
        self._clean(self._job, self._dataset, list(data.cleaning), data.format, dict(data.fields), tokenizer)

    # --- starting work ---------------------------------------------------------------------------

    def _start_profile(self, *, reload: bool) -> None:
        draft = self.tuner.draft
        if draft is None:
            return
        path = self.query_one("#data-path", Input).value.strip()
        if not path:
            self._say("#data-error", "Set a data path first.")
            return
        base = draft.base_dir
        if reload or self._loaded != (path, base):
            self._dataset = None
        self._job += 1
        self._report_path = path
        self._profiled_for = self._profile_key()
        self._say("#data-error", "")
        self._set_busy("Loading…" if self._dataset is None else "Inspecting…")
        recipe = draft.recipe
        self._profile_dataset(
            self._job,
            path,
            base,
            self._dataset,
            self._load_info,
            recipe.data.format,
            dict(recipe.data.fields),
            recipe.model,
            recipe.training.max_length,
            self._tokenizer,
        )

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

    @work(
        thread=True,
        exit_on_error=False,
        exclusive=True,
        group="data",
        description="Load and inspect the data",
    )
    def _profile_dataset(
        self,
        job: int,
        path: str,
        base: Path,
        dataset: Any,
        load: LoadInfo | None,
        fmt: str,
        fields: dict[str, str],
        model: ModelConfig,
        max_length: int,
        loaded: tuple[TokenizerKey, Any, str] | None,
    ) -> None:
        worker = get_current_worker()
        self._data_stage = "load"
        from tuner_tui.data.formats import detect_format
        from tuner_tui.data.load import load_data
        from tuner_tui.data.report import inspect_dataset
        from tuner_tui.recipe import DataConfig

        if dataset is None:
            self.post_message(DataStageReached(job, f"Loading {path}…"))
            dataset, load = load_data(path, base)
            load = dataclasses.replace(load, source=path)  # as the recipe says it, relative or not
            if worker.is_cancelled:
                return
            preview = dataset.select(range(min(PREVIEW_ROWS, len(dataset)))).to_list()
            try:
                detected: Detection | None = detect_format(dataset.column_names, preview[:20])
            except TunerError:
                detected = None
            self.post_message(
                DataLoaded(job, path, dataset, dataset.column_names, len(dataset), preview, detected, load)
            )
        self._data_stage = "inspect"
        key = tokenizer_key(model, base)
        if loaded is not None and loaded[0] == key:
            tokenizer = loaded[1]
        else:
            self.post_message(DataStageReached(job, f"Loading the tokenizer of {model.name_or_path}…"))
            with _TOKENIZER_LOCK:
                tokenizer, note = load_counting_tokenizer(model, base)
            self.post_message(TokenizerLoaded(job, key, tokenizer, note))
        self.post_message(DataStageReached(job, f"Inspecting {len(dataset):,} rows…"))
        with tokenizer_in_use(tokenizer):
            if worker.is_cancelled:
                return
            report = inspect_dataset(
                dataset,
                recipe_data=DataConfig(path=path, format=fmt, fields=fields),
                tokenizer=tokenizer,
                max_length=max_length,
                load=load,
            )
        if not worker.is_cancelled:
            self.post_message(DatasetProfiled(job, report))

    @work(
        thread=True,
        exit_on_error=False,
        exclusive=True,
        group="data",
        description="Preview the cleaning steps",
    )
    def _clean(
        self,
        job: int,
        dataset: Any,
        steps: list[dict[str, Any]],
        fmt: str,
        fields: dict[str, str],
        tokenizer: Any,
    ) -> None:
        worker = get_current_worker()
        from tuner_tui.data.clean import apply_cleaning, validate_step
        from tuner_tui.data.formats import resolve_format

        for i, step in enumerate(steps):
            validate_step(i, step)  # every step is checked before any runs, as in training
        sample = dataset.select(range(min(20, len(dataset)))).to_list()
        detection = resolve_format(fmt, fields, dataset.column_names, sample)
        rows_before = len(dataset)
        reports = []
        for i, step in enumerate(steps):
            self.post_message(DataStageReached(job, f"Cleaning: step {i + 1} of {len(steps)}, {step['op']}…"))
            with tokenizer_in_use(tokenizer):
                if worker.is_cancelled:
                    return
                dataset, (report,) = apply_cleaning(dataset, [step], detection, tokenizer=tokenizer)
            reports.append(report)
        if not worker.is_cancelled:
            self.post_message(CleaningPreviewed(job, reports, rows_before, len(dataset)))

    def worker_failed(self, worker: Worker[Any], message: str) -> None:
        # A bad file, a format that does not fit, a cleaning step that fails: said on the step.
        if worker.name == "_clean":
            self._failed(DataFailed(self._job, "clean", message))
        elif worker.name == "_profile_dataset":
            self._failed(DataFailed(self._job, self._data_stage, message))
        else:
            super().worker_failed(worker, message)

    # --- worker messages -------------------------------------------------------------------------

    @on(DataStageReached)
    def _stage_reached(self, message: DataStageReached) -> None:
        if message.job == self._job:
            self._set_busy(message.stage)

    @on(DataLoaded)
    def _data_loaded(self, message: DataLoaded) -> None:
        if message.job != self._job:
            return
        self._dataset, self._load_info = message.dataset, message.load
        self._loaded = (message.path, self._base_dir())
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
        self._reprofile_if_stale()  # the recipe (format, model, max_length) changed while it loaded

    def _show_detected(self) -> None:
        detected = self._detected
        text = (
            f"detected {detected.format}: {'; '.join(detected.evidence)}"
            if detected
            else "not recognised: choose a format and map its fields"
        )
        self.query_one("#detected", Static).update(text)

    @on(TokenizerLoaded)
    def _tokenizer_loaded(self, message: TokenizerLoaded) -> None:
        # Kept even from a stale job: it is the tokenizer of that model whatever the data.
        self._tokenizer = (message.key, message.tokenizer, message.note)

    @on(DatasetProfiled)
    def _profiled(self, message: DatasetProfiled) -> None:
        if message.job != self._job:
            return
        self._set_busy(None)
        if self._loaded is not None:
            self.post_message(DataInspected(self._loaded[0], ok=True))
        report = message.report
        self.query_one("#data-status", Static).update("")
        self.query_one("#report-title").display = True
        self.query_one("#histograms").display = True
        self.query_one("#report-overview", Static).update(
            Group(
                present.overview_table(report),
                present.fields_table(report),
                present.lengths_table(report),
                *filter(None, [present.truncation_line(report)]),
                *present.warning_lines(report),
            )
        )
        unit = present.length_unit(report)
        note = self._tokenizer[2] if self._tokenizer and unit == "words" else ""
        line = self.query_one("#tokenizer-note", Static)
        line.update(note)  # one line (see data.tcss), the whole of it on hover
        line.tooltip = note or None
        line.display = bool(note)
        self.query_one("#chars-histogram", Histogram).show(report.char_lengths, "characters per row")
        self.query_one("#tokens-histogram", Histogram).show(report.token_lengths, f"{unit} per row")
        self.query_one("#report-quality", Static).update(
            Group(
                *present.preference_tables(report),
                present.quality_table(report),
                *present.quality_examples(report),
                *filter(None, [present.labels_table(report, width=20)]),
            )
        )

    @on(DataFailed)
    def _failed(self, message: DataFailed) -> None:
        if message.job != self._job:
            return
        self._set_busy(None)
        draft = self.tuner.draft
        if draft is not None:
            self.post_message(DataInspected(draft.recipe.data.path, ok=False))
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
        self.query_one("#cleaning-result", Static).update(present.cleaning_table(message.steps))
