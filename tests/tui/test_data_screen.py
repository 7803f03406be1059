"""The Data step: inspect a file, edit format/mapping and cleaning, preview cleaning, cancel, errors."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import pytest
from rich.console import Console
from textual.widgets import Button, DataTable, Input, Select, Static

from tuner_tui.app import TunerApp
from tuner_tui.screens.data import DataScreen
from tuner_tui.widgets.cleaning_list import CleaningList, StepRow
from tuner_tui.widgets.histogram import Histogram

SIZE = (120, 40)
RECIPE = """\
schema_version = 1

[data]
path = "train.jsonl"

[model]
name_or_path = "org/model"
task = "sequence_classification"
"""
ROWS = [
    {"body": "My card was stolen, mail me at jane.doe@example.com", "category": "card"},
    {"body": "Where is my refund for the order?", "category": "refund"},
    {"body": "Where is my refund for the order?", "category": "refund"},
    {"body": "   ", "category": "refund"},
    {"body": "I cannot log in to the app since yesterday", "category": "access"},
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def app(tmp_path: Path) -> TunerApp:
    write_jsonl(tmp_path / "train.jsonl", ROWS)
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(RECIPE, encoding="utf-8")
    return TunerApp(recipe, runs_dir=tmp_path / "runs")


async def open_data(app: TunerApp, pilot) -> DataScreen:
    await pilot.press("2")
    await pilot.pause()
    assert isinstance(app.screen, DataScreen)
    return app.screen


async def settle(app: TunerApp, pilot, timeout: float = 20.0) -> None:
    """Until no worker runs (a cancelled one included) and their messages are handled."""
    waited = 0.0
    while any(w.is_running for w in app.workers) and waited < timeout:
        await pilot.pause(0.05)
        waited += 0.05
    await pilot.pause()
    await pilot.pause()


def text(screen: DataScreen, selector: str) -> str:
    """What a Static shows, as plain text (rich tables rendered 120 wide)."""
    console = Console(width=120, record=True, file=io.StringIO())
    console.print(screen.query_one(selector, Static).content)
    return console.export_text().strip()


async def test_inspect_shows_format_preview_and_report(app: TunerApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_data(app, pilot)
        await pilot.click("#data-path")
        await pilot.press("enter")
        await settle(app, pilot)
        assert "detected classification" in text(screen, "#detected")
        assert "'body'" in text(screen, "#detected")  # the evidence names the columns
        table = screen.query_one("#preview", DataTable)
        assert table.row_count == len(ROWS) and len(table.columns) == 2
        mapping = {s.name: s.value for s in screen.query(".role-column").results(Select)}
        assert mapping == {"text": "body", "label": "category"}
        quality = text(screen, "#report-quality")
        assert "1 exact duplicate" in quality and "email" in quality
        assert "jane.doe@example.com" not in quality  # PII examples are masked
        assert "refund" in quality  # label counts
        assert screen.query_one("#chars-histogram", Histogram).summary["max"] > 0
        assert screen.query_one("#cancel", Button).disabled  # idle again


async def test_mapping_and_format_edits_go_to_the_draft(app: TunerApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_data(app, pilot)
        screen.query_one("#inspect", Button).press()
        await settle(app, pilot)
        label = next(s for s in screen.query(".role-column").results(Select) if s.name == "label")
        label.value = "body"
        await pilot.pause()
        assert app.draft.recipe.data.fields == {"label": "body"}
        screen.query_one("#data-format", Select).value = "text"
        await pilot.pause()
        assert app.draft.recipe.data.format == "text"
        assert app.draft.recipe.data.fields == {}  # 'label' is not a role of 'text'
        await settle(app, pilot)
        roles = [s.name for s in screen.query(".role-column").results(Select)]
        assert roles == ["text"]


async def test_cleaning_steps_add_reorder_remove_and_run(app: TunerApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_data(app, pilot)
        screen.query_one("#inspect", Button).press()
        await settle(app, pilot)
        cleaning = screen.query_one(CleaningList)
        for op in ("dedup_exact", "drop_empty", "dedup_near"):
            cleaning.query_one("#add-op", Select).value = op
            cleaning.query_one("#add-step", Button).press()
            await pilot.pause()
        steps = app.draft.recipe.data.cleaning
        assert [s["op"] for s in steps] == ["dedup_exact", "drop_empty", "dedup_near"]
        assert steps[2]["threshold"] == 0.8
        # Move drop_empty up, then remove dedup_near.
        rows = list(cleaning.query(StepRow))
        rows[1].query_one(".up", Button).press()
        await pilot.pause()
        assert [s["op"] for s in app.draft.recipe.data.cleaning] == [
            "drop_empty",
            "dedup_exact",
            "dedup_near",
        ]
        list(cleaning.query(StepRow))[2].query_one(".remove", Button).press()
        await pilot.pause()
        assert [s["op"] for s in app.draft.recipe.data.cleaning] == ["drop_empty", "dedup_exact"]
        screen.query_one("#run-cleaning", Button).press()
        await settle(app, pilot)
        status = text(screen, "#cleaning-status")
        assert "5 rows -> 3 rows" in status
        result = text(screen, "#cleaning-result")
        assert "drop_empty" in result and "dedup_exact" in result


async def test_step_parameters_are_validated_before_they_reach_the_draft(app: TunerApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_data(app, pilot)
        cleaning = screen.query_one(CleaningList)
        cleaning.query_one("#add-op", Select).value = "length_filter"
        cleaning.query_one("#add-step", Button).press()
        await pilot.pause()
        row = cleaning.query_one(StepRow)
        high = next(i for i in row.query(Input).results(Input) if i.name == "max_tokens")
        high.value = "12x"
        await pilot.pause()
        assert high.has_class("-invalid")
        assert "whole number" in str(row.query_one(".step-error", Static).visual)
        assert app.draft.recipe.data.cleaning[0]["max_tokens"] == 2048
        high.value = ""  # blank: no upper bound, the key is left out
        await pilot.pause()
        assert app.draft.recipe.data.cleaning == [{"op": "length_filter", "min_tokens": 1}]


async def test_a_broken_file_shows_a_clear_error(app: TunerApp, tmp_path: Path) -> None:
    (tmp_path / "bad.jsonl").write_text('{"text": "fine"}\n{"text": broken\n', encoding="utf-8")
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_data(app, pilot)
        screen.query_one("#data-path", Input).value = "bad.jsonl"
        await pilot.pause()
        assert app.draft.recipe.data.path == "bad.jsonl"
        screen.query_one("#inspect", Button).press()
        await settle(app, pilot)
        error = text(screen, "#data-error")
        assert error.startswith("Could not load the data:") and "bad.jsonl:2:" in error
        assert "Traceback" not in error
        assert not screen.query_one("#preview").display


async def test_cancel_a_long_load(app: TunerApp, monkeypatch: pytest.MonkeyPatch) -> None:
    import tuner_tui.data.load

    started, release = threading.Event(), threading.Event()
    real = tuner_tui.data.load.load_data

    def slow_load(*args, **kwargs):
        started.set()
        release.wait(10)
        return real(*args, **kwargs)

    monkeypatch.setattr(tuner_tui.data.load, "load_data", slow_load)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_data(app, pilot)
        screen.query_one("#inspect", Button).press()
        await pilot.pause()
        assert started.wait(10)
        await pilot.pause()
        cancel = screen.query_one("#cancel", Button)
        assert not cancel.disabled and screen.query_one("#busy").display
        cancel.press()
        await pilot.pause()
        assert text(screen, "#data-status") == "Cancelled."
        assert cancel.disabled and not screen.query_one("#busy").display
        release.set()
        await settle(app, pilot)
        # What the cancelled worker read is dropped, not shown.
        assert not screen.query_one("#preview").display
        assert text(screen, "#data-status") == "Cancelled."


@pytest.mark.parametrize("size", [(80, 24), (140, 40)])
def test_data_snapshot(snap_compare, tmp_path: Path, size: tuple[int, int]) -> None:
    """The demo's data inspected; every path shown is the recipe's relative one."""

    async def inspect(pilot) -> None:
        await pilot.press("2")
        await pilot.pause()
        pilot.app.screen.query_one("#inspect", Button).press()
        await settle(pilot.app, pilot)
        pilot.app.clear_notifications()
        pilot.app.screen.query_one("#data-path", Input).blur()  # no blinking cursor
        await pilot.pause()

    app = TunerApp(demo=True, runs_dir=tmp_path / "runs")
    assert snap_compare(app, terminal_size=size, run_before=inspect)


async def test_path_completion_is_relative_to_the_recipe(tmp_path: Path) -> None:
    from tuner_tui.widgets.path_input import PathSuggester

    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "train.jsonl", ROWS)
    suggester = PathSuggester(lambda: tmp_path)
    assert await suggester.get_suggestion("da") == "data/"
    assert await suggester.get_suggestion("data/tr") == "data/train.jsonl"
    assert await suggester.get_suggestion("nothing/") is None
