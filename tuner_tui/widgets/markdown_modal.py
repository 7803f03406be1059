"""A modal that shows a Markdown document (a run's report.md) inside the app."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, MarkdownViewer, Static


class MarkdownModal(ModalScreen[None]):
    """Read-only Markdown with a title; escape or q closes it."""

    DEFAULT_CSS = """
    MarkdownModal {
        align: center middle;
    }
    MarkdownModal #markdown-box {
        width: 90%;
        height: 90%;
        border: round $accent;
        background: $surface;
    }
    MarkdownModal #markdown-title {
        text-style: bold;
        padding: 0 1;
        color: $text-accent;
    }
    MarkdownModal MarkdownViewer {
        height: 1fr;
    }
    """
    BINDINGS = [
        Binding("escape", "dismiss", "Close"),
        Binding("q", "dismiss", "Close", show=False),
    ]

    def __init__(self, title: str, markdown: str) -> None:
        super().__init__()
        self.title_text = title
        """Shown above the document (e.g. the file's path)."""
        self.markdown = markdown
        """The document."""

    def compose(self) -> ComposeResult:
        with Vertical(id="markdown-box"):
            yield Static(self.title_text, id="markdown-title", markup=False)
            # Reports are short; a table of contents would take the width the tables need.
            yield MarkdownViewer(self.markdown, show_table_of_contents=False, open_links=False)
        yield Footer()
