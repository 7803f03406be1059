"""The ordered [[data.cleaning]] steps as an editable list: add, remove, reorder, set parameters.

The widget keeps its own copy of the steps and reports every valid edit with `CleaningStepsEdited`
(the whole list, ready for `DraftEdited({"data.cleaning": ...})`). A parameter that does not parse
is marked and explained on its row and not reported, so the recipe never holds half-typed values.

What the ops are, their parameters, defaults and checks, is the engine's: the add menu, each row's
parameter widgets (by the parameter's kind) and the check of a typed value all come from the
registry in `tuner_tui.data.ops`, so an op added there appears here with no change.

The draft comes back through `set_steps` after every draft change, and it lags behind: an edit
travels widget -> screen -> app before the draft holds it, and each draft change (ours or any other
field's) echoes the steps the draft held then. A second edit made before the first one's echo
arrives would be undone by that stale echo (rows rebuilt under the pointer, an Input replaced while
typed in). So the widget remembers the edits it reported and not yet seen back, ignores echoes of
the steps from before them, and shows any other steps (a recipe opened, a change made elsewhere).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

from tuner_tui.data.ops import OPS, OPS_BY_NAME, STEP_PARAMS, Param, validate_step  # stdlib only
from tuner_tui.errors import TunerError


def parse_param(param: Param, text: str) -> tuple[Any, str | None]:
    """A typed value of `param` from an Input's text, or (None, why it is not one).

    Only the shape is checked here (a whole number, a number, a list); what values the step
    accepts is the engine's to say (`check_step`). A blank optional parameter is None: the key is
    then left out (TOML has no null), which means "none", e.g. no upper bound.
    """
    text = text.strip()
    if not text and param.optional:
        return None, None
    if param.kind == "int":
        try:
            return int(text), None
        except ValueError:
            return None, f"{param.name} must be a whole number, got '{text}'."
    if param.kind == "float":
        try:
            return float(text), None
        except ValueError:
            return None, f"{param.name} must be a number, got '{text}'."
    if param.kind == "subset":
        return [k.strip() for k in text.split(",") if k.strip()], None
    if param.kind == "bool":
        if text.lower() in ("true", "false"):
            return text.lower() == "true", None
        return None, f"{param.name} must be true or false, got '{text}'."
    if text in param.choices:
        return text, None
    return None, f"{param.name} must be one of {', '.join(param.choices)}, got '{text}'."


def check_step(index: int, step: dict[str, Any]) -> str | None:
    """Why the engine would refuse this step (its own words), or None when a run accepts it."""
    try:
        validate_step(index, step)
    except TunerError as error:
        return str(error)
    return None


def param_text(param: Param, value: Any) -> str:
    """What an Input shows for a parameter's value."""
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


@dataclass
class CleaningStepsEdited(Message):
    """The steps were added, removed, reordered or given new parameters."""

    cleaning_list: CleaningList
    steps: list[dict[str, Any]]

    @property
    def control(self) -> CleaningList:
        return self.cleaning_list


class StepRow(Vertical):
    """One step: number, op, what it does, move/remove buttons; its parameters on a line below
    (so a row fits 80 columns whatever the op), then a problem line."""

    DEFAULT_CSS = """
    StepRow {
        height: auto;
    }
    StepRow > Horizontal {
        height: auto;
    }
    StepRow Label {
        padding: 0 1 0 0;
    }
    StepRow .op {
        width: auto;
        text-style: bold;
    }
    StepRow .description {
        width: 1fr;
        color: $text-muted;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    StepRow .step-params {
        padding: 0 0 0 3;
    }
    StepRow Input {
        width: 12;
        margin: 0 1 0 0;
    }
    StepRow Input.subset {
        width: 1fr;
        min-width: 20;
    }
    StepRow Input.-invalid {
        background: $error-muted;
    }
    StepRow Select {
        width: 14;
        margin: 0 1 0 0;
    }
    StepRow Button {
        min-width: 3;
        margin: 0 0 0 1;
    }
    StepRow .step-error {
        color: $text-error;
        padding: 0 0 0 4;
        height: auto;
    }
    """

    def __init__(self, index: int, step: dict[str, Any], count: int) -> None:
        super().__init__(classes="step-row")
        self.index = index
        self.step = step
        self.count = count
        self.shown: dict[str, Any] = {}
        """Each parameter's value as its widget shows it (a widget's own mount echo is no edit)."""

    def compose(self) -> ComposeResult:
        op = OPS_BY_NAME.get(str(self.step.get("op")))
        # An absent key means the op's default: show that, so the row says what runs.
        defaults = STEP_PARAMS[op.name] if op else {}
        self.shown = {**defaults, **{k: v for k, v in self.step.items() if k != "op"}}
        description = op.description if op else "Not a cleaning step the engine knows"
        with Horizontal(classes="step-head"):
            yield Label(f"{self.index + 1}.", classes="number")
            name = Label(str(self.step.get("op", "?")), classes="op")
            name.tooltip = description
            yield name
            yield Static(description, classes="description", markup=False)
            yield Button("↑", classes="up", compact=True, disabled=self.index == 0, tooltip="Move up")
            yield Button(
                "↓", classes="down", compact=True, disabled=self.index == self.count - 1, tooltip="Move down"
            )
            yield Button("✕", classes="remove", compact=True, variant="error", tooltip="Remove this step")
        if op is not None and op.params:
            with Horizontal(classes="step-params"):
                for param in op.params:
                    yield from self._param_widgets(param, self.shown.get(param.name))
        yield Static("", classes="step-error", markup=False)

    def _param_widgets(self, param: Param, value: Any) -> ComposeResult:
        """The widget of one parameter, by its kind: a Checkbox, a Select, or a labelled Input."""
        if param.kind == "bool":
            yield Checkbox(
                param.name, bool(value), compact=True, name=param.name, classes="param", tooltip=param.help
            )
            return
        yield Label(param.name)
        if param.kind == "choice":
            yield Select(
                [(c, c) for c in param.choices],
                value=value if value in param.choices else Select.NULL,
                allow_blank=False,
                compact=True,
                name=param.name,
                classes="param",
                tooltip=param.help,
            )
            return
        yield Input(
            param_text(param, value),
            compact=True,
            name=param.name,
            classes=f"param {param.kind}",
            tooltip=param.help,
            placeholder="none" if param.optional else "",
        )

    def show_error(self, message: str | None) -> None:
        error = self.query_one(".step-error", Static)
        error.update(message or "")
        error.display = bool(message)


class CleaningList(Widget):
    """Editable, ordered cleaning steps; posts `CleaningStepsEdited` with the whole list."""

    DEFAULT_CSS = """
    CleaningList {
        height: auto;
    }
    CleaningList #steps-empty {
        color: $text-muted;
    }
    CleaningList #add-row {
        height: auto;
        margin: 1 0 0 0;
    }
    CleaningList #add-op {
        width: 27;
    }
    CleaningList #add-help {
        color: $text-muted;
    }
    CleaningList #add-step {
        min-width: 0;
        margin: 0 0 0 1;
    }
    """

    def __init__(self, steps: list[dict[str, Any]] | None = None, *, id: str | None = None) -> None:  # noqa: A002
        super().__init__(id=id)
        self.steps: list[dict[str, Any]] = copy.deepcopy(steps or [])
        """The steps as shown, in order, each {op, ...parameters}."""
        self.next_op = OPS[0].name
        """The op the add row offers; kept across rebuilds so adding twice is two presses."""
        self._confirmed: list[dict[str, Any]] = copy.deepcopy(self.steps)
        """The steps the draft was last seen to hold."""
        self._unconfirmed: list[list[dict[str, Any]]] = []
        """The step lists reported by `CleaningStepsEdited`, oldest first, not yet seen back."""
        self._repeated: list[dict[str, Any]] | None = None
        """The steps last reported a second time (see `_show_draft_steps`)."""

    def compose(self) -> ComposeResult:
        if not self.steps:
            yield Static("No cleaning steps: the data is used as loaded.", id="steps-empty")
        for i, step in enumerate(self.steps):
            yield StepRow(i, step, len(self.steps))
        with Horizontal(id="add-row"):
            yield Select(
                [(op.name, op.name) for op in OPS],
                value=self.next_op,
                allow_blank=False,
                compact=True,
                id="add-op",
                tooltip="The step to add at the end",
            )
            yield Button("Add step", id="add-step", compact=True, variant="primary")
        yield Static(OPS_BY_NAME[self.next_op].description, id="add-help", markup=False)

    async def set_steps(self, steps: list[dict[str, Any]]) -> None:
        """Show these steps, the draft's, unless they predate an edit made here (see the module
        docstring). Queued behind the edits this widget is handling: steps are changed and rows
        rebuilt by one task only, never by two at once."""
        self.call_later(self._show_draft_steps, copy.deepcopy(steps))

    async def _show_draft_steps(self, steps: list[dict[str, Any]]) -> None:
        if self._unconfirmed and steps != self._confirmed and steps in self._unconfirmed:
            # The draft now holds this edit, and the ones made before it.
            del self._unconfirmed[: self._unconfirmed.index(steps) + 1]
            self._confirmed = steps
        elif not (self._unconfirmed and steps == self._confirmed):
            # Not the draft from before our edits: steps set elsewhere (a recipe opened, ...).
            self._unconfirmed.clear()
            self._confirmed = steps
            if steps != self.steps:
                self.steps = copy.deepcopy(steps)
                await self.recompose()
            return
        if self._unconfirmed and self.steps != self._repeated:
            # The draft is still behind the newest edit: keep showing it, and report it once more
            # in case it was dropped on the way (the screen skips an edit equal to the draft of
            # that moment). Once per edit: the same steps twice do no harm, a loop would.
            self._repeated = copy.deepcopy(self.steps)
            self.post_message(CleaningStepsEdited(self, copy.deepcopy(self.steps)))

    async def _edited(self, *, rebuild: bool) -> None:
        self._unconfirmed.append(copy.deepcopy(self.steps))
        self.post_message(CleaningStepsEdited(self, copy.deepcopy(self.steps)))
        if rebuild:
            await self.recompose()

    @on(Select.Changed, "#add-op")
    def _op_chosen(self, event: Select.Changed) -> None:
        event.stop()
        op = OPS_BY_NAME.get(str(event.value))
        if op is not None:
            self.next_op = op.name
            self.query_one("#add-help", Static).update(op.description)

    @on(Button.Pressed, "#add-step")
    async def _add(self, event: Button.Pressed) -> None:
        event.stop()
        op = OPS_BY_NAME.get(str(self.query_one("#add-op", Select).value))
        if op is not None:
            self.next_op = op.name
            self.steps.append(op.new_step())
            await self._edited(rebuild=True)

    @on(Button.Pressed, "StepRow Button")
    async def _row_button(self, event: Button.Pressed) -> None:
        event.stop()
        index = event.button.query_ancestor(StepRow).index
        if event.button.has_class("remove"):
            del self.steps[index]
        else:
            other = index - 1 if event.button.has_class("up") else index + 1
            if not 0 <= other < len(self.steps):
                return
            self.steps[index], self.steps[other] = self.steps[other], self.steps[index]
        await self._edited(rebuild=True)

    @on(Input.Changed, "StepRow Input.param")
    async def _param_typed(self, event: Input.Changed) -> None:
        event.stop()
        row = event.input.query_ancestor(StepRow)
        op = OPS_BY_NAME.get(str(row.step.get("op")))
        name = event.input.name or ""
        if op is None:
            return
        value, error = parse_param(op.param(name), event.value)
        if error is None:
            error = await self._set_param(row, name, value)
        event.input.set_class(error is not None, "-invalid")
        row.show_error(error)

    @on(Select.Changed, "StepRow Select.param")
    async def _choice_made(self, event: Select.Changed) -> None:
        event.stop()
        if event.value != Select.NULL:
            row = event.select.query_ancestor(StepRow)
            row.show_error(await self._set_param(row, event.select.name or "", event.value))

    @on(Checkbox.Changed, "StepRow Checkbox.param")
    async def _toggled(self, event: Checkbox.Changed) -> None:
        event.stop()
        row = event.checkbox.query_ancestor(StepRow)
        row.show_error(await self._set_param(row, event.checkbox.name or "", event.value))

    async def _set_param(self, row: StepRow, name: str, value: Any) -> str | None:
        """Set one parameter of the row's step, if the engine accepts the step so; returns why not.
        A value equal to what the row shows (a widget's mount echo) is no edit."""
        if row.shown.get(name) == value:
            return None
        step = dict(self.steps[row.index])
        if value is None:
            step.pop(name, None)  # TOML has no null: an absent key means "none"
        else:
            step[name] = value
        error = check_step(row.index, step)
        if error is not None:
            return error
        row.shown[name] = value
        if step != self.steps[row.index]:
            self.steps[row.index] = step
            row.step = step
            await self._edited(rebuild=False)
        return None
