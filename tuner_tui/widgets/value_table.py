"""A two-column view of recipe values: key path on the left, value on the right."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from rich.table import Table
from rich.text import Text
from textual.widgets import Static


def format_value(value: Any) -> str:
    """A recipe value as the user would write it, with empty values spelled out."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        return value if value.strip() else "(empty)"
    if isinstance(value, Mapping):
        if not value:
            return "(none)"
        return ", ".join(f"{k} = {format_value(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        if not value:
            return "(none)"
        return ", ".join(format_value(v) for v in value)
    return str(value)


class ValueTable(Static):
    """Rows of (label, value); values are shown literally, never as markup."""

    DEFAULT_CSS = """
    ValueTable {
        height: auto;
        padding: 0 0 1 0;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002
        super().__init__("", id=id)
        self.rows: list[tuple[str, str]] = []

    def set_rows(self, rows: Iterable[tuple[str, Any]]) -> None:
        """Show these rows, replacing the previous ones."""
        self.rows = [(label, format_value(value)) for label, value in rows]
        if not self.rows:
            self.update("")
            return
        # A grid, so a long value wraps inside its own column.
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="dim", no_wrap=True)
        grid.add_column(overflow="fold")
        for label, value in self.rows:
            grid.add_row(Text(label), Text(value))
        self.update(grid)
