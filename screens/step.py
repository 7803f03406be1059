"""The layout every wizard step shares: header, step sidebar, content, footer.

A step screen is a thin view of the App's draft recipe: it watches `app.draft` and
`app.step_status` and redraws itself; it never reads another screen.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, cast

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Footer, Header, Static
from textual.worker import Worker, WorkerState

from tuner_tui.errors import TunerError
from tuner_tui.widgets.step_sidebar import StepSidebar, StepStatus
from tuner_tui.widgets.value_table import ValueTable

if TYPE_CHECKING:
    from tuner_tui.app import TunerApp
    from tuner_tui.recipe import Problem, Recipe
    from tuner_tui.views.draft import Draft


NO_DRAFT = "No recipe yet: press 0 for Welcome to start from the demo, a file or blank."


class StepScreen(Screen[None]):
    """Base class of the wizard's screens; subclasses describe one step."""

    CSS_PATH = "step.tcss"
    AUTO_FOCUS = "StepSidebar OptionList"

    STEP: ClassVar[str] = ""
    """Key of the step (mode name, sidebar option id)."""
    STEP_TITLE: ClassVar[str] = ""
    """Title shown in the sidebar and above the content."""
    JUMP_KEY: ClassVar[str] = ""
    """Key that jumps here from anywhere."""
    HAS_STATUS: ClassVar[bool] = True
    """False for screens that are not a step of the recipe (Welcome)."""
    INTRO: ClassVar[str] = ""
    """What the step does, in a few plain sentences."""
    SECTIONS: ClassVar[tuple[str, ...]] = ()
    # Keys of other sections that this step also edits: their problems show here too.
    ALSO_EDITS: ClassVar[tuple[str, ...]] = ()
    """Top-level recipe keys this step covers; their problems are listed here."""
    EDITS: ClassVar[dict[str, str]] = {}
    """Recipe keys this step edits with widgets of its own (not a RecipeForm): key -> widget id.
    tests/tui/test_recipe_form.py checks that every recipe key has a widget on some step."""

    @property
    def tuner(self) -> TunerApp:
        """The app, typed."""
        return cast("TunerApp", self.app)

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="body"):
            yield StepSidebar(self.tuner.sidebar_steps(), current=self.STEP, statuses=self.tuner.step_status)
            with VerticalScroll(id="content"):
                yield from self.compose_content()
        yield Footer()

    def compose_content(self) -> ComposeResult:
        """The step's own content; the default shows recipe values and problems."""
        yield Static(self.STEP_TITLE, classes="step-title")
        yield Static(self.INTRO, classes="step-intro", markup=False)
        yield Static("", id="draft-note", markup=False)
        yield Static("In the draft recipe (read-only for now):", id="values-caption")
        yield ValueTable(id="values")
        yield Static("", id="problems")

    def on_mount(self) -> None:
        self.watch(self.app, "draft", self._draft_changed)
        self.watch(self.app, "step_status", self._status_changed)

    def on_screen_resume(self) -> None:
        # The cursor may have been left elsewhere when the user last jumped away.
        self.query_one(StepSidebar).reset_highlight()

    @on(Worker.StateChanged)
    def _worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place a step's worker failure is handled. Workers run with
        `exit_on_error=False` and raise: an error never takes the wizard down, and each step
        shows it where the worker's result would have gone (`worker_failed`). A cancelled
        worker (replaced by a newer one of its group) has nothing left to say."""
        worker = event.worker
        if event.state is WorkerState.ERROR and not worker.is_cancelled and worker.node is self:
            self.worker_failed(worker, failure_text(worker.error))

    def worker_failed(self, worker: Worker[Any], message: str) -> None:
        """Show a failed worker's error; steps route their workers (by `worker.name`, the
        method's name) to where the result would have been shown, this is the fallback."""
        self.notify(message, title=f"{worker.description} failed", severity="error", markup=False)

    def _status_changed(self, statuses: dict[str, StepStatus]) -> None:
        self.query_one(StepSidebar).set_statuses(statuses)

    def _draft_changed(self, draft: Draft | None) -> None:
        self.show_draft(draft)

    def show_draft(self, draft: Draft | None) -> None:
        """Redraw from the draft recipe (None: no recipe chosen yet)."""
        note = self.query_one("#draft-note", Static)
        values = self.query_one("#values", ValueTable)
        problems = self.query_one("#problems", Static)
        caption = self.query_one("#values-caption", Static)
        if draft is None:
            note.update(NO_DRAFT)
            note.display = True
            caption.display = False
            values.set_rows([])
            problems.update("")
            return
        note.display = False
        caption.display = True
        values.set_rows(self.rows(draft.recipe))
        problems.update(self._problems_text(draft.problems))

    def show_form(self, draft: Draft | None, form: str) -> bool:
        """For steps that edit the draft: show `form` when there is a draft, else the
        'no recipe yet' note. Returns whether there is a draft to draw."""
        note = self.query_one("#draft-note", Static)
        self.query_one(form).display = draft is not None
        note.display = draft is None
        if draft is None:
            note.update(NO_DRAFT)
            self.query_one("#problems", Static).update("")
        return draft is not None

    def rows(self, recipe: Recipe) -> list[tuple[str, Any]]:
        """(label, value) pairs read from the recipe; subclasses override."""
        return []

    def _problems_text(self, problems: tuple[Problem, ...]) -> Content:
        mine = [p for p in problems if problem_section(p.path) in self.SECTIONS or p.path in self.ALSO_EDITS]
        if not mine:
            return Content("")
        lines = [Content.styled(f"Problems in this step ({len(mine)}):", "bold $text-warning")]
        lines.extend(Content(f"• {problem}") for problem in mine)
        return Content("\n").join(lines)


def failure_text(error: BaseException | None) -> str:
    """A worker's error as a step shows it: a TunerError in its own words (they name the file or
    key and the fix), anything else with its type; never a traceback."""
    if isinstance(error, TunerError):
        return str(error)
    return f"{type(error).__name__}: {error}"


def problem_section(key_path: str) -> str:
    """`objectives[0].metric` -> `objectives`; `data.path` -> `data`."""
    return key_path.split(".", 1)[0].split("[", 1)[0]
