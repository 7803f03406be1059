"""The recipe being edited in the wizard: what it is, where it came from and saves to, what is wrong
with it, and whether its file changed on disk meanwhile. Textual-free: the screens render it."""

from __future__ import annotations

import dataclasses
import importlib.resources
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from tomlkit import TOMLDocument

from tuner_tui.preflight import preflight_problems
from tuner_tui.recipe import Problem, Recipe, with_changes

DEMO_ORIGIN = "built-in demo"


def demo_recipe() -> Traversable:
    """The built-in demo recipe shipped in the package."""
    return importlib.resources.files("tuner_tui.assets") / "demo" / "recipe.toml"


@dataclass(frozen=True)
class Draft:
    """The recipe being edited, where it came from, and what is wrong with it."""

    recipe: Recipe
    problems: tuple[Problem, ...]
    origin: str
    """Where it came from, for people: 'built-in demo', a file path, 'blank recipe'."""
    path: Path | None = None
    """The file it saves to; None until saved (the demo is never overwritten)."""
    document: TOMLDocument | None = None
    """The TOML it was read from, so saving keeps the user's comments and order."""
    file_text: str | None = None
    """The file's text when it was read or last saved here: if the file holds something else now,
    someone edited it meanwhile, and saving or starting must not silently overwrite that."""

    def changed_on_disk(self) -> bool:
        """The recipe file was edited (or removed) outside the wizard since it was read or saved."""
        if self.path is None or self.file_text is None:
            return False
        try:
            return self.path.read_text(encoding="utf-8") != self.file_text
        except OSError:
            return True

    @property
    def base_dir(self) -> Path:
        """The folder the recipe's relative paths start from: its file's, the demo's, or cwd."""
        if self.path is not None:
            return self.path.parent
        if self.origin == DEMO_ORIGIN:
            with importlib.resources.as_file(demo_recipe()) as demo_path:
                return demo_path.parent
        return Path.cwd()

    def edited(self, changes: Mapping[str, Any]) -> Draft:
        """This draft with `changes` ({dotted key: value}) applied and its problems found again."""
        recipe, problems = with_changes(self.recipe, changes)
        return dataclasses.replace(
            self, recipe=recipe, problems=draft_problems(recipe, problems, self.base_dir)
        )


def draft_problems(recipe: Recipe, parse_problems: list[Problem], base_dir: Path) -> tuple[Problem, ...]:
    """What the steps list: the recipe's problems (`parse_problems` includes `recipe.problems()`),
    then what the pre-flight checks see on this machine (missing files, devices), so the sidebar
    and each step say what `tuner run` would refuse before it is started."""
    return (*parse_problems, *preflight_problems(recipe, base_dir))
