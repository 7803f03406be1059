"""The Export step: recipe TOML (draft and frozen), save a copy, the headless command, export a run.

Exporting without merge runs the real merge_and_export (a copy of the adapter, no models loaded);
merging is replaced at the engine boundary (tests/modeling/test_export.py merges for real).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Checkbox, Input, Select, Static

from tests.tui.conftest import workers_done
from tests.tui.test_evaluation_screen import RUN_ID, make_run, report_for
from tuner_tui.app import TunerApp
from tuner_tui.modeling import export as export_module
from tuner_tui.recipe import dumps_recipe
from tuner_tui.screens.confirm import ConfirmModal

SIZE = (120, 40)


async def settle(pilot: Pilot) -> None:
    await pilot.pause()
    await workers_done(pilot)
    await pilot.pause()


def text_of(app: TunerApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).content)


async def test_the_draft_as_toml_the_command_and_save(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    app = TunerApp(demo=True, runs_dir=tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("6")
        await pilot.pause()
        screen = app.screen
        # Exactly what saving the draft writes, the demo's comments included.
        assert screen.toml_text == dumps_recipe(app.draft.recipe, app.draft.document)
        assert "# The built-in demo" in screen.toml_text
        assert screen.query_one("#save-path", Input).value == "support-intents.toml"
        assert "tuner run support-intents.toml" in text_of(app, "#command")
        field = screen.query_one("#save-path", Input)
        field.value = "recipes/intents.toml"
        await pilot.pause()
        assert "tuner run recipes/intents.toml" in text_of(app, "#command")
        await pilot.click("#save")
        await pilot.pause()
        assert (tmp_path / "recipes" / "intents.toml").read_text(encoding="utf-8") == screen.toml_text
        assert app.draft.path is None  # a copy: the draft still belongs where it came from


async def test_save_asks_before_replacing_a_file_or_writing_an_odd_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.toml").write_text("# my own recipe\n", encoding="utf-8")
    run = make_run(tmp_path / "runs" / RUN_ID, report=report_for())
    app = TunerApp(demo=True, runs_dir=tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("6")
        await pilot.pause()
        screen = app.screen
        field = screen.query_one("#save-path", Input)

        field.value = "mine.toml"  # Enter in the field saves: it must ask first
        field.focus()
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal)
        assert "mine.toml exists and holds something else" in app.screen.question
        await pilot.press("n")
        await pilot.pause()
        assert (tmp_path / "mine.toml").read_text(encoding="utf-8") == "# my own recipe\n"

        field.value = "mine.toml"
        await pilot.click("#save")
        await pilot.pause()
        await pilot.press("y")
        await pilot.pause()
        assert (tmp_path / "mine.toml").read_text(encoding="utf-8") == screen.toml_text

        field.value = "recipe.tmol"  # a typo: asked, not written
        await pilot.click("#save")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal) and "does not end in .toml" in app.screen.question
        await pilot.press("escape")
        await pilot.pause()
        assert not (tmp_path / "recipe.tmol").exists()

        field.value = str(run.recipe)  # a run's frozen recipe is never rewritten
        before = run.recipe.read_text(encoding="utf-8")
        await pilot.click("#save")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmModal)
        assert run.recipe.read_text(encoding="utf-8") == before
        assert any("inside the run directory" in n.message for n in app._notifications)


async def test_the_frozen_recipe_of_a_run_and_its_adapter(tmp_path: Path) -> None:
    run = make_run(tmp_path / "runs" / RUN_ID, report=report_for())
    app = TunerApp(demo=True, runs_dir=tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("6")
        await pilot.pause()
        assert "No run followed yet" in text_of(app, "#adapter")
        app.run_dir = run.root
        await pilot.pause()
        assert text_of(app, "#adapter") == f"adapter: {run.adapter}"
        app.screen.query_one("#source", Select).value = "run"
        await pilot.pause()
        assert app.screen.toml_text == run.recipe.read_text(encoding="utf-8")
        assert "[environment]" in app.screen.toml_text


async def test_export_copies_the_adapter_and_errors_are_shown(tmp_path: Path) -> None:
    run = make_run(tmp_path / "runs" / RUN_ID, report=report_for())
    out = tmp_path / "shipped"
    app = TunerApp(demo=True, runs_dir=tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        app.run_dir = run.root
        await pilot.press("6")
        await pilot.pause()
        app.screen.query_one("#export-path", Input).value = str(out)
        await pilot.click("#export")
        await settle(pilot)
        assert (out / "adapter_model.safetensors").exists() and (out / "tuner_recipe.toml").exists()
        assert text_of(app, "#export-result") == f"Adapter written to {out}"
        # The same folder again: the engine refuses a non-empty folder, and the screen says so.
        await pilot.click("#export")
        await settle(pilot)
        assert text_of(app, "#export-result").startswith("Export failed:")
        assert "not empty" in text_of(app, "#export-result")
        assert not app.screen.exporting


async def test_merge_runs_merge_and_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = make_run(tmp_path / "runs" / RUN_ID, report=report_for())
    calls: list[tuple[Path, Path, bool]] = []

    def fake_merge(run_dir: Path, out: Path, merge: bool) -> Path:
        calls.append((run_dir, out, merge))
        out.mkdir(parents=True)
        (out / "model.safetensors").write_bytes(b"\0")
        return out

    monkeypatch.setattr(export_module, "merge_and_export", fake_merge)
    app = TunerApp(demo=True, runs_dir=tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        app.run_dir = run.root
        await pilot.press("6")
        await pilot.pause()
        app.screen.query_one("#export-path", Input).value = str(tmp_path / "merged")
        app.screen.query_one("#merge", Checkbox).value = True
        await pilot.click("#export")
        await settle(pilot)
        assert calls == [(run.root, tmp_path / "merged", True)]
        assert text_of(app, "#export-result") == f"Merged model written to {tmp_path / 'merged'}"


@pytest.mark.parametrize("size", [(80, 24), (140, 40)])
def test_snapshot(
    snap_compare: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: tuple[int, int]
) -> None:
    monkeypatch.chdir(tmp_path)  # paths are shown relative to here: the same on every machine
    run = make_run(tmp_path / "runs" / RUN_ID, report=report_for())

    async def run_before(pilot: Pilot) -> None:
        pilot.app.run_dir = run.root.relative_to(tmp_path)
        await pilot.press("6")
        await settle(pilot)

    app = TunerApp(demo=True, runs_dir=Path("runs"))
    assert snap_compare(app, terminal_size=size, run_before=run_before)


async def test_export_redraws_when_the_followed_run_changes_phase(tmp_path: Path) -> None:
    """Opened during training, the adapter is not there yet; once the run completes it is."""
    run = make_run(tmp_path / "runs" / RUN_ID, adapter=False)
    app = TunerApp(demo=True, runs_dir=tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        app.run_dir = run.root
        app.run_phase = "training"
        await pilot.press("6")
        await pilot.pause()
        assert "has no adapter yet" in text_of(app, "#adapter")
        assert not app.screen.query_one("#export-row").display
        run.adapter.mkdir()
        (run.adapter / "adapter_model.safetensors").write_bytes(b"\0" * 64)
        app.run_phase = "completed"
        await pilot.pause()
        assert text_of(app, "#adapter") == f"adapter: {run.adapter}"
        assert app.screen.query_one("#export-row").display


async def test_attach_only_names_the_run_s_own_recipe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    run = make_run(tmp_path / "runs" / RUN_ID, report=report_for())
    app = TunerApp(attach=Path("runs") / RUN_ID, runs_dir=Path("runs"))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("6")
        await pilot.pause(0.2)  # not settle(): the Training step follows the run for as long as it is open
        assert app.draft is None
        command = text_of(app, "#command")
        assert f"tuner run runs/{RUN_ID}/recipe.toml" in command
        assert (tmp_path / "runs" / RUN_ID / "recipe.toml").exists()
        # The frozen recipe is the one shown: there is no draft.
        assert app.screen.query_one("#source", Select).value == "run"
        assert app.screen.toml_text == run.recipe.read_text(encoding="utf-8")
