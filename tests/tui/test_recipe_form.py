"""Recipe fields on screen: every key editable, typed bursts never scrambled, values reach the file.

A real terminal delivers a fast typist's keys while the App is still answering the earlier ones
with new drafts; `burst` (tests/tui/conftest.py) reproduces that, and test_real_terminal.py does it
in tmux.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input

from tests.tiny import write_recipe
from tests.tui.conftest import burst
from tuner_tui.app import TunerApp
from tuner_tui.views.fields import SPECS
from tuner_tui.widgets.recipe_form import RecipeForm

SIZE = (120, 40)


@pytest.fixture
def recipe(tiny_assets, tmp_path: Path) -> Path:
    return write_recipe(tmp_path / "recipe.toml", tiny_assets["data"], tiny_assets["model"])


async def test_learning_rate_edited_on_the_training_step_reaches_the_saved_recipe(recipe: Path) -> None:
    app = TunerApp(recipe, runs_dir=recipe.parent / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        await pilot.pause()
        field = app.screen.query_one("#field-training-learning_rate", Input)
        field.focus()
        field.value = ""
        await burst(pilot, "3e-5")
        assert app.draft.recipe.training.learning_rate == pytest.approx(3e-5)
        await pilot.press("ctrl+s")
        await pilot.pause()
    assert "learning_rate = 3e-05" in recipe.read_text()


async def test_a_burst_of_keys_is_saved_exactly_as_typed(recipe: Path) -> None:
    typed = "credit-risk-classifier-for-loan-officers-v2"
    app = TunerApp(recipe, runs_dir=recipe.parent / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("1")
        await pilot.pause()
        name = app.screen.query_one("#field-project-name", Input)
        name.focus()
        name.value = ""
        await pilot.pause()
        await burst(pilot, typed)
        await pilot.press("tab")
        await burst(pilot, "financial news")
        for _ in range(5):
            await pilot.pause()
        assert name.value == typed
        assert app.draft.recipe.project.name == typed
        assert app.draft.recipe.project.domain.endswith("financial news")


async def test_text_that_is_not_a_number_is_kept_and_explained(recipe: Path) -> None:
    app = TunerApp(recipe, runs_dir=recipe.parent / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        await pilot.pause()
        field = app.screen.query_one("#field-training-warmup_ratio", Input)
        field.focus()
        field.value = ""
        await burst(pilot, "0.1x")
        assert field.value == "0.1x" and field.has_class("-invalid")
        problem = str(app.screen.query_one("#problem-field-training-warmup_ratio").render())
        assert "is not a number" in problem
        # The recipe keeps the last number the field held (a prefix typed on the way), and says so.
        kept = app.draft.recipe.training.warmup_ratio
        assert kept in (0.0, 0.1) and f"the recipe keeps {kept:g}" in problem


async def test_every_user_facing_recipe_key_has_a_widget(recipe: Path) -> None:
    """Walk the recipe schema: each form field must be editable on some step."""
    app = TunerApp(recipe, runs_dir=recipe.parent / "runs")
    found: set[str] = set()
    async with app.run_test(size=SIZE) as pilot:
        for key in "123456":
            await pilot.press(key)
            await pilot.pause()
            for form in app.screen.query(RecipeForm):
                found.update(spec.key for spec in form.specs)
            for key, widget_id in getattr(app.screen, "EDITS", {}).items():
                if app.screen.query(f"#{widget_id}"):
                    found.add(key)
    missing = sorted(set(SPECS) - found)
    assert not missing, f"recipe keys with no widget on any step: {missing}"


async def test_step_keys_never_type_into_a_field_and_escape_leaves_it(recipe: Path) -> None:
    app = TunerApp(recipe, runs_dir=recipe.parent / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await pilot.pause()
        path = app.screen.query_one("#data-path", Input)
        before = path.value
        path.focus()
        await pilot.pause()
        # While typing, the footer does not offer the digit keys (they type digits) but Escape.
        shown = {b.binding.action for b in app.screen.active_bindings.values() if b.enabled}
        assert "leave_field" in shown and not any(a.startswith("goto") for a in shown)
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.focused, Input) and path.value == before
        await pilot.press("3")
        await pilot.pause()
        assert app.current_mode == "model" and app.draft.recipe.data.path == before


async def test_starting_a_run_asks_first(recipe: Path) -> None:
    from tuner_tui.screens.confirm import ConfirmModal

    runs = recipe.parent / "runs"
    app = TunerApp(recipe, runs_dir=runs)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4", "r")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal) and "Start training" in app.screen.question
        await pilot.press("n")
        await pilot.pause()
        assert app.run_dir is None and not (
            runs.exists() and any(p.name != "recipes" for p in runs.iterdir())
        )
