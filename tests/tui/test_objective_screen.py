"""The Objective step edits the draft: project fields, task, objectives; problems shown inline."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input, Select, Static

from tuner_tui.app import TunerApp
from tuner_tui.screens.objective import ObjectiveRow, ObjectiveScreen

SIZE = (110, 40)
RECIPE = """\
schema_version = 1

[project]
name = "notes"

[[objectives]]
metric = "accuracy"
target = 0.8

[data]
path = "train.jsonl"

[model]
name_or_path = "org/model"
task = "sequence_classification"
"""


@pytest.fixture
def app(tmp_path: Path) -> TunerApp:
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(RECIPE, encoding="utf-8")
    (tmp_path / "train.jsonl").write_text(
        '{"text": "Fine.", "label": "ok"}\n{"text": "Bad.", "label": "no"}\n'
    )
    return TunerApp(recipe, runs_dir=tmp_path / "runs")


def rows(app: TunerApp) -> list[ObjectiveRow]:
    return list(app.screen.query(ObjectiveRow))


async def test_editing_project_fields_changes_the_draft(app: TunerApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, ObjectiveScreen)
        name = app.screen.query_one("#field-project-name", Input)
        assert name.value == "notes" and name.tooltip
        await pilot.click("#field-project-name")
        await pilot.press("end", "-", "v", "2")
        await pilot.pause()
        assert app.draft.recipe.project.name == "notes-v2" and app.unsaved
        app.screen.query_one("#field-project-domain", Input).value = "clinical notes"
        await pilot.pause()
        assert app.draft.recipe.project.domain == "clinical notes"
        app.screen.query_one("#field-project-description", Input).value = "Sort notes."
        await pilot.pause()
        assert app.draft.recipe.project.description == "Sort notes."


async def test_add_and_remove_objectives(app: TunerApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert len(rows(app)) == 1
        await pilot.click("#add-objective")
        await pilot.pause()
        objectives = app.draft.recipe.objectives
        # The new row takes a metric of the task that is not used yet.
        assert [o.metric for o in objectives] == ["accuracy", "f1"]
        assert len(rows(app)) == 2
        await pilot.click(rows(app)[0].query_one(".remove"))
        await pilot.pause()
        assert [o.metric for o in app.draft.recipe.objectives] == ["f1"]
        assert len(rows(app)) == 1


async def test_metric_list_follows_the_task_and_mismatch_is_shown(app: TunerApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        metric = rows(app)[0].query_one(".metric", Select)
        values = [value for _, value in metric._options if value != Select.NULL]
        assert "accuracy" in values and "rouge1" not in values
        app.screen.query_one("#model-task", Select).value = "causal_lm"
        await pilot.pause()
        await pilot.pause()
        assert app.draft.recipe.model.task == "causal_lm"
        row = rows(app)[0]
        values = [value for _, value in row.query_one(".metric", Select)._options]
        assert "rouge1" in values and "f1" not in values
        # The old metric stays visible with its problem beside it.
        assert any(p.path == "objectives[0].metric" for p in app.draft.problems)
        assert "does not fit" in str(row.query_one(".row-problems", Static).visual)
        row.query_one(".metric", Select).value = "rouge_l"
        await pilot.pause()
        assert app.draft.recipe.objectives[0].metric == "rouge_l"
        # (The classification data now misfits causal_lm: the Data step says so, not this one.)
        assert not [p for p in app.draft.problems if p.path.startswith("objectives")]


async def test_invalid_target_is_shown_and_not_written(app: TunerApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        row = rows(app)[0]
        target = row.query_one(".target", Input)
        target.value = "0.9x"
        await pilot.pause()
        assert target.has_class("-invalid")
        assert "not a number" in str(row.query_one(".row-problems", Static).visual)
        assert app.draft.recipe.objectives[0].target == 0.8  # the draft keeps the last good value
        target.value = "0.9"
        await pilot.pause()
        assert app.draft.recipe.objectives[0].target == 0.9
        assert not target.has_class("-invalid")
        assert not row.query_one(".row-problems", Static).display
        row.query_one(".split", Select).value = "validation"
        await pilot.pause()
        assert app.draft.recipe.objectives[0].split == "validation"


@pytest.mark.parametrize("size", [(80, 24), (140, 40)])
def test_objective_snapshot(snap_compare, tmp_path: Path, size: tuple[int, int]) -> None:
    async def settle(pilot) -> None:
        pilot.app.clear_notifications()  # the "Opened built-in demo" toast is not this screen
        await pilot.pause()

    app = TunerApp(demo=True, runs_dir=tmp_path / "runs")
    assert snap_compare(app, terminal_size=size, run_before=settle)
