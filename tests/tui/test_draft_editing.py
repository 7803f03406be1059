"""The App owns the draft: edits from screens, autosave, save, quit prompt, step statuses."""

from __future__ import annotations

from pathlib import Path

from tuner_tui.app import DraftEdited, TunerApp
from tuner_tui.screens.confirm import ConfirmModal
from tuner_tui.widgets.step_sidebar import StepStatus

RECIPE = """# my recipe
schema_version = 1

[data]
path = "train.jsonl"  # relative

[model]
name_or_path = "some/model"

[training]
epochs = 3.0
"""


async def test_edit_autosave_save_and_statuses(tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(RECIPE)
    (tmp_path / "train.jsonl").write_text('{"instruction": "Say hi.", "output": "Hi."}\n')
    app = TunerApp(recipe, runs_dir=tmp_path / "runs")
    async with app.run_test(size=(100, 32)) as pilot:
        # Data is ok only once its path was inspected; the others from the recipe alone.
        assert app.step_status["data"] == StepStatus.UNCHECKED and app.step_status["model"] == StepStatus.OK
        assert app.step_status["training"] == StepStatus.NOT_STARTED  # no run yet: never a bare tick
        app.post_message(DraftEdited({"training.epochs": 1.5}))
        await pilot.pause()
        assert app.draft.recipe.training.epochs == 1.5 and app.unsaved
        autosave = tmp_path / ".recipe.draft.toml"
        assert "epochs = 1.5" in autosave.read_text()
        assert recipe.read_text() == RECIPE  # the user's file is untouched until saved
        app.post_message(DraftEdited({"data.path": ""}))
        await pilot.pause()
        assert app.step_status["data"] == StepStatus.NEEDS_ATTENTION
        app.post_message(DraftEdited({"data.path": "train.jsonl"}))
        await pilot.pause()
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert not app.unsaved and not autosave.exists()
        saved = recipe.read_text()
        assert saved == RECIPE.replace("epochs = 3.0", "epochs = 1.5")


async def test_quit_with_unsaved_changes_asks_first(tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(RECIPE)
    app = TunerApp(recipe, runs_dir=tmp_path / "runs")
    async with app.run_test(size=(100, 32)) as pilot:
        app.post_message(DraftEdited({"training.epochs": 2.0}))
        await pilot.pause()
        await pilot.press("q")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal)
        await pilot.press("escape")
        await pilot.pause()
        assert app.is_running and app.unsaved


async def test_a_bad_edit_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(RECIPE)
    app = TunerApp(recipe, runs_dir=tmp_path / "runs")
    async with app.run_test(size=(100, 32)) as pilot:
        app.post_message(DraftEdited({"training.learning_rate": -1.0}))
        await pilot.pause()
        assert any(p.path == "training.learning_rate" for p in app.draft.problems)
        assert app.step_status["training"] == StepStatus.NEEDS_ATTENTION


async def test_a_new_draft_is_saved_where_the_user_says(tmp_path: Path) -> None:
    app = TunerApp(runs_dir=tmp_path / "runs")
    async with app.run_test(size=(100, 32)) as pilot:
        app.start_blank()
        app.post_message(DraftEdited({"project.name": "notes"}))
        await pilot.pause()
        await pilot.press("ctrl+s")
        await pilot.pause()
        field = app.screen.query_one("#save-path")
        field.value = str(tmp_path / "notes.toml")
        await pilot.press("enter")
        await pilot.pause()
        assert 'name = "notes"' in (tmp_path / "notes.toml").read_text()
        assert app.draft.path == (tmp_path / "notes.toml").resolve() and not app.unsaved


async def test_pre_flight_problems_show_in_the_step_that_edits_them(tmp_path: Path) -> None:
    """A data path that does not exist is what `tuner run` refuses: the Data step says so before."""
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(RECIPE)
    app = TunerApp(recipe, runs_dir=tmp_path / "runs")
    async with app.run_test(size=(100, 32)) as pilot:
        await pilot.pause()
        assert app.step_status["data"] == StepStatus.NEEDS_ATTENTION
        assert any(p.path == "data.path" and "does not exist" in p.message for p in app.draft.problems)
        (tmp_path / "train.jsonl").write_text('{"instruction": "Say hi.", "output": "Hi."}\n')
        app.post_message(DraftEdited({"data.path": "train.jsonl"}))
        await pilot.pause()
        assert app.step_status["data"] == StepStatus.UNCHECKED
        await pilot.press("2")
        await pilot.pause()
        await pilot.click("#inspect")
        for _ in range(200):
            await pilot.pause(0.05)
            if app.step_status["data"] == StepStatus.OK:
                break
        assert app.step_status["data"] == StepStatus.OK
        app.post_message(DraftEdited({"training.packing": True, "method.type": "prompt_tuning"}))
        await pilot.pause()
        assert any(p.path == "training.packing" for p in app.draft.problems)
        await pilot.press("4")
        await pilot.pause()
        shown = str(app.screen.query_one("#problem-field-training-packing").render())  # beside the field
        assert "does not work with [method] type" in shown
