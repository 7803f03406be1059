"""The ordered [[data.cleaning]] steps as an editable list: add, remove, reorder, set parameters.

The widget keeps its own copy of the steps and reports every valid edit with `CleaningStepsEdited`
(the whole list, ready for `DraftEdited({"data.cleaning": ...})`). A parameter that does not parse
is marked and explained on its row and not reported, so the recipe never holds half-typed values.
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

from tuner_tui.data.pii import PII_KINDS  # stdlib only: safe at start-up (import hygiene test)

OPS: dict[str, str] = {
    "drop_empty": "Drop rows whose required fields are blank",
    "normalize": "Unicode-normalise text and collapse whitespace",
    "length_filter": "Keep rows whose length (tokens, or words without a tokenizer) is in range",
    "dedup_exact": "Drop exact duplicates (keeps the first)",
    "dedup_near": "Drop near duplicates (MinHash Jaccard of word 3-shingles)",
    "redact_pii": "Replace PII with placeholders like <EMAIL>",
    "drop_pii_rows": "Drop rows that contain PII",
}
"""The ops offered (CLEANING_OPS without filter_language, which no offline identifier backs)."""

DEFAULTS: dict[str, dict[str, Any]] = {
    "drop_empty": {},
    "normalize": {"form": "NFC", "whitespace": True},
    "length_filter": {"min_tokens": 1, "max_tokens": 2048},
    "dedup_exact": {},
    "dedup_near": {"threshold": 0.8},
    "redact_pii": {"kinds": list(PII_KINDS)},
    "drop_pii_rows": {"kinds": list(PII_KINDS)},
}
"""Parameters a newly added step starts with (written out, so the recipe says what runs)."""

FORMS = ("NFC", "NFKC", "NFD", "NFKD")


def parse_param(op: str, name: str, text: str) -> tuple[Any, str | None]:
    """A typed parameter value from an Input's text, or (None, why it is wrong).

    A blank max_tokens means "no upper bound" and is returned as None (the key is then omitted).
    """
    text = text.strip()
    if name in ("min_tokens", "max_tokens"):
        if not text and name == "max_tokens":
            return None, None
        if not text.isdigit():
            return None, f"{name} must be a whole number >= 0, got '{text}'."
        return int(text), None
    if name == "threshold":
        try:
            value = float(text)
        except ValueError:
            return None, f"threshold must be a number in (0, 1], got '{text}'."
        if not 0.0 < value <= 1.0:
            return None, f"threshold must be in (0, 1], got {value:g}."
        return value, None
    if name == "kinds":
        kinds = [k.strip() for k in text.split(",") if k.strip()]
        unknown = [k for k in kinds if k not in PII_KINDS]
        if not kinds or unknown:
            return None, f"kinds: choose from {', '.join(PII_KINDS)} (comma-separated)."
        return kinds, None
    raise KeyError(f"{op}.{name}")


@dataclass
class CleaningStepsEdited(Message):
    """The steps were added, removed, reordered or given new parameters."""

    cleaning_list: CleaningList
    steps: list[dict[str, Any]]

    @property
    def control(self) -> CleaningList:
        return self.cleaning_list


class StepRow(Vertical):
    """One step: number, op, its parameters, move/remove buttons; a problem line below."""

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
        width: 16;
        text-style: bold;
    }
    StepRow Input {
        width: 12;
        margin: 0 1 0 0;
    }
    StepRow Input.kinds {
        width: 1fr;
        min-width: 20;
    }
    StepRow Input.-invalid {
        background: $error-muted;
    }
    StepRow Select {
        width: 12;
        margin: 0 1 0 0;
    }
    StepRow Button {
        min-width: 3;
        margin: 0 0 0 1;
    }
    StepRow .spacer {
        width: 1fr;
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

    def compose(self) -> ComposeResult:
        op = str(self.step.get("op", "?"))
        params = {**DEFAULTS.get(op, {}), **{k: v for k, v in self.step.items() if k != "op"}}
        with Horizontal():
            yield Label(f"{self.index + 1}.", classes="number")
            name = Label(op, classes="op")
            name.tooltip = OPS.get(op, "Not a step this screen knows")
            yield name
            if op == "normalize":
                yield Select(
                    [(f, f) for f in FORMS],
                    value=params["form"] if params["form"] in FORMS else Select.NULL,
                    allow_blank=False,
                    compact=True,
                    name="form",
                    classes="param",
                    tooltip="Unicode normal form",
                )
                yield Checkbox("whitespace", bool(params["whitespace"]), compact=True, name="whitespace")
            elif op == "length_filter":
                yield Label("min")
                yield self._input("min_tokens", params.get("min_tokens", 0), "Shortest kept length")
                yield Label("max")
                yield self._input("max_tokens", params.get("max_tokens"), "Longest kept length; blank: none")
            elif op == "dedup_near":
                yield Label("threshold")
                yield self._input("threshold", params["threshold"], "Jaccard similarity in (0, 1]")
            elif op in ("redact_pii", "drop_pii_rows"):
                yield Label("kinds")
                kinds = params["kinds"]
                yield self._input(
                    "kinds",
                    ", ".join(kinds) if isinstance(kinds, list) else str(kinds),
                    f"Comma-separated, from: {', '.join(PII_KINDS)}",
                    classes="kinds",
                )
            yield Static(classes="spacer")
            yield Button("↑", classes="up", compact=True, disabled=self.index == 0, tooltip="Move up")
            yield Button(
                "↓", classes="down", compact=True, disabled=self.index == self.count - 1, tooltip="Move down"
            )
            yield Button("✕", classes="remove", compact=True, variant="error", tooltip="Remove this step")
        yield Static("", classes="step-error", markup=False)

    def _input(self, name: str, value: Any, tooltip: str, classes: str = "") -> Input:
        text = "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
        return Input(text, compact=True, name=name, classes=f"param {classes}".strip(), tooltip=tooltip)

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
        width: 24;
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
        self.next_op = "drop_empty"
        """The op the add row offers; kept across rebuilds so adding twice is two presses."""

    def compose(self) -> ComposeResult:
        if not self.steps:
            yield Static("No cleaning steps: the data is used as loaded.", id="steps-empty")
        for i, step in enumerate(self.steps):
            yield StepRow(i, step, len(self.steps))
        with Horizontal(id="add-row"):
            yield Select(
                [(op, op) for op in OPS],
                value=self.next_op,
                allow_blank=False,
                compact=True,
                id="add-op",
                tooltip="The step to add at the end",
            )
            yield Button("Add step", id="add-step", compact=True, variant="primary")

    async def set_steps(self, steps: list[dict[str, Any]]) -> None:
        """Show these steps (from the draft); no message is posted."""
        if steps != self.steps:
            self.steps = copy.deepcopy(steps)
            await self.recompose()

    async def _edited(self, *, rebuild: bool) -> None:
        self.post_message(CleaningStepsEdited(self, copy.deepcopy(self.steps)))
        if rebuild:
            await self.recompose()

    @on(Button.Pressed, "#add-step")
    async def _add(self, event: Button.Pressed) -> None:
        event.stop()
        op = self.query_one("#add-op", Select).value
        if isinstance(op, str):
            self.next_op = op
            self.steps.append({"op": op, **copy.deepcopy(DEFAULTS[op])})
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
        name = event.input.name or ""
        value, error = parse_param(str(row.step.get("op")), name, event.value)
        event.input.set_class(error is not None, "-invalid")
        row.show_error(error)
        if error is None:
            await self._set_param(row.index, name, value)

    @on(Select.Changed, "StepRow Select.param")
    async def _form_chosen(self, event: Select.Changed) -> None:
        event.stop()
        if event.value != Select.NULL:
            await self._set_param(event.select.query_ancestor(StepRow).index, "form", event.value)

    @on(Checkbox.Changed, "StepRow Checkbox")
    async def _whitespace_toggled(self, event: Checkbox.Changed) -> None:
        event.stop()
        await self._set_param(event.checkbox.query_ancestor(StepRow).index, "whitespace", event.value)

    async def _set_param(self, index: int, name: str, value: Any) -> None:
        step = dict(self.steps[index])
        if value is None:
            step.pop(name, None)  # TOML has no null: an absent key means "no bound"
        else:
            step[name] = value
        if step != self.steps[index]:
            self.steps[index] = step
            await self._edited(rebuild=False)
