"""The whole wizard against the real worker: open a recipe for the tiny model, look at every step,
train from the Training step, read the verdict, save the recipe from Export, and rerun that file
headless with `tuner run`. The headless run's adapter must be bit-identical to the app's."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Static

from tests.runs.test_worker import adapter_tensors, assert_same_tensors
from tests.tiny import write_recipe
from tuner_tui.app import TunerApp
from tuner_tui.runs.layout import RunDir
from tuner_tui.runs.state import TERMINAL_PHASES, read_state
from tuner_tui.screens.confirm import ConfirmModal

pytestmark = pytest.mark.slow

SIZE = (120, 40)
RUN_DEADLINE_S = 90.0
OBJECTIVE = '[[objectives]]\nmetric = "perplexity"\ntarget = 1000.0\n'


async def wait_for(pilot: Pilot, predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await pilot.pause(0.1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def step_of(app: TunerApp) -> str:
    return getattr(app.screen, "STEP", "")


def text_of(app: TunerApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


def input_value(app: TunerApp, selector: str) -> str:
    return app.screen.query_one(selector, Input).value


def form_value(app: TunerApp, key: str) -> str:
    """What the step's form field for `key` shows."""
    return app.screen.query_one(f"#field-{key.replace('.', '-')}", Input).value


async def test_wizard_trains_evaluates_exports_and_the_export_reruns_identically(
    tiny_assets: dict[str, Path], tmp_path: Path
) -> None:
    recipe_path = write_recipe(
        tmp_path / "recipe.toml", tiny_assets["data"], tiny_assets["model"], OBJECTIVE, max_steps=8
    )
    # A smaller evaluation than write_recipe's: 4 samples, 8 new tokens.
    text = recipe_path.read_text(encoding="utf-8")
    text = text.replace("max_samples = 8", "max_samples = 4")
    text = text.replace("max_new_tokens = 16", "max_new_tokens = 8")
    recipe_path.write_text(text, encoding="utf-8")
    runs_dir = tmp_path / "runs-app"
    exported = tmp_path / "exported" / "tiny.toml"

    app = TunerApp(runs_dir=runs_dir)
    async with app.run_test(size=SIZE) as pilot:
        # Welcome: open the recipe file.
        assert step_of(app) == "welcome"
        assert "Welcome to tuner" in text_of(app, ".step-title")
        app.screen.query_one("#recipe-path", Input).value = str(recipe_path)
        await pilot.click("#open")
        await wait_for(pilot, lambda: step_of(app) == "objective", 10, "the Objective step")
        assert app.draft is not None and not app.draft.problems, app.draft and app.draft.problems

        # 1 Objective .. 6 Export, each showing the draft's own values.
        await pilot.press("1")
        await wait_for(pilot, lambda: input_value(app, "#field-project-name") == "tiny", 10, "project name")
        await pilot.press("2")
        await wait_for(
            pilot, lambda: input_value(app, "#data-path") == str(tiny_assets["data"]), 10, "data path"
        )
        await pilot.press("3")
        await wait_for(
            pilot,
            lambda: input_value(app, "#model-name-or-path") == str(tiny_assets["model"]),
            10,
            "model path",
        )
        await pilot.press("5")
        await wait_for(pilot, lambda: step_of(app) == "evaluation", 10, "the Evaluation step")
        assert form_value(app, "evaluation.max_samples") == "4"
        assert form_value(app, "evaluation.generation.max_new_tokens") == "8"
        await pilot.press("6")
        await wait_for(pilot, lambda: step_of(app) == "export", 10, "the Export step")
        assert 'name = "tiny"' in app.screen.toml_text and "max_steps = 8" in app.screen.toml_text
        await pilot.press("4")
        await wait_for(pilot, lambda: step_of(app) == "training", 10, "the Training step")
        assert form_value(app, "training.max_steps") == "8"
        assert str(runs_dir) in text_of(app, "#run-settings")
        assert text_of(app, "#run-name") == "No run yet."

        # Start the run in the real worker and follow it to the end, evaluation included.
        await pilot.press("r")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal)  # starting a run asks first
        await pilot.press("y")
        await wait_for(pilot, lambda: app.run_dir is not None, 30, "the run to start")
        run = RunDir(app.run_dir)

        def finished() -> bool:
            return read_state(run.state).get("phase") in TERMINAL_PHASES | {"crashed"}

        await wait_for(pilot, finished, RUN_DEADLINE_S, "the run to complete")
        state = read_state(run.state)
        assert state["phase"] == "completed", run.log.read_text(encoding="utf-8")[-3000:]
        # The dashboard shows the phase of the events it has folded: the last of them may reach it
        # a poll after state.json says completed (and after another step's watcher has said so).
        await wait_for(pilot, lambda: app.run_phase == "completed", 10, "the app to know it completed")
        await wait_for(pilot, lambda: text_of(app, "#phase") == "completed", 10, "the dashboard to show it")
        assert "step 8/8" in text_of(app, "#progress-text")
        report = json.loads((run.report / "report.json").read_text(encoding="utf-8"))
        assert report["verdict"] == "pass", report["objectives"]

        # Evaluation shows the report's verdict.
        await pilot.press("5")
        await wait_for(pilot, lambda: "PASS" in text_of(app, "#verdict"), 15, "the verdict")
        assert "every objective is met" in text_of(app, "#verdict")

        # Export saves the recipe to a path.
        await pilot.press("6")
        await wait_for(pilot, lambda: step_of(app) == "export", 10, "the Export step")
        app.screen.query_one("#save-path", Input).value = str(exported)
        await pilot.click("#save")
        await wait_for(pilot, exported.exists, 10, "the exported recipe")

    app_adapter = adapter_tensors(run.adapter)
    cli_runs = tmp_path / "runs-cli"
    result = subprocess.run(
        [sys.executable, "-m", "tuner_tui.cli", "run", str(exported), "--runs-dir", str(cli_runs)],
        capture_output=True,
        text=True,
        timeout=RUN_DEADLINE_S,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (cli_run,) = cli_runs.iterdir()
    assert_same_tensors(adapter_tensors(RunDir(cli_run).adapter), app_adapter)
