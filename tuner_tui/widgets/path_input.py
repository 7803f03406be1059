"""Path completion for an Input: suggests the next file or folder name as the user types."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from textual.suggester import Suggester


class PathSuggester(Suggester):
    """Completes the last path component from the folder it names.

    Relative paths are completed against `base_dir()` (a recipe's paths are relative to the
    recipe's folder), so a callable: the base can change when another recipe is opened.
    Folders are suggested with a trailing slash so the next Tab keeps going down.
    """

    def __init__(self, base_dir: Callable[[], Path]) -> None:
        # No cache: the same prefix can complete differently once files appear or the base moves.
        super().__init__(use_cache=False, case_sensitive=True)
        self.base_dir = base_dir

    async def get_suggestion(self, value: str) -> str | None:
        if not value:
            return None
        head, _, prefix = value.rpartition("/")
        folder = Path(head + "/" if head or value.startswith("/") else ".").expanduser()
        if not folder.is_absolute():
            folder = self.base_dir() / folder
        try:
            # A folder listing is small and fast; scandir avoids a stat per entry for is_dir.
            with os.scandir(folder) as entries:
                names = sorted(
                    (entry.name + ("/" if entry.is_dir() else ""))
                    for entry in entries
                    if entry.name.startswith(prefix)
                    and (prefix.startswith(".") or not entry.name.startswith("."))
                )
        except OSError:
            return None
        if not names or names[0] == prefix:
            return None
        return (head + "/" if head or value.startswith("/") else "") + names[0]
