"""Welcome: what tuner does, and three ways to start a recipe."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, Input, Static

from tuner_tui.screens.step import StepScreen

if TYPE_CHECKING:
    from tuner_tui.app import Draft

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
