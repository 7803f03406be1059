"""Welcome: what tuner does, and three ways to start a recipe."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, DataTable, Input, Static

from tuner_tui.screens.messages import RunChosen
from tuner_tui.screens.step import StepScreen
from tuner_tui.views.runs import RUN_COLUMNS, run_cells

if TYPE_CHECKING:
    from tuner_tui.runs.layout import RunSummary
    from tuner_tui.views.draft import Draft

ABOUT = """\
tuner fine-tunes a language model for your domain. A recipe (a TOML file) records every \
choice, one step at a time: objective, data, model and method, training, evaluation, export. \
Training runs in its own process, which keeps going if this window closes; the wizard follows \
it live and can reattach later."""


class WelcomeScreen(StepScreen):
    CSS_PATH = ["step.tcss", "welcome.tcss"]
    AUTO_FOCUS = "#demo"

    STEP = "welcome"
    STEP_TITLE = "Welcome"
    JUMP_KEY = "0"
    HAS_STATUS = False

    @dataclass
    class StartChosen(Message):
        """The user chose how to start: the demo, a recipe file, or a blank recipe."""

        source: Literal["demo", "file", "blank"]
        path: Path | None = None

    def compose_content(self) -> ComposeResult:
        yield Static("Welcome to tuner", classes="step-title")
        yield Static(ABOUT, id="about", markup=False)
        with Vertical(id="start"):
            yield Button("Start from the built-in demo", id="demo", variant="primary", compact=True)
            yield Static("Or open a recipe file:", classes="hint")
            with Horizontal(id="open-row"):
                yield Input(placeholder="path/to/recipe.toml", id="recipe-path", compact=True)
                yield Button("Open", id="open", compact=True)
            yield Button("Start blank", id="blank", compact=True)
        yield Static("", id="current", markup=False)
        yield Static(
            "Runs to attach to (Enter follows one; it keeps running when tuner closes):", classes="hint"
        )
        yield DataTable(id="runs", cursor_type="row", zebra_stripes=True)
        yield Static("", id="runs-note", markup=False)

    @dataclass
    class RunsListed(Message):
        """The runs found under the runs directory, newest first (rows from list_runs)."""

        rows: list[RunSummary]

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#runs", DataTable).add_columns(*RUN_COLUMNS)
        self._list_runs()

    def on_screen_resume(self) -> None:
        super().on_screen_resume()
        self._list_runs()

    @work(thread=True, exit_on_error=False, exclusive=True, group="welcome-runs", description="List runs")
    def _list_runs(self) -> None:
        from tuner_tui.runs.layout import list_runs

        self.post_message(self.RunsListed(list_runs(self.tuner.runs_dir)))

    @on(RunsListed)
    def _show_runs(self, event: RunsListed) -> None:
        table = self.query_one("#runs", DataTable)
        table.clear()
        for row in event.rows:
            table.add_row(*run_cells(row), key=row.path)
        table.display = bool(event.rows)
        self.query_one("#runs-note", Static).update(
            "" if event.rows else f"No runs under {self.tuner.runs_dir} yet."
        )

    @on(DataTable.RowSelected, "#runs")
    def _run_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value:
            self.post_message(RunChosen(Path(event.row_key.value)))

    def show_draft(self, draft: Draft | None) -> None:
        current = self.query_one("#current", Static)
        current.update("" if draft is None else f"Current recipe: {draft.origin}")

    def set_path(self, path: Path) -> None:
        """Prefill the path box (e.g. with a recipe that failed to load)."""
        self.query_one("#recipe-path", Input).value = str(path)

    @on(Button.Pressed, "#demo")
    def _demo(self) -> None:
        self.post_message(self.StartChosen("demo"))

    @on(Button.Pressed, "#blank")
    def _blank(self) -> None:
        self.post_message(self.StartChosen("blank"))

    @on(Button.Pressed, "#open")
    @on(Input.Submitted, "#recipe-path")
    def _open(self) -> None:
        path_input = self.query_one("#recipe-path", Input)
        text = path_input.value.strip()
        if not text:
            self.notify("Type the path of a recipe file first.", severity="warning")
            path_input.focus()
            return
        self.post_message(self.StartChosen("file", Path(text).expanduser()))
