"""Help: every key binding that works where the user pressed `?`."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

# Keys handled by widgets rather than bindings, so the binding list cannot show them.
NAVIGATION = (
    ("Up / Down", "Move in the step list"),
    ("Enter", "Open the highlighted step, or press the focused button"),
    ("Tab / Shift+Tab", "Move focus between the step list and the content"),
)


class HelpScreen(ModalScreen[None]):
    """A modal list of key bindings; Escape, q or ? closes it."""

    CSS_PATH = "help.tcss"
    BINDINGS = [
        Binding("escape", "dismiss", "Close", show=False),
        Binding("q", "dismiss", "Close", show=False),
        Binding("question_mark", "dismiss", "Close", show=False),
    ]

    def __init__(self, bindings: Sequence[tuple[str, str]]) -> None:
        """Args:
        bindings: (key as displayed, description) pairs, in display order.
        """
        super().__init__()
        self.key_rows = list(bindings)

    def compose(self) -> ComposeResult:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        for key, description in [*self.key_rows, *NAVIGATION]:
            table.add_row(Text(key), Text(description))
        with VerticalScroll(id="help-box") as box:
            box.border_title = "Keys"
            box.border_subtitle = "Esc closes"
            yield Static(table, id="help-keys")
