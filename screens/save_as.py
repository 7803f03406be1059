"""Ask where to save a recipe that has no file yet."""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static


class SaveAsModal(ModalScreen[Path | None]):
    """A path input; dismisses with the chosen path, or None when cancelled."""

    DEFAULT_CSS = """
    SaveAsModal { align: center middle; }
    SaveAsModal > Vertical { width: 70; max-width: 95%; height: auto; border: thick $primary; padding: 1 2;
                             background: $surface; }
    SaveAsModal Horizontal { height: auto; margin-top: 1; }
    SaveAsModal Button { margin-right: 2; }
    SaveAsModal #save-error { color: $error; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, suggested: Path) -> None:
        super().__init__()
        self.suggested = suggested

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("Save the recipe as:")
            yield Input(str(self.suggested), id="save-path")
            yield Static("", id="save-error", markup=False)
            with Horizontal():
                yield Button("Save", variant="primary", id="save")
                yield Button("Cancel", id="cancel")

    @on(Button.Pressed, "#save")
    @on(Input.Submitted, "#save-path")
    def _save(self) -> None:
        path = Path(self.query_one("#save-path", Input).value.strip()).expanduser()
        if not path.name.endswith(".toml"):
            self.query_one("#save-error", Static).update("The file name must end in .toml.")
            return
        if not path.parent.is_dir():
            self.query_one("#save-error", Static).update(f"The folder {path.parent} does not exist.")
            return
        self.dismiss(path.resolve())

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
