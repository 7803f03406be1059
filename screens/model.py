"""Step 3, Model & method: the base model and how it is tuned (adapter, full or freeze).

The screen edits the draft only through `DraftEdited`; after every draft change it redraws its
fields from the recipe (never the other way round), so the App stays the single owner. Model facts
and the memory estimate need transformers and torch: both run in thread workers that import them
lazily, and the estimate is debounced so typing a value does not build a meta model per keystroke.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Button, DataTable, Input, Select, Static, Switch

from tuner_tui.modeling.catalog import CATALOG, find_entry
from tuner_tui.recipe import DTYPES, METHODS, OPTIMIZERS, STRATEGIES, Recipe, field_help
from tuner_tui.screens.step import StepScreen

if TYPE_CHECKING:
    from tuner_tui.app import Draft

ESTIMATE_DEBOUNCE_S = 0.6
"""Quiet time after the last relevant edit before the memory is re-estimated."""

# The [method] parameters each method actually reads (see tuner_tui/modeling/methods.py builders).
_LORA = ("r", "alpha", "dropout", "target_modules", "rslora", "init")
METHOD_PARAMS: dict[str, tuple[str, ...]] = {
    "lora": _LORA,
    "dora": _LORA,
    "qlora": _LORA,
    "adalora": ("r", "alpha", "dropout", "target_modules"),
    "loha": ("r", "alpha", "dropout", "target_modules"),
    "lokr": ("r", "alpha", "dropout", "target_modules"),
    "ia3": ("target_modules",),
    "prompt_tuning": ("num_virtual_tokens",),
    "prefix_tuning": ("num_virtual_tokens",),
    "full": (),
    "freeze": ("trainable_layers",),
}
ALL_METHOD_PARAMS = (
    "r",
    "alpha",
    "dropout",
    "target_modules",
    "rslora",
    "init",
    "num_virtual_tokens",
    "trainable_layers",
)
# Typed fields: key path -> (Input type, converter). Booleans and choices use Switch and Select.
NUMBER_FIELDS: dict[str, tuple[str, type]] = {
    "method.r": ("integer", int),
    "method.alpha": ("number", float),
    "method.dropout": ("number", float),
    "method.num_virtual_tokens": ("integer", int),
    "method.trainable_layers": ("integer", int),
    "training.batch_size": ("integer", int),
    "training.max_length": ("integer", int),
    "training.num_processes": ("integer", int),
    "training.nnodes": ("integer", int),
    "training.master_port": ("integer", int),
}
TEXT_FIELDS = {"training.master_addr": "node 0's host name or IP, as the other nodes reach it"}
SWITCH_FIELDS = ("method.rslora", "training.gradient_checkpointing")
SELECT_FIELDS: dict[str, tuple[str, ...]] = {
    "method.type": METHODS,
    "method.init": ("default", "gaussian", "pissa", "olora", "loftq"),
    "model.dtype": DTYPES,
    "training.optimizer": OPTIMIZERS,
    "training.strategy": STRATEGIES,
}
TRAINING_FIELDS = (
    "model.dtype",
    "training.batch_size",
    "training.max_length",
    "training.gradient_checkpointing",
    "training.optimizer",
    "training.num_processes",
    "training.nnodes",
    "training.strategy",
    "training.master_addr",
    "training.master_port",
)
RENDEZVOUS_FIELDS = ("training.master_addr", "training.master_port")  # shown with several nodes
# Estimate fields shown in their own lines; any other scalar (e.g. a time estimate added later)
# is listed generically, so new engine fields show up without a TUI change.
_ESTIMATE_KNOWN = {
    "total_bytes", "device_bytes", "device_label", "verdict", "breakdown", "trainable_params",
    "total_params", "batch_size", "max_length", "max_batch_size", "dtype", "method", "notes",
    "processes", "strategy",
}  # fmt: skip


def widget_id(key_path: str) -> str:
    """`method.r` -> `method-r` (ids cannot contain dots)."""
    return key_path.replace(".", "-").replace("_", "-")


def get_value(recipe: Recipe, key_path: str) -> Any:
    section, key = key_path.split(".")
    return getattr(getattr(recipe, section), key)


def format_bytes(n: int | float | None) -> str:
    if not isinstance(n, (int, float)):
        return "-"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)} B"


def format_params(n: Any) -> str:
    if not isinstance(n, int):
        return "-"
    for unit, scale in (("B", 10**9), ("M", 10**6), ("k", 10**3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)


def model_base_dir(draft: Draft) -> Path:
    """The folder a relative model path is relative to: the recipe's own folder; for the built-in
    demo, the packaged demo folder (as the App does when it launches a run)."""
    if draft.path is not None:
        return draft.path.parent
    from tuner_tui.app import DEMO_ORIGIN, demo_recipe  # the App imports this module

    if draft.origin == DEMO_ORIGIN:
        resource = demo_recipe()
        if isinstance(resource, Path):
            return resource.parent
        return Path(str(resource)).parent
    return Path.cwd()


# --- messages (posted by the workers) -------------------------------------------------------------


@dataclass
class ModelDescribed(Message):
    """describe_model finished for `key` (name, revision, task); `facts` is None when it failed."""

    key: tuple[str, str, str]
    facts: dict[str, Any] | None
    error: str = ""


@dataclass
class MemoryEstimated(Message):
    """estimate_memory finished for the settings in `key`; `estimate` is None when it failed.
    `nodes` is the recipe's nnodes (the estimate itself counts all processes)."""

    key: str
    estimate: dict[str, Any] | None
    error: str = ""
    nodes: int = 1


class ModelScreen(StepScreen):
    STEP = "model"
    STEP_TITLE = "Model & method"
    JUMP_KEY = "3"
    SECTIONS = ("model", "method")
    ALSO_EDITS = TRAINING_FIELDS
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
        self.facts: dict[str, Any] | None = None
        """The facts shown (describe_model's JSON), None while unknown."""
        self.estimate: dict[str, Any] | None = None
        """The estimate shown (estimate_memory's JSON), None while unknown."""

    # --- layout -------------------------------------------------------------------------------

    def compose_content(self) -> ComposeResult:
        yield Static(self.STEP_TITLE, classes="step-title")
        yield Static(self.INTRO, classes="step-intro", markup=False)
        yield Static("", id="draft-note", markup=False)
        with Vertical(id="model-form"):
            yield Static("Base model: pick one (enter) or type a folder / hub id", classes="section")
            table: DataTable[str] = DataTable(id="catalog", cursor_type="row", zebra_stripes=True)
            table.tooltip = "enter or click picks the model; 'offline' ones need no network"
            yield table
            with Horizontal(classes="row"):
                yield Static("model", classes="label")
                yield Input(
                    id="model-name-or-path",
                    placeholder="local folder or hub id",
                    tooltip=field_help("model", "name_or_path"),
                )
                yield Button("Use", id="use-path", compact=True)
            yield Static("", id="facts")
            yield Static("Method", classes="section")
            yield from self._field("method.type")
            for key in ALL_METHOD_PARAMS:
                yield from self._field(f"method.{key}")
            yield Static("Training settings that drive memory", classes="section")
            for key_path in TRAINING_FIELDS:
                yield from self._field(key_path)
            yield Static("Memory estimate", classes="section")
            yield Static("", id="estimate")
        yield Static("", id="problems")

    def _field(self, key_path: str) -> ComposeResult:
        section, key = key_path.split(".")
        help_text = field_help(section, key)
        ident = widget_id(key_path)
        with Horizontal(classes="row", id=f"row-{ident}"):
            yield Static(key, classes="label")
            if key_path in SELECT_FIELDS:
                yield Select(
                    [(choice, choice) for choice in SELECT_FIELDS[key_path]],
                    id=ident,
                    allow_blank=False,
                    compact=True,
                    tooltip=help_text,
                )
            elif key_path in SWITCH_FIELDS:
                yield Switch(id=ident, tooltip=help_text)
            elif key_path in NUMBER_FIELDS:
                yield Input(id=ident, type=NUMBER_FIELDS[key_path][0], tooltip=help_text, compact=True)
            elif key_path in TEXT_FIELDS:
                yield Input(id=ident, tooltip=help_text, placeholder=TEXT_FIELDS[key_path], compact=True)
            else:  # target_modules: 'all-linear' or a comma-separated list
                yield Input(
                    id=ident, tooltip=help_text, placeholder="all-linear, or q_proj, v_proj", compact=True
                )

    def on_mount(self) -> None:
        table = self.query_one("#catalog", DataTable)
        table.add_columns("model", "size", "context", "licence", "access", "good for")
        for entry in CATALOG:
            access = "offline" if entry.offline else ("gated" if entry.gated else "open")
            table.add_row(
                entry.id,
                entry.params,
                f"{entry.context:,}",
                entry.licence,
                access,
                entry.good_for,
                key=entry.id,
            )

    # --- drawing from the draft ------------------------------------------------------------------

    def show_draft(self, draft: Draft | None) -> None:
        if not self.show_form(draft, "#model-form"):
            return
        assert draft is not None
        recipe = draft.recipe
        self._set_input("#model-name-or-path", recipe.model.name_or_path)
        # Values set from the draft must not echo back as edits (and undo an edit in flight).
        with self.prevent(Select.Changed, Switch.Changed):
            for key_path in ("method.type", *(f"method.{k}" for k in ALL_METHOD_PARAMS), *TRAINING_FIELDS):
                self._show_value(key_path, get_value(recipe, key_path))
        used = METHOD_PARAMS.get(recipe.method.type, ())
        for key in ALL_METHOD_PARAMS:
            self.query_one(f"#row-{widget_id('method.' + key)}").display = key in used
        for key_path in RENDEZVOUS_FIELDS:
            self.query_one(f"#row-{widget_id(key_path)}").display = recipe.training.nnodes > 1
        self._highlight_catalog(recipe.model.name_or_path)
        self.query_one("#problems", Static).update(self._problems_text(draft.problems))
        self._describe_if_changed(draft)
        self._schedule_estimate(draft)

    def _set_input(self, selector: str, value: str) -> None:
        field = self.query_one(selector, Input)
        # Leave what the user is typing alone; it is committed on enter or when focus leaves.
        if not field.has_focus and field.value != value:
            field.value = value

    def _show_value(self, key_path: str, value: Any) -> None:
        ident = f"#{widget_id(key_path)}"
        if key_path in SELECT_FIELDS:
            select = self.query_one(ident, Select)
            if select.value != value and value in SELECT_FIELDS[key_path]:
                select.value = value
        elif key_path in SWITCH_FIELDS:
            switch = self.query_one(ident, Switch)
            if switch.value != bool(value):
                switch.value = bool(value)
        elif key_path in NUMBER_FIELDS:
            self._set_input(ident, f"{value:g}" if isinstance(value, float) else str(value))
        else:
            self._set_input(ident, value if isinstance(value, str) else ", ".join(value))

    def _highlight_catalog(self, name_or_path: str) -> None:
        table = self.query_one("#catalog", DataTable)
        if find_entry(name_or_path) is None or name_or_path not in table.rows:
            return
        row = table.get_row_index(name_or_path)
        if table.cursor_row != row and not table.has_focus:
            table.move_cursor(row=row, animate=False)

    # --- edits -> DraftEdited ----------------------------------------------------------------------

    def _edit(self, changes: dict[str, Any]) -> None:
        """Hand changes to the App, skipping values the draft already has (redraws echo back)."""
        draft = self.tuner.draft
        if draft is None:
            return
        changes = {k: v for k, v in changes.items() if get_value(draft.recipe, k) != v}
        if not changes:
            return
        from tuner_tui.app import DraftEdited  # the App module imports this one

        self.post_message(DraftEdited(changes))

    @on(DataTable.RowSelected, "#catalog")
    def _catalog_picked(self, event: DataTable.RowSelected) -> None:
        entry = find_entry(str(event.row_key.value))
        if entry is None:
            return
        # A pinned revision belongs to the previous model; the task follows the model's kind.
        self._edit({"model.name_or_path": entry.id, "model.revision": "", "model.task": entry.task})

    @on(Button.Pressed, "#use-path")
    @on(Input.Submitted, "#model-name-or-path")
    def _path_entered(self) -> None:
        value = self.query_one("#model-name-or-path", Input).value.strip()
        if value:
            self._edit({"model.name_or_path": value})

    @on(Input.Submitted)
    @on(Input.Blurred)
    def _input_committed(self, event: Input.Submitted | Input.Blurred) -> None:
        ident = event.input.id or ""
        editable = (*NUMBER_FIELDS, *TEXT_FIELDS, "method.target_modules")
        key_path = next((k for k in editable if widget_id(k) == ident), None)
        if key_path is None:
            return
        text = event.value.strip()
        if key_path in TEXT_FIELDS:
            self._edit({key_path: text})
            return
        if key_path == "method.target_modules":
            names = [name.strip() for name in text.split(",") if name.strip()]
            value: Any = names[0] if len(names) == 1 and names[0] == "all-linear" else names
            self._edit({key_path: value or "all-linear"})
            return
        try:
            value = NUMBER_FIELDS[key_path][1](text)
        except ValueError:
            # Not a number (or empty): show the draft's value again instead of guessing.
            draft = self.tuner.draft
            if draft is not None:
                self._show_value(key_path, get_value(draft.recipe, key_path))
            return
        self._edit({key_path: value})

    @on(Select.Changed)
    def _select_changed(self, event: Select.Changed) -> None:
        key_path = next((k for k in SELECT_FIELDS if widget_id(k) == event.select.id), None)
        if key_path is not None and isinstance(event.value, str):
            self._edit({key_path: event.value})

    @on(Switch.Changed)
    def _switch_changed(self, event: Switch.Changed) -> None:
        key_path = next((k for k in SWITCH_FIELDS if widget_id(k) == event.switch.id), None)
        if key_path is not None:
            self._edit({key_path: event.value})

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
        self._describe(key, model, model_base_dir(draft))

    @work(thread=True, exclusive=True, group="describe", description="Describe the base model")
    def _describe(self, key: tuple[str, str, str], model: Any, base_dir: Path) -> None:
        # transformers loads here, in the worker, never at start-up.
        from tuner_tui.errors import TunerError
        from tuner_tui.modeling.describe import describe_model

        try:
            facts = describe_model(model, base_dir=base_dir).to_json()
        except TunerError as error:
            self.post_message(ModelDescribed(key, None, str(error)))
            return
        except Exception as error:  # an odd config must not take the wizard down
            self.post_message(ModelDescribed(key, None, f"{type(error).__name__}: {error}"))
            return
        self.post_message(ModelDescribed(key, facts))

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
        self.facts = facts = message.facts
        entry = find_entry(message.key[0])
        text = Text()
        text.append(f"{facts.get('architecture', '?')} ", "bold")
        text.append(f"({facts.get('model_type', '?')}), {format_params(facts.get('parameters'))} parameters")
        parts = [
            f"{facts.get('layers')} layers" if facts.get("layers") else "",
            f"hidden {facts.get('hidden_size')}" if facts.get("hidden_size") else "",
            f"context {facts.get('context_length'):,}"
            if isinstance(facts.get("context_length"), int)
            else "",
            f"vocab {facts.get('vocab_size'):,}" if isinstance(facts.get("vocab_size"), int) else "",
            f"weights {facts.get('dtype')}" if facts.get("dtype") else "",
        ]
        text.append("\n" + ", ".join(p for p in parts if p))
        template = facts.get("has_chat_template")
        text.append("\nchat template: " + {True: "yes", False: "no", None: "unknown"}.get(template, "?"))
        targets = facts.get("lora_targets") or []
        if targets:
            text.append("\nlinear modules (target_modules): " + ", ".join(targets))
        if entry is not None:
            text.append(f"\nlicence {entry.licence}" + (", gated on the hub" if entry.gated else ""))
            if entry.offline:
                text.append(" · works offline", "green")
        widget.update(text)

    # --- memory estimate (debounced worker) ----------------------------------------------------------

    def _schedule_estimate(self, draft: Draft) -> None:
        recipe = draft.recipe
        if not recipe.model.name_or_path.strip():
            self._estimate_key = None
            self.query_one("#estimate", Static).update("Choose a model to estimate the memory it needs.")
            return
        key = repr((recipe.model, recipe.method, recipe.training))
        if key == self._estimate_key:
            return
        self._estimate_key = key
        if self._estimate_timer is not None:
            self._estimate_timer.stop()
        self.query_one("#estimate", Static).update(Text("Estimating…", style="dim"))
        base_dir = model_base_dir(draft)
        self._estimate_timer = self.set_timer(
            ESTIMATE_DEBOUNCE_S, lambda: self._estimate(key, recipe, base_dir)
        )

    @work(thread=True, exclusive=True, group="estimate", description="Estimate training memory")
    def _estimate(self, key: str, recipe: Recipe, base_dir: Path) -> None:
        from tuner_tui.errors import TunerError
        from tuner_tui.modeling.estimate import estimate_memory

        try:
            estimate = estimate_memory(recipe, base_dir=base_dir).to_json()
        except TunerError as error:
            self.post_message(MemoryEstimated(key, None, str(error)))
            return
        except Exception as error:  # e.g. a method that does not fit the model's layers
            self.post_message(MemoryEstimated(key, None, f"{type(error).__name__}: {error}"))
            return
        self.post_message(MemoryEstimated(key, estimate, nodes=recipe.training.nnodes))

    @on(MemoryEstimated)
    def _memory_estimated(self, message: MemoryEstimated) -> None:
        if message.key != self._estimate_key:
            return  # settings changed since; a newer estimate is on its way
        widget = self.query_one("#estimate", Static)
        if message.estimate is None:
            self.estimate = None
            widget.update(Text(f"No estimate: {message.error}", style="bold red"))
            return
        self.estimate = est = message.estimate
        widget.update(estimate_text(est, nodes=message.nodes))


def processes_text(est: dict[str, Any], nodes: int = 1) -> str:
    """'per device · 2 processes × 1 node (ddp)': the sizes are one device's share ('' when the
    estimate does not say how many processes it is for)."""
    world = est.get("processes")
    if not isinstance(world, int) or isinstance(world, bool):
        return ""
    if world <= 1:
        return "per device · 1 process"
    strategy = est.get("strategy", "?")
    if nodes < 1 or world % nodes:  # not this recipe's layout: the total only
        return f"per device · {world} processes ({strategy})"
    per_node = world // nodes
    processes = f"{per_node} process" + ("es" if per_node > 1 else "")
    return f"per device · {processes} × {nodes} node{'s' if nodes > 1 else ''} ({strategy})"


def estimate_text(est: dict[str, Any], nodes: int = 1) -> Text:
    """The estimate as a few lines: verdict first, then what it is made of.

    Args:
        est: estimate_memory's JSON.
        nodes: The recipe's nnodes, to show the estimate's processes per node.
    """
    verdict = str(est.get("verdict", "?"))
    style = {"fits": "bold green", "tight": "bold yellow"}.get(verdict, "bold red")
    text = Text()
    text.append(f" {verdict} ", f"{style} reverse")
    text.append(f"  {format_bytes(est.get('total_bytes'))} of {format_bytes(est.get('device_bytes'))}")
    text.append(f" on {est.get('device_label', 'the device')}")
    processes = processes_text(est, nodes)
    if processes:
        text.append(f"\n{processes}", "bold")
    trainable, total = est.get("trainable_params"), est.get("total_params")
    if isinstance(trainable, int) and isinstance(total, int) and total:
        text.append(f"\ntrainable {trainable:,} of {total:,} parameters ({100 * trainable / total:.3f}%)")
    breakdown = est.get("breakdown")
    if isinstance(breakdown, dict) and breakdown:
        text.append(
            "\n" + ", ".join(f"{k.replace('_', ' ')} {format_bytes(v)}" for k, v in breakdown.items())
        )
    if "max_batch_size" in est:
        text.append(f"\nlargest batch_size that fits: {est['max_batch_size']}")
    for key, value in est.items():
        if (
            key not in _ESTIMATE_KNOWN
            and isinstance(value, (int, float, str))
            and not isinstance(value, bool)
        ):
            shown = f"{value:,.0f}" if isinstance(value, float) else str(value)
            text.append(f"\n{key.replace('_', ' ')}: {shown}")
    for note in est.get("notes") or []:
        text.append(f"\n• {note}", "dim")
    return text
