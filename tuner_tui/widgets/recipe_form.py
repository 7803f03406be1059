"""A form of recipe fields, built from `tuner_tui.views.fields` specs.

Each key gets a labelled row: an Input for text and numbers, a Select for choices, a Switch for
booleans, and a line for its problems. Edits go to the App as `DraftEdited` on every change, so
nothing typed lives only in a widget. Drawing from the draft never fights the typist:

- a focused Input is never written to;
- every value typed into an Input is remembered until the draft echoes it back, and an echo (even
  a stale one, from a keystroke several messages ago) is never written into it (`EchoGuard`). Only
  a value the form did not send (a file opened, another screen's edit) replaces what is shown.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.widgets import Input, Label, Select, Static, Switch

from tuner_tui.recipe import Problem, Recipe
from tuner_tui.screens.messages import DraftEdited
from tuner_tui.views.fields import FieldSpec, spec, value_of


class EchoGuard:
    """Which draft values may be written into an input: never while it has focus, and never a
    value that only echoes back something typed into it (the App answers every edit with a new
    draft, and a burst of keystrokes is answered by a burst of drafts, each older than the input).
    Screens with hand-built inputs use one of these; RecipeForm uses it for every field."""

    def __init__(self) -> None:
        self._sent: dict[str, list[Any]] = {}

    def sent(self, key: str, value: Any) -> None:
        """`value` was typed into the input of `key` and posted as an edit."""
        self._sent.setdefault(key, []).append(value)

    def may_write(self, key: str, value: Any, widget: Input) -> bool:
        """Whether the draft's `value` for `key` may replace what `widget` shows."""
        sent = self._sent.get(key, [])
        if value in sent:
            del sent[: sent.index(value) + 1]
            return False
        if widget.has_focus:
            return False
        self._sent[key] = []
        return True


class RecipeForm(Vertical):
    """Rows for `keys` (recipe key paths); `show` draws a recipe, edits post `DraftEdited`."""

    DEFAULT_CSS = """
    RecipeForm { height: auto; }
    RecipeForm > .form-title { text-style: bold; margin-top: 1; }
    RecipeForm .form-row { height: auto; }
    RecipeForm .form-row > Label { width: 24; padding: 0 1 0 0; }
    RecipeForm .form-row > Input { width: 1fr; max-width: 40; }
    RecipeForm .form-row > Select { width: 1fr; max-width: 40; }
    RecipeForm .form-row > .form-unit { width: auto; padding: 0 0 0 1; color: $text-muted; }
    RecipeForm .field-problem { color: $text-warning; padding-left: 24; height: auto; }
    RecipeForm Input.-invalid { border: tall $error; }
    """

    def __init__(self, keys: Sequence[str], *, title: str = "", id: str | None = None) -> None:  # noqa: A002
        super().__init__(id=id)
        self.specs: list[FieldSpec] = [spec(key) for key in keys]
        self.title = title
        self._guard = EchoGuard()
        self._shown: dict[str, Any] = {}
        """The value each widget was last drawn with (or last sent), to skip redundant writes."""

    def compose(self) -> ComposeResult:
        if self.title:
            yield Static(self.title, classes="form-title", markup=False)
        for field in self.specs:
            tooltip = field.help + (f" ({field.bounds})" if field.bounds else "")
            with Horizontal(classes="form-row", id=f"row-{field.widget_id}"):
                yield Label(field.label, markup=False)
                if field.kind == "choice":
                    yield Select(
                        [(c, c) for c in field.choices],
                        allow_blank=False,
                        value=field.default,
                        id=field.widget_id,
                        tooltip=tooltip,
                        compact=True,
                    )
                elif field.kind == "bool":
                    yield Switch(value=bool(field.default), id=field.widget_id, tooltip=tooltip)
                else:
                    yield Input(
                        field.show(field.default),
                        placeholder=field.bounds or field.kind,
                        id=field.widget_id,
                        tooltip=tooltip,
                        compact=True,
                        select_on_focus=False,
                    )
                if field.unit:
                    yield Static(field.unit, classes="form-unit", markup=False)
            yield Static("", classes="field-problem", id=f"problem-{field.widget_id}", markup=False)

    # --- draft -> widgets ------------------------------------------------------------------------

    def show(self, recipe: Recipe, problems: Iterable[Problem] = ()) -> None:
        """Draw `recipe`'s values and each field's problems, leaving the typist's work alone."""
        mine = {field.key: [] for field in self.specs}  # type: dict[str, list[str]]
        for problem in problems:
            if problem.path in mine:
                mine[problem.path].append(problem.message)
        for field in self.specs:
            self._draw_value(field, value_of(recipe, field.key))
            box = self.query_one(f"#problem-{field.widget_id}", Static)
            if not self._typed_error(field):
                box.update("\n".join(f"⚠ {m}" for m in mine[field.key]))
                box.display = bool(mine[field.key])

    def _draw_value(self, field: FieldSpec, value: Any) -> None:
        widget = self.query_one(f"#{field.widget_id}")
        if isinstance(widget, Input):
            if not self._guard.may_write(field.key, value, widget):
                return
            if self._shown.get(field.key, _UNSET) != value or widget.has_class("-invalid"):
                with self.prevent(Input.Changed):
                    widget.value = field.show(value)
                widget.remove_class("-invalid")
        elif isinstance(widget, Select):
            if value in field.choices and widget.value != value:
                with self.prevent(Select.Changed):
                    widget.value = value
        elif isinstance(widget, Switch) and widget.value != bool(value):
            with self.prevent(Switch.Changed):
                widget.value = bool(value)
        self._shown[field.key] = value

    def set_shown(self, keys: Iterable[str]) -> None:
        """Show only the rows of `keys` (e.g. the parameters the chosen method reads)."""
        wanted = set(keys)
        for field in self.specs:
            visible = field.key in wanted
            self.query_one(f"#row-{field.widget_id}").display = visible
            if not visible:
                self.query_one(f"#problem-{field.widget_id}").display = False

    # --- widgets -> DraftEdited ------------------------------------------------------------------

    def _field_of(self, widget_id: str | None) -> FieldSpec | None:
        return next((f for f in self.specs if f.widget_id == widget_id), None)

    def _send(self, field: FieldSpec, value: Any) -> None:
        # Before the first draw, a change is the widget's own initial value, not an edit.
        if field.key not in self._shown or self._shown[field.key] == value:
            return
        if isinstance(self.query_one(f"#{field.widget_id}"), Input):
            self._guard.sent(field.key, value)
        self._shown[field.key] = value
        self.post_message(DraftEdited({field.key: value}))

    def _typed_error(self, field: FieldSpec) -> bool:
        widget = self.query_one(f"#{field.widget_id}")
        return isinstance(widget, Input) and widget.has_class("-invalid")

    @on(Input.Changed)
    def _typed(self, event: Input.Changed) -> None:
        field = self._field_of(event.input.id)
        if field is None:
            return
        event.stop()
        if event.value != event.input.value:
            return  # a keystroke already overtaken by later ones: their own event carries the text
        value, why = field.parse(event.value)
        box = self.query_one(f"#problem-{field.widget_id}", Static)
        if why:
            event.input.add_class("-invalid")
            kept = field.show(self._shown.get(field.key, field.default))
            box.update(Content(f"⚠ '{event.value}' is not {why}; the recipe keeps {kept}."))
            box.display = True
            return
        event.input.remove_class("-invalid")
        box.display = False
        self._send(field, value)

    @on(Select.Changed)
    def _chosen(self, event: Select.Changed) -> None:
        field = self._field_of(event.select.id)
        # A queued event older than the widget's value (set since from the draft) is not an edit.
        if field is None or event.value is Select.BLANK or event.value != event.select.value:
            return
        event.stop()
        self._send(field, event.value)

    @on(Switch.Changed)
    def _switched(self, event: Switch.Changed) -> None:
        field = self._field_of(event.switch.id)
        if field is None or event.value != event.switch.value:
            return
        event.stop()
        self._send(field, event.value)


_UNSET = object()
