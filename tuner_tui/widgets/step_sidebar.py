"""The wizard's step list: one line per step, with a status marker and its jump key."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.message import Message
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option


class StepStatus(Enum):
    """Where a wizard step stands. The value is what the sidebar legend says."""

    NOT_STARTED = "not started"
    OK = "ok"
    NEEDS_ATTENTION = "needs attention"
    UNCHECKED = "not inspected yet"
    RUNNING = "run in progress"
    FINISHED = "run completed"
    FAILED = "run failed or stopped"


# Marker glyph and the theme variable that colours it.
_MARKERS: dict[StepStatus, tuple[str, str]] = {
    StepStatus.NOT_STARTED: ("○", "$text-muted"),
    StepStatus.OK: ("✓", "$text-success"),
    StepStatus.NEEDS_ATTENTION: ("!", "$text-warning"),
    StepStatus.UNCHECKED: ("?", "$text-muted"),
    StepStatus.RUNNING: ("▶", "$text-accent"),
    StepStatus.FINISHED: ("●", "$text-success"),
    StepStatus.FAILED: ("✗", "$text-error"),
}


@dataclass(frozen=True)
class SidebarStep:
    """One entry of the sidebar."""

    key: str
    """Identifier of the step, e.g. `objective`; also the option id."""
    title: str
    """Label shown to the user."""
    jump_key: str
    """Key that jumps to the step, shown beside the title."""
    has_status: bool = True
    """False for entries, like Welcome, that are not a step of the recipe."""


class StepSidebar(Vertical):
    """Step list with status markers; Up/Down move, Enter posts `StepChosen`."""

    DEFAULT_CSS = """
    StepSidebar {
        width: 24;
        height: 1fr;
        border-right: vkey $foreground 20%;
    }
    StepSidebar > OptionList {
        height: auto;
        max-height: 1fr;
        border: round $border-blurred;
        padding: 0;
        background: transparent;
    }
    StepSidebar > OptionList:focus {
        border: round $border;
        background-tint: $foreground 5%;
    }
    StepSidebar > #legend {
        dock: bottom;
        height: auto;
        padding: 0 1;
        color: $text-muted;
    }
    """

    @dataclass
    class StepChosen(Message):
        """The user chose a step in the sidebar."""

        step: str

    def __init__(
        self,
        steps: Sequence[SidebarStep],
        *,
        current: str,
        statuses: Mapping[str, StepStatus],
        id: str | None = None,  # noqa: A002
    ) -> None:
        super().__init__(id=id)
        self.steps = tuple(steps)
        self.current = current
        self.statuses = dict(statuses)

    def compose(self) -> ComposeResult:
        option_list = OptionList(*(self._option(step) for step in self.steps), id="steps")
        option_list.border_title = "Steps"
        yield option_list
        yield Static(self._legend(), id="legend")

    def on_mount(self) -> None:
        self.reset_highlight()

    def reset_highlight(self) -> None:
        """Put the cursor back on the current step."""
        self.query_one(OptionList).highlighted = self._index(self.current)

    def status_of(self, step: str) -> StepStatus:
        """The status shown for `step`."""
        return self.statuses.get(step, StepStatus.NOT_STARTED)

    def set_statuses(self, statuses: Mapping[str, StepStatus]) -> None:
        """Show new statuses; only entries whose status changed are redrawn."""
        option_list = self.query_one(OptionList)
        for step in self.steps:
            if statuses.get(step.key) != self.statuses.get(step.key):
                self.statuses[step.key] = statuses.get(step.key, StepStatus.NOT_STARTED)
                option_list.replace_option_prompt(step.key, self._prompt(step))

    def prompt_text(self, step: str) -> str:
        """The plain text of a step's entry (for tests and screen readers)."""
        return self._prompt(self.steps[self._index(step)]).plain

    def _index(self, key: str) -> int:
        return next(i for i, step in enumerate(self.steps) if step.key == key)

    def _option(self, step: SidebarStep) -> Option:
        return Option(self._prompt(step), id=step.key)

    def _prompt(self, step: SidebarStep) -> Content:
        if step.has_status:
            glyph, colour = _MARKERS[self.status_of(step.key)]
        else:
            glyph, colour = " ", ""
        title_style = "bold" if step.key == self.current else ""
        return Content.assemble(
            (glyph, colour), " ", (step.jump_key, "$text-muted"), " ", (step.title, title_style)
        )

    @staticmethod
    def _legend() -> Content:
        parts: list[Content | str | tuple[str, str]] = []
        for status, (glyph, colour) in _MARKERS.items():
            parts.extend([(glyph, colour), f" {status.value}\n"])
        return Content.assemble(*parts).rstrip()

    @on(OptionList.OptionSelected, "#steps")
    def _step_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id is not None:
            self.post_message(self.StepChosen(event.option.id))
