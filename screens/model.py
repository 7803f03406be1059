"""Step 3, Model & method: the base model and how it is tuned (adapter, full or freeze).

The screen edits the draft only through `DraftEdited`; after every draft change it redraws its
fields from the recipe (never the other way round), so the App stays the single owner. Model facts
and the memory estimate need transformers and torch: both run in thread workers, which import
transformers once through `ensure_ml_imported` (two threads importing it lazily at once see a
half-initialised module), and the estimate is debounced so typing a value does not build a meta
model per keystroke. A draft with a problem in a key the estimate reads gets no estimate. The
estimate is drawn by the presenter `tuner estimate` uses (`tuner_tui.views.estimate`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Button, DataTable, Input, Static
from textual.worker import Worker

from tuner_tui.modeling.catalog import (
    CATALOG,
    CATALOG_AS_OF,
    LOCAL_FOLDER,
    CatalogEntry,
    catalog_with,
    machine_models,
)
from tuner_tui.modeling.methods import METHOD_PARAMS
from tuner_tui.modeling.ml_import import ensure_ml_imported
from tuner_tui.recipe import PREFERENCE_KNOBS, PREFERENCE_LOSS_HELP, Recipe, field_help
from tuner_tui.screens.messages import DraftEdited
from tuner_tui.screens.step import StepScreen
from tuner_tui.screens.steps import MEMORY_KEYS
from tuner_tui.views.estimate import blocked_view, estimate_blocker, estimate_view
from tuner_tui.views.fields import SPECS, value_of
from tuner_tui.widgets.recipe_form import RecipeForm

if TYPE_CHECKING:
    from tuner_tui.modeling.describe import ModelFacts
    from tuner_tui.modeling.estimate import Estimate
    from tuner_tui.views.draft import Draft

ESTIMATE_DEBOUNCE_S = 0.6
"""Quiet time after the last relevant edit before the memory is re-estimated."""

# Method keys: the type, then every parameter some method reads (modeling/methods.py says which).
METHOD_FIELDS = ("method.type", *(f"method.{k}" for k in dict.fromkeys(sum(METHOD_PARAMS.values(), ()))))
TRAINING_FIELDS = MEMORY_KEYS
LOADING_FIELDS = (
    "model.revision",
    "model.trust_remote_code",
    "model.allow_pickle_weights",
    "model.chat_template",
)
RENDEZVOUS_FIELDS = ("training.master_addr", "training.master_port")  # shown with several nodes
PREFERENCE_FIELDS = tuple(k for k in SPECS if k.startswith("preference."))
"""The [preference] knobs, shown when [model] task = 'preference'."""
# Which knobs each loss reads (the rest stay hidden: a knob that does nothing misleads).


def format_params(n: int) -> str:
    for unit, scale in (("B", 10**9), ("M", 10**6), ("k", 10**3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)


# --- messages (posted by the workers) -------------------------------------------------------------


@dataclass
class ModelDescribed(Message):
    """describe_model finished for `key` (name, revision, task); `facts` is None when it failed."""

    key: tuple[str, str, str]
    facts: ModelFacts | None
    error: str = ""


@dataclass
class MemoryEstimated(Message):
    """estimate_memory finished for the settings in `key`; `estimate` is None when it failed.
    `nodes` is the recipe's nnodes (the estimate itself counts all processes)."""

    key: str
    estimate: Estimate | None
    error: str = ""
    nodes: int = 1


@dataclass
class CatalogScanned(Message):
    """The models on this machine were listed (hub cache and model folders, `machine_models`)."""

    entries: list[CatalogEntry]


class ModelScreen(StepScreen):
    STEP = "model"
    STEP_TITLE = "Model & method"
    JUMP_KEY = "3"
    SECTIONS = ("model", "method", "preference")
    ALSO_EDITS = TRAINING_FIELDS
    EDITS = {"model.name_or_path": "model-name-or-path"}
    INTRO = (
        "Choose a base model (a local folder or a hub id pinned to a revision) and a tuning "
        "method, with an estimate of the memory it needs before anything is loaded."
    )
    CSS_PATH = ["step.tcss", "model.tcss"]

    def __init__(self) -> None:
        super().__init__()
        self._facts_key: tuple[str, str, str] | None = None
        self._estimate_key: str | None = None
        self._estimate_timer: Timer | None = None
        self._scanned: tuple[Path, ...] | None = None
        self._entries: dict[str, CatalogEntry] = {entry.id: entry for entry in CATALOG}
        self.facts: ModelFacts | None = None
        """The facts shown (describe_model's result), None while unknown."""
        self.estimate: Estimate | None = None
        """The estimate shown (estimate_memory's result), None while there is none."""

    # --- layout -------------------------------------------------------------------------------

    def compose_content(self) -> ComposeResult:
        yield Static(self.STEP_TITLE, classes="step-title")
        yield Static(self.INTRO, classes="step-intro", markup=False)
        yield Static("", id="draft-note", markup=False)
        with Vertical(id="model-form"):
            yield Static("Base model: pick one (enter) or type a folder / hub id", classes="section")
            table: DataTable[str] = DataTable(id="catalog", cursor_type="row", zebra_stripes=True)
            table.tooltip = (
                "enter or click picks the model. First what is on this machine (the Hugging Face "
                "cache, model folders here and beside the recipe), then a dated list; 'offline' "
                "ones need no network"
            )
            yield table
            yield Static(
                f"Models in the cache and local folders first; then the catalogue as of {CATALOG_AS_OF} "
                "(check the hub for newer).",
                id="catalog-note",
                markup=False,
            )
            with Horizontal(classes="row"):
                yield Static("model", classes="label")
                yield Input(
                    id="model-name-or-path",
                    placeholder="local folder or hub id",
                    tooltip=field_help("model", "name_or_path"),
                )
                yield Button("Use", id="use-path", compact=True)
            yield Static("", id="facts")
            yield RecipeForm(LOADING_FIELDS, title="Loading the model", id="loading-form")
            yield RecipeForm(METHOD_FIELDS, title="Method", id="method-form")
            yield RecipeForm(PREFERENCE_FIELDS, title="Preference tuning", id="preference-form")
            yield Static("", id="loss-help", markup=False)
            yield RecipeForm(TRAINING_FIELDS, title="Training settings that drive memory", id="memory-form")
            yield Static("Memory estimate", classes="section", id="estimate-title")
            yield Static("", id="estimate")
        yield Static("", id="problems")

    def on_mount(self) -> None:
        table = self.query_one("#catalog", DataTable)
        table.add_columns("model", "date", "size", "context", "licence", "access", "good for")
        self._fill_catalog(CATALOG)

    def _fill_catalog(self, entries: Sequence[CatalogEntry]) -> None:
        table = self.query_one("#catalog", DataTable)
        current = None
        if table.row_count:  # keep the row the user is on where it is in the new list
            current = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        table.clear()
        self._entries = {entry.id: entry for entry in entries}
        for entry in entries:
            table.add_row(
                entry.id,
                entry.released or "-",
                entry.params or "-",
                f"{entry.context:,}" if entry.context else "-",
                entry.licence or "-",
                entry.access,
                entry.good_for,
                key=entry.id,
            )
        if current in self._entries:
            table.move_cursor(row=table.get_row_index(current), animate=False)

    # --- drawing from the draft ------------------------------------------------------------------

    def show_draft(self, draft: Draft | None) -> None:
        if not self.show_form(draft, "#model-form"):
            return
        assert draft is not None
        recipe = draft.recipe
        self._set_input("#model-name-or-path", recipe.model.name_or_path)
        for form in self.query(RecipeForm):
            form.show(recipe, draft.problems)
        used = METHOD_PARAMS.get(recipe.method.type, ())
        self.query_one("#method-form", RecipeForm).set_shown(("method.type", *(f"method.{k}" for k in used)))
        preference = self.query_one("#preference-form", RecipeForm)
        preference.display = recipe.model.task == "preference"
        knobs = PREFERENCE_KNOBS.get(recipe.preference.loss, ())
        preference.set_shown(("preference.loss", *(f"preference.{k}" for k in knobs)))
        loss_help = self.query_one("#loss-help", Static)
        loss_help.update(PREFERENCE_LOSS_HELP.get(recipe.preference.loss, ""))
        loss_help.display = preference.display
        several_nodes = recipe.training.nnodes > 1
        self.query_one("#memory-form", RecipeForm).set_shown(
            k for k in TRAINING_FIELDS if several_nodes or k not in RENDEZVOUS_FIELDS
        )
        self._scan_if_moved(draft.base_dir)
        self._highlight_catalog(recipe.model.name_or_path, draft.base_dir)
        in_forms = {*LOADING_FIELDS, *METHOD_FIELDS, *TRAINING_FIELDS, *PREFERENCE_FIELDS}
        rest = tuple(p for p in draft.problems if p.path not in in_forms)
        self.query_one("#problems", Static).update(self._problems_text(rest))
        self._describe_if_changed(draft)
        self._schedule_estimate(draft)

    def _set_input(self, selector: str, value: str) -> None:
        field = self.query_one(selector, Input)
        # Leave what the user is typing alone; it is committed on enter or when focus leaves.
        if not field.has_focus and field.value != value:
            field.value = value

    def _highlight_catalog(self, name_or_path: str, base_dir: Path) -> None:
        table = self.query_one("#catalog", DataTable)
        key = self._row_of(name_or_path, base_dir)
        if key is None or key not in table.rows:
            return
        row = table.get_row_index(key)
        if table.cursor_row != row and not table.has_focus:
            table.move_cursor(row=row, animate=False)

    def _row_of(self, name_or_path: str, base_dir: Path) -> str | None:
        """The picker row of the draft's model: its id, or the local folder it names however it
        is spelt ('model', './model' and an absolute path are one folder)."""
        if name_or_path in self._entries:
            return name_or_path
        if not name_or_path.strip():
            return None
        folder = (base_dir / Path(name_or_path).expanduser()).resolve()
        for entry in self._entries.values():
            if entry.found == LOCAL_FOLDER and (base_dir / entry.id).resolve() == folder:
                return entry.id
        return None

    # --- models on this machine (worker) -------------------------------------------------------------

    def _scan_if_moved(self, base_dir: Path) -> None:
        """List the machine's models again when the folders they are looked for in change."""
        folders = tuple(dict.fromkeys((Path.cwd(), base_dir)))
        if folders != self._scanned:
            self._scanned = folders
            self._scan_catalog(folders, base_dir)

    @work(
        thread=True,
        exit_on_error=False,
        exclusive=True,
        group="catalog",
        description="List the models on this machine",
    )
    def _scan_catalog(self, folders: tuple[Path, ...], base_dir: Path) -> None:
        self.post_message(CatalogScanned(machine_models(folders, base_dir)))

    @on(CatalogScanned)
    def _catalog_scanned(self, message: CatalogScanned) -> None:
        self._fill_catalog(catalog_with(message.entries))
        draft = self.tuner.draft
        if draft is not None:
            self._highlight_catalog(draft.recipe.model.name_or_path, draft.base_dir)
            if self.facts is not None:  # described before the scan ended: now it is known where it is
                self._draw_facts(self.facts, draft)

    # --- edits -> DraftEdited ----------------------------------------------------------------------

    def _edit(self, changes: dict[str, Any]) -> None:
        """Hand changes to the App, skipping values the draft already has (redraws echo back)."""
        draft = self.tuner.draft
        if draft is None:
            return
        changes = {k: v for k, v in changes.items() if value_of(draft.recipe, k) != v}
        if changes:
            self.post_message(DraftEdited(changes))

    @on(DataTable.RowSelected, "#catalog")
    def _catalog_picked(self, event: DataTable.RowSelected) -> None:
        entry = self._entries.get(str(event.row_key.value))
        if entry is None:
            return
        # A pinned revision belongs to the previous model (a cached one brings its own commit
        # when the cache's main ref is elsewhere); the task follows the model's kind.
        self._edit(
            {"model.name_or_path": entry.id, "model.revision": entry.revision, "model.task": entry.task}
        )

    @on(Button.Pressed, "#use-path")
    @on(Input.Submitted, "#model-name-or-path")
    def _path_entered(self) -> None:
        value = self.query_one("#model-name-or-path", Input).value.strip()
        if value:
            self._edit({"model.name_or_path": value})

    # --- model facts (worker) ------------------------------------------------------------------------

    def _describe_if_changed(self, draft: Draft) -> None:
        model = draft.recipe.model
        key = (model.name_or_path, model.revision, model.task)
        if key == self._facts_key:
            return
        self._facts_key = key
        self.facts = None
        facts = self.query_one("#facts", Static)
        if not model.name_or_path.strip():
            facts.update("No model chosen yet.")
            return
        facts.update(Text(f"Reading the config of {model.name_or_path}…", style="dim"))
        self._describe(key, model, draft.base_dir)

    @work(
        thread=True,
        exit_on_error=False,
        exclusive=True,
        group="describe",
        description="Describe the base model",
    )
    def _describe(self, key: tuple[str, str, str], model: Any, base_dir: Path) -> None:
        ensure_ml_imported()  # transformers loads here, in a worker, never at start-up
        from tuner_tui.modeling.describe import describe_model

        self.post_message(ModelDescribed(key, describe_model(model, base_dir=base_dir)))

    def worker_failed(self, worker: Worker[Any], message: str) -> None:
        # An odd config, a method that does not fit the model's layers: said where the result goes.
        if worker.name == "_estimate" and self._estimate_key is not None:
            self._memory_estimated(MemoryEstimated(self._estimate_key, None, message))
        elif worker.name == "_describe" and self._facts_key is not None:
            self._model_described(ModelDescribed(self._facts_key, None, message))
        else:
            super().worker_failed(worker, message)

    @on(ModelDescribed)
    def _model_described(self, message: ModelDescribed) -> None:
        if message.key != self._facts_key:
            return  # a newer model was chosen meanwhile
        widget = self.query_one("#facts", Static)
        if message.facts is None:
            widget.update(Text(message.error, style="bold red"))
            widget.set_class(True, "-error")
            return
        widget.set_class(False, "-error")
        self.facts = message.facts
        if self.tuner.draft is not None:
            self._draw_facts(message.facts, self.tuner.draft)

    def _draw_facts(self, facts: ModelFacts, draft: Draft) -> None:
        """The facts line, with where the model is found (cache, local folder) once the scan says."""
        row = self._row_of(facts.name_or_path, draft.base_dir)
        entry = self._entries.get(row) if row is not None else None
        self.query_one("#facts", Static).update(facts_text(facts, entry))

    # --- memory estimate (debounced worker) ----------------------------------------------------------

    def _schedule_estimate(self, draft: Draft) -> None:
        recipe = draft.recipe
        widget = self.query_one("#estimate", Static)
        blocker = estimate_blocker(draft.problems)
        if not recipe.model.name_or_path.strip() or blocker is not None:
            # Nothing to estimate, or numbers for values that cannot run: none, and none started.
            self._estimate_key = None  # a result still on its way is dropped
            if self._estimate_timer is not None:
                self._estimate_timer.stop()
            self.estimate = None
            if blocker is None:
                widget.update("Choose a model to estimate the memory it needs.")
            else:
                widget.update(blocked_view(blocker))
            return
        key = repr((recipe.model, recipe.method, recipe.training))
        if key == self._estimate_key:
            return
        self._estimate_key = key
        if self._estimate_timer is not None:
            self._estimate_timer.stop()
        widget.update(Text("Estimating…", style="dim"))
        base_dir = draft.base_dir
        self._estimate_timer = self.set_timer(
            ESTIMATE_DEBOUNCE_S, lambda: self._estimate(key, recipe, base_dir)
        )

    @work(
        thread=True,
        exit_on_error=False,
        exclusive=True,
        group="estimate",
        description="Estimate training memory",
    )
    def _estimate(self, key: str, recipe: Recipe, base_dir: Path) -> None:
        ensure_ml_imported()
        from tuner_tui.modeling.estimate import estimate_memory

        estimate = estimate_memory(recipe, base_dir=base_dir)
        self.post_message(MemoryEstimated(key, estimate, nodes=recipe.training.nnodes))

    @on(MemoryEstimated)
    def _memory_estimated(self, message: MemoryEstimated) -> None:
        if message.key != self._estimate_key:
            return  # settings changed since; a newer estimate is on its way, or none is wanted
        widget = self.query_one("#estimate", Static)
        self.estimate = message.estimate
        if message.estimate is None:
            widget.update(Text(f"No estimate: {message.error}", style="bold red"))
            return
        widget.update(estimate_view(message.estimate, nodes=message.nodes))


def facts_text(facts: ModelFacts, entry: CatalogEntry | None) -> Text:
    """What describe_model found, in a few lines; the picker's entry adds licence and access."""
    text = Text()
    text.append(f"{facts.architecture} ", "bold")
    text.append(f"({facts.model_type}), {format_params(facts.parameters)} parameters")
    parts = [
        f"{facts.layers} layers" if facts.layers else "",
        f"hidden size {facts.hidden_size:,}" if facts.hidden_size else "",
        f"context {facts.context_length:,} tokens" if facts.context_length else "",
        f"vocabulary {facts.vocab_size:,} tokens" if facts.vocab_size else "",
        f"weights {facts.dtype}" if facts.dtype else "",
    ]
    text.append("\n" + ", ".join(p for p in parts if p))
    template = {True: "yes", False: "no", None: "unknown"}[facts.has_chat_template]
    text.append(f"\nchat template: {template}")
    if facts.lora_targets:
        text.append("\nlinear modules (target_modules): " + ", ".join(facts.lora_targets))
    if entry is not None:
        where = []
        if entry.licence:
            where.append(f"licence {entry.licence}" + (", gated on the hub" if entry.gated else ""))
        if entry.found:
            where.append(entry.found)
        if where:
            text.append("\n" + ", ".join(where))
        if entry.offline:
            text.append(" · works offline", "green")
    return text
