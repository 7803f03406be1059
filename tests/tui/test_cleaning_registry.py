"""The cleaning ops have one source, `tuner_tui.data.ops`: the recipe, the run and the wizard's
cleaning list all take them from there. These tests fail when the widget and the registry disagree:
every registered op can be added on the Data step with its starting parameters, every parameter has
a widget that edits it, and what the widget writes is what a run accepts and what the TOML keeps."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Button, Checkbox, Input, Select, Static

from tuner_tui.app import TunerApp
from tuner_tui.data import ops
from tuner_tui.recipe import CLEANING_OPS, load_recipe
from tuner_tui.screens.data import DataScreen
from tuner_tui.widgets.cleaning_list import CleaningList, StepRow

SIZE = (140, 60)
RECIPE = """\
schema_version = 1

[data]
path = "train.jsonl"

[model]
name_or_path = "org/model"
"""


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    (tmp_path / "train.jsonl").write_text('{"text": "hello"}\n', encoding="utf-8")
    path = tmp_path / "recipe.toml"
    path.write_text(RECIPE, encoding="utf-8")
    return path


async def until(pilot, predicate, what: str, timeout: float = 30.0) -> None:
    """Until `predicate()` holds (waits on the condition, never a fixed time)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.02)


def rows_match(cleaning: CleaningList) -> bool:
    """The rows on screen are those of the widget's steps (a rebuild is done)."""
    return [(r.index, r.step) for r in cleaning.query(StepRow)] == list(enumerate(cleaning.steps))


def other_value(param: ops.Param, value: Any) -> Any:
    """A valid value of `param` other than `value`, by its kind."""
    if param.kind == "bool":
        return not value
    if param.kind == "choice":
        return next(c for c in param.choices if c != value)
    if param.kind == "int":
        return (value or 0) + 1
    if param.kind == "float":
        return value / 2
    if param.kind == "subset":
        return list(param.choices[:1])
    raise AssertionError(f"a parameter kind the test does not know: {param.kind}")


def param_widget(row: StepRow, name: str) -> Input | Select | Checkbox:
    found = [w for w in row.query(".param") if w.name == name]
    assert len(found) == 1, f"{row.step['op']}.{name}: {len(found)} widgets"
    widget = found[0]
    assert isinstance(widget, (Input, Select, Checkbox))
    return widget


def test_the_recipe_and_the_run_take_the_ops_from_the_registry() -> None:
    from tuner_tui.data import clean

    assert CLEANING_OPS == (*ops.STEP_PARAMS, *ops.UNAVAILABLE_OPS)
    assert [op.name for op in ops.OPS] == list(ops.STEP_PARAMS) == list(ops.DESCRIPTIONS)
    for op in ops.OPS:
        assert ops.validate_step(0, op.new_step())  # a new step is one a run accepts
        for param in op.params:
            assert param.kind in ops.PARAM_KINDS and param.help
            assert (param.kind in ("choice", "subset")) == bool(param.choices)
    # The wizard and a run check a step with the same function: one set of rules and words.
    assert clean.validate_step is ops.validate_step


async def test_every_registered_op_can_be_added_and_edited_and_round_trips(recipe: Path) -> None:
    from tuner_tui.data.clean import validate_step  # the run's own check

    app = TunerApp(recipe, runs_dir=recipe.parent / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await until(pilot, lambda: data_step_ready(app), "the Data step")
        cleaning = app.screen.query_one(CleaningList)
        menu = cleaning.query_one("#add-op", Select)
        assert [value for _, value in menu._options if value is not Select.NULL] == [
            op.name for op in ops.OPS
        ]

        # Add every op, with the parameters a new step starts with.
        expected: list[dict[str, Any]] = []
        for op in ops.OPS:
            menu = cleaning.query_one("#add-op", Select)
            menu.value = op.name
            await until(
                pilot,
                lambda op=op: op.description in str(cleaning.query_one("#add-help", Static).content),
                "help",
            )
            cleaning.query_one("#add-step", Button).press()
            expected.append(op.new_step())
            await until(
                pilot,
                lambda: app.draft.recipe.data.cleaning == expected and rows_match(cleaning),
                f"{op.name} added",
            )
        for i, step in enumerate(expected):
            validate_step(i, step)

        # Every parameter has one widget of its kind; a new value typed or chosen there reaches the draft.
        for row, op in zip(list(cleaning.query(StepRow)), ops.OPS, strict=True):
            assert row.step["op"] == op.name
            for param in op.params:
                widget = param_widget(row, param.name)
                shown = row.shown[param.name]
                assert shown == ops.validate_step(0, expected[row.index])[1][param.name]
                value = other_value(param, shown)
                if isinstance(widget, Input):
                    assert param.kind in ("int", "float", "subset")
                    widget.value = ", ".join(value) if isinstance(value, list) else f"{value:g}"
                elif isinstance(widget, Select):
                    assert param.kind == "choice"
                    widget.value = value
                else:
                    assert param.kind == "bool"
                    widget.value = value
                expected[row.index] = {**expected[row.index], param.name: value}
                await until(
                    pilot,
                    lambda: app.draft.recipe.data.cleaning == expected,
                    f"{op.name}.{param.name} = {value!r} in the draft",
                )
                assert not row.query_one(".step-error", Static).display
        for i, step in enumerate(expected):
            validate_step(i, step)

        app.action_save_recipe()
        await until(pilot, lambda: not app.unsaved, "the recipe saved")
    assert load_recipe(recipe).data.cleaning == expected


def data_step_ready(app: TunerApp) -> bool:
    """The Data step is shown and its cleaning list composed down to the op Select's label (on
    a loaded machine a Select set before that raises NoMatches from inside Textual)."""
    screen = app.screen
    return isinstance(screen, DataScreen) and bool(screen.query("CleaningList #add-op SelectCurrent #label"))


async def test_a_value_the_engine_refuses_is_explained_in_its_words_and_kept_out(recipe: Path) -> None:
    app = TunerApp(recipe, runs_dir=recipe.parent / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await until(pilot, lambda: data_step_ready(app), "the Data step")
        cleaning = app.screen.query_one(CleaningList)
        for name in ("dedup_near", "redact_pii"):
            cleaning.query_one("#add-op", Select).value = name
            cleaning.query_one("#add-step", Button).press()
            await until(
                pilot, lambda name=name: cleaning.steps[-1:] == [ops.OPS_BY_NAME[name].new_step()], name
            )
        await until(pilot, lambda: len(app.draft.recipe.data.cleaning) == 2 and rows_match(cleaning), "rows")
        near, pii = list(cleaning.query(StepRow))
        for row, name, text, says in (
            (near, "threshold", "1.5", "must be a Jaccard similarity in (0, 1]"),
            (pii, "kinds", "email, phnoe", "Did you mean 'phone'?"),
        ):
            widget = param_widget(row, name)
            assert isinstance(widget, Input)
            widget.value = text
            error = row.query_one(".step-error", Static)
            await until(pilot, lambda error=error: error.display, f"{name} refused")
            assert says in str(error.content) and widget.has_class("-invalid")
        added = [ops.OPS_BY_NAME[name].new_step() for name in ("dedup_near", "redact_pii")]
        assert app.draft.recipe.data.cleaning == added  # the refused values never reached it
