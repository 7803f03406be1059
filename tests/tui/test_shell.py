"""The wizard's shell: sidebar, keyboard navigation, starting a recipe, help, small terminals."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import pytest
from textual.widgets import Footer, Input, OptionList

from tests.tui.conftest import workers_done
from tuner_tui.app import TunerApp, demo_recipe
from tuner_tui.recipe import read_recipe
from tuner_tui.screens.help import HelpScreen
from tuner_tui.screens.objective import ObjectiveRow
from tuner_tui.screens.step import StepScreen
from tuner_tui.screens.welcome import WelcomeScreen
from tuner_tui.widgets.step_sidebar import StepSidebar, StepStatus
from tuner_tui.widgets.value_table import ValueTable

SIZE = (100, 32)
STEPS = {
    "objective": "Objective",
    "data": "Data",
    "model": "Model & method",
    "training": "Training",
    "evaluation": "Evaluation",
    "export": "Export",
}

RECIPE = """\
schema_version = 1

[project]
name = "clinic-notes"
domain = "clinical notes"

[[objectives]]
metric = "accuracy"
target = 0.85

[data]
path = "data/train.jsonl"

[model]
name_or_path = "org/tiny-model"

[method]
type = "lora"
r = 8
"""


@pytest.fixture
def recipe_file(tmp_path: Path) -> Path:
    path = tmp_path / "recipe.toml"
    path.write_text(RECIPE, encoding="utf-8")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.jsonl").write_text('{"instruction": "Say hi.", "output": "Hi."}\n')
    return path


def values(app: TunerApp) -> dict[str, str]:
    """The recipe values the current step screen shows (editable steps: their input fields)."""
    tables = app.screen.query(ValueTable)
    if tables:
        return dict(tables.first().rows)
    fields = {
        "#field-project-name": "project.name",
        "#data-path": "data.path",
        "#model-name-or-path": "model.name_or_path",
        "#field-method-r": "method.r",
    }
    return {
        key: app.screen.query_one(sel, Input).value for sel, key in fields.items() if app.screen.query(sel)
    }


def notifications(app: TunerApp) -> list[tuple[str, str]]:
    return [(n.severity, n.message) for n in app._notifications]


def step_of(app: TunerApp) -> str:
    assert isinstance(app.screen, StepScreen), app.screen
    return app.screen.STEP


async def test_sidebar_lists_every_step_with_a_status() -> None:
    app = TunerApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        sidebar = app.screen.query_one(StepSidebar)
        ids = [option.id for option in sidebar.query_one(OptionList).options]
        assert ids == ["welcome", *STEPS]
        for key, title in STEPS.items():
            assert sidebar.status_of(key) is StepStatus.NOT_STARTED
            text = sidebar.prompt_text(key)
            assert text.startswith("○") and text.endswith(title), text
        assert "not started" in str(sidebar.query_one("#legend").render())

        app.set_step_status("data", StepStatus.NEEDS_ATTENTION)
        app.set_step_status("model", StepStatus.OK)
        await pilot.pause()
        assert sidebar.prompt_text("data").startswith("!")
        assert sidebar.prompt_text("model").startswith("✓")
        assert sidebar.prompt_text("objective").startswith("○")


async def test_keyboard_navigation_switches_the_content(recipe_file: Path) -> None:
    app = TunerApp(recipe_file)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert step_of(app) == "objective"
        assert isinstance(app.focused, OptionList)  # the step list has the keyboard

        await pilot.press("down", "enter")
        assert step_of(app) == "data"
        assert values(app)["data.path"] == "data/train.jsonl"

        await pilot.press("down", "down", "enter")
        assert step_of(app) == "training"

        await pilot.press("3")
        assert step_of(app) == "model"
        assert values(app)["model.name_or_path"] == "org/tiny-model"
        assert values(app)["method.r"] == "8"

        for key, step in zip("123456", STEPS, strict=True):
            await pilot.press(key)
            assert step_of(app) == step
            assert app.screen.query_one(".step-title").render().plain == STEPS[step]

        await pilot.press("0")
        assert isinstance(app.screen, WelcomeScreen)


async def test_cursor_moves_without_switching_until_enter(recipe_file: Path) -> None:
    app = TunerApp(recipe_file)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("down", "down")
        assert step_of(app) == "objective"
        await pilot.press("enter")
        assert step_of(app) == "model"


async def test_demo_button_loads_the_demo_recipe() -> None:
    resource = demo_recipe()
    assert resource.is_file(), "the built-in demo recipe must ship in tuner_tui.assets/demo"
    with importlib.resources.as_file(resource) as path:
        demo, _, _ = read_recipe(path)

    app = TunerApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, WelcomeScreen)
        await pilot.click("#demo")
        await pilot.pause()
        assert step_of(app) == "objective"
        assert values(app)["project.name"] == demo.project.name
        assert app.sub_title == "built-in demo"
        assert app.draft is not None and app.draft.path is None  # never saves over the demo

        await pilot.press("3")
        assert values(app)["model.name_or_path"] == demo.model.name_or_path


async def test_missing_demo_is_reported_and_stays_on_welcome(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tuner_tui.app.demo_recipe", lambda: tmp_path / "absent.toml")
    app = TunerApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.click("#demo")
        await pilot.pause()
        assert isinstance(app.screen, WelcomeScreen)
        assert app.draft is None
        assert any(sev == "error" and "demo" in msg for sev, msg in notifications(app))


async def test_open_a_recipe_by_typing_its_path(recipe_file: Path, tmp_path: Path) -> None:
    app = TunerApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        # A path that does not exist: an error, and the user stays to fix it.
        app.screen.query_one("#recipe-path", Input).focus()
        await pilot.press(*str(tmp_path / "nope.toml"), "enter")
        await pilot.pause()
        assert isinstance(app.screen, WelcomeScreen)
        assert any(sev == "error" and "does not exist" in msg for sev, msg in notifications(app))

        app.screen.query_one("#recipe-path", Input).value = str(recipe_file)
        await pilot.click("#open")
        await pilot.pause()
        assert step_of(app) == "objective"
        assert values(app)["project.name"] == "clinic-notes"
        row = app.screen.query_one(ObjectiveRow)
        assert (row.objective.metric, row.objective.target, row.objective.split) == ("accuracy", 0.85, "test")
        assert app.draft is not None and app.draft.path == recipe_file


async def test_blank_recipe_updates_screens_opened_before_it() -> None:
    app = TunerApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("2")
        assert step_of(app) == "data"
        assert not app.screen.query_one("#form").display
        assert "No recipe yet" in str(app.screen.query_one("#draft-note").render())

        await pilot.press("0")
        await pilot.click("#blank")
        await pilot.pause()
        assert step_of(app) == "objective"
        assert values(app)["project.name"] == "untitled"
        await pilot.press("2")
        assert values(app)["data.path"] == ""
        # The blank recipe has no data path: the Data step says so.
        assert "data.path" in str(app.screen.query_one("#problems").render())


async def test_help_lists_the_keys_and_closes() -> None:
    app = TunerApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        rows = dict(app.screen.key_rows)
        assert rows["q"] == "Quit"
        assert rows["t"] == "Theme"
        for key, title in zip("123456", STEPS.values(), strict=True):
            assert rows[key] == f"Go to {title}"

        await pilot.press("3")  # step jumps are off while help is open
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert isinstance(app.screen, WelcomeScreen)


async def test_q_quits_but_types_into_the_path_box() -> None:
    app = TunerApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.screen.query_one("#recipe-path", Input).focus()
        await pilot.press("q", "1", "t")
        assert app.screen.query_one("#recipe-path", Input).value == "q1t"
        assert isinstance(app.screen, WelcomeScreen)
        app.screen.query_one(StepSidebar).query_one(OptionList).focus()
        await pilot.press("q")
        await pilot.pause()
        assert not app.is_running
    assert app.return_code == 0


async def test_theme_toggles_between_light_and_dark() -> None:
    app = TunerApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        dark = app.current_theme.dark
        await pilot.press("t")
        assert app.current_theme.dark is not dark
        await pilot.press("t")
        assert app.current_theme.dark is dark


async def test_starts_on_80x24_with_everything_on_screen(recipe_file: Path) -> None:
    app = TunerApp(recipe_file)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        for key in "0123456":
            await pilot.press(key)
            await pilot.pause()
            screen = app.screen
            steps = screen.query_one(StepSidebar).query_one(OptionList)
            assert steps.region.height >= len(steps.options)  # no entry scrolled away
            footer = screen.query_one(Footer)
            assert footer.region.y == 23 and footer.region.height == 1
        await pilot.press("0")
        await pilot.pause()
        for selector in ("#demo", "#recipe-path", "#open", "#blank"):
            region = app.screen.query_one(selector).region
            assert region.bottom <= 23 and region.right <= 80, (selector, region)


async def test_command_line_options_choose_the_first_screen(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    app = TunerApp(missing)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, WelcomeScreen)
        assert app.screen.query_one("#recipe-path", Input).value == str(missing)

    run = tmp_path / "runs" / "some-run"
    app = TunerApp(attach=run, runs_dir=tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert step_of(app) == "training"
    assert app.attach == run


def test_the_step_table_agrees_with_each_screen_class() -> None:
    from tuner_tui.screens.steps import STEPS

    for step in STEPS:
        screen = step.screen_class()
        assert (screen.STEP, screen.STEP_TITLE, screen.JUMP_KEY, screen.HAS_STATUS) == (
            step.key,
            step.title,
            step.jump_key,
            step.has_status,
        )
        assert screen.SECTIONS == step.sections, step.key


def test_step_screens_load_on_first_visit_not_at_start_up() -> None:
    import subprocess
    import sys

    code = (
        "import sys, tuner_tui.app\n"
        "print(sorted(m for m in sys.modules if m.startswith('tuner_tui.screens.')))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for lazy in ("data", "model", "training", "evaluation", "export", "objective"):
        assert f"tuner_tui.screens.{lazy}'" not in loaded, loaded


async def test_welcome_lists_runs_and_enter_follows_one(tmp_path: Path) -> None:
    from tuner_tui.runs.events import EventWriter
    from tuner_tui.runs.layout import RunDir
    from tuner_tui.runs.state import write_state

    run = RunDir(tmp_path / "runs" / "20260101-000000-notes-abcdef")
    run.create()
    run.recipe.write_text("schema_version = 1\n")
    write_state(
        run.state, run_id=run.run_id, phase="completed", step=40, max_steps=40, created="2026-01-01T00:00:00Z"
    )
    with EventWriter(run.events) as events:
        events.emit("metric", step=40, max_steps=40, loss=0.4321)
    app = TunerApp(runs_dir=tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await workers_done(pilot)
        await pilot.pause()
        table = app.screen.query_one("#runs")
        assert table.row_count == 1
        assert [str(c) for c in table.get_row_at(0)][:4] == [run.run_id, "completed", "40/40", "0.4321"]
        table.focus()
        await pilot.press("enter")
        await pilot.pause()
        assert step_of(app) == "training" and app.run_dir == run.root


async def test_the_palette_offers_the_product_actions() -> None:
    app = TunerApp()
    async with app.run_test(size=SIZE):
        titles = {command.title for command in app.get_system_commands(app.screen)}
    assert {"Open recipe", "Save recipe", "Start run", "Attach to run", "Open report"} <= titles


async def test_starting_a_multi_node_recipe_says_what_the_other_nodes_run(
    recipe_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tuner_tui.runs.launcher import create_run

    text = recipe_file.read_text(encoding="utf-8").replace('metric = "accuracy"', 'metric = "loss"')
    recipe_file.write_text(
        text + '\n[training]\nnum_processes = 2\nnnodes = 2\nmaster_addr = "head"\n', encoding="utf-8"
    )
    monkeypatch.setattr("tuner_tui.app.start_run", create_run)  # the run directory, no processes
    app = TunerApp(recipe_file, runs_dir=tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.draft is not None and not app.draft.problems, app.draft.problems
        app.action_start_run()
        await pilot.pause()
        await pilot.press("y")
        for _ in range(100):
            await pilot.pause(0.05)
            if app.run_dir is not None and step_of(app) == "training":
                break
        await pilot.pause(0.2)  # let the Training step finish mounting before the app closes
        messages = [n.message for n in app._notifications]
    waiting = [m for m in messages if "This machine is node 0" in m]
    assert waiting, messages
    assert f"tuner run {recipe_file} --runs-dir {tmp_path / 'runs'} --nnodes 2 --node-rank K" in waiting[0]
    assert "--master-addr head --master-port 29500" in waiting[0]
