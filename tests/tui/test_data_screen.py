"""The Data step: inspect a file, edit format/mapping and cleaning, preview cleaning, cancel, errors."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import pytest
from rich.console import Console
from textual import on
from textual.app import App, ComposeResult
from textual.widgets import Button, DataTable, Input, Select, Static

from tests.tiny import write_recipe
from tests.tui.conftest import burst, until
from tuner_tui.app import TunerApp
from tuner_tui.screens.data import DataScreen
from tuner_tui.widgets.cleaning_list import CleaningList, CleaningStepsEdited, StepRow
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


def inspection_shown(screen: DataScreen):
    """A predicate: the inspection's outcome (report or error) is on screen and no job runs.

    `settle` alone can end before the inspection starts: a press reaches the screen a few
    messages later, and a worker that has not started yet is not "running"."""

    def shown() -> bool:
        outcome = screen.query_one("#report-title").display or screen.query_one("#data-error").display
        return bool(outcome) and screen.query_one("#cancel", Button).disabled

    return shown


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
        await until(pilot, inspection_shown(screen), "the inspection")
        await settle(app, pilot)
        assert "detected classification" in text(screen, "#detected")
        assert "'body'" in text(screen, "#detected")  # the evidence names the columns
        table = screen.query_one("#preview", DataTable)
        assert table.row_count == len(ROWS) and len(table.columns) == 2
        mapping = {s.name: s.value for s in screen.query(".role-column").results(Select)}
        assert mapping == {"text": "body", "label": "category"}
        quality = text(screen, "#report-quality")
        assert "exact duplicates" in quality and "PII: email" in quality
        assert "jane.doe@example.com" not in quality  # PII examples are masked
        assert "refund" in quality  # label counts
        assert screen.query_one("#chars-histogram", Histogram).summary["max"] > 0
        assert screen.query_one("#cancel", Button).disabled  # idle again


async def test_mapping_and_format_edits_go_to_the_draft(app: TunerApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_data(app, pilot)
        screen.query_one("#inspect", Button).press()
        await until(pilot, inspection_shown(screen), "the inspection")
        await settle(app, pilot)
        label = next(s for s in screen.query(".role-column").results(Select) if s.name == "label")
        label.value = "body"
        await until(pilot, lambda: app.draft.recipe.data.fields == {"label": "body"}, "the mapping")
        screen.query_one("#data-format", Select).value = "text"
        await until(pilot, lambda: app.draft.recipe.data.format == "text", "the format")
        # In the same edit: 'label' is not a role of 'text'.
        assert app.draft.recipe.data.fields == {}

        def roles() -> list[str | None]:
            return [s.name for s in screen.query(".role-column").results(Select)]

        await until(pilot, lambda: roles() == ["text"], "the roles of 'text'")


def shown_ops(cleaning: CleaningList) -> list[str]:
    """The ops of the rows on screen, once the rows are those of the widget's steps."""
    rows = list(cleaning.query(StepRow))
    if [(r.index, r.step) for r in rows] != list(enumerate(cleaning.steps)):
        return ["(rows not rebuilt yet)"]
    return [str(r.step["op"]) for r in rows]


async def until_steps(app: TunerApp, pilot, cleaning: CleaningList, ops: list[str]) -> None:
    """Until the draft holds these steps and the rows on screen show them."""

    def done() -> bool:
        draft = [s["op"] for s in app.draft.recipe.data.cleaning]
        return draft == ops and shown_ops(cleaning) == ops

    await until(pilot, done, f"steps {ops}")


async def test_cleaning_steps_add_reorder_remove_and_run(app: TunerApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_data(app, pilot)
        screen.query_one("#inspect", Button).press()
        await until(pilot, inspection_shown(screen), "the inspection")
        await settle(app, pilot)
        cleaning = screen.query_one(CleaningList)
        added: list[str] = []
        for op in ("dedup_exact", "drop_empty", "dedup_near"):
            cleaning.query_one("#add-op", Select).value = op
            cleaning.query_one("#add-step", Button).press()
            added.append(op)
            await until_steps(app, pilot, cleaning, added)
        assert app.draft.recipe.data.cleaning[2]["threshold"] == 0.8
        # Move drop_empty up, then remove dedup_near.
        rows = list(cleaning.query(StepRow))
        rows[1].query_one(".up", Button).press()
        await until_steps(app, pilot, cleaning, ["drop_empty", "dedup_exact", "dedup_near"])
        list(cleaning.query(StepRow))[2].query_one(".remove", Button).press()
        await until_steps(app, pilot, cleaning, ["drop_empty", "dedup_exact"])
        screen.query_one("#run-cleaning", Button).press()
        await until(pilot, lambda: "rows ->" in text(screen, "#cleaning-status"), "the cleaning preview")
        status = text(screen, "#cleaning-status")
        assert "5 rows -> 3 rows" in status
        result = text(screen, "#cleaning-result")
        assert "drop_empty" in result and "dedup_exact" in result


class CleaningHost(App):
    """The cleaning list alone; the draft it edits is played by the test (no echo of its own)."""

    def __init__(self) -> None:
        super().__init__()
        self.reported: list[list[dict]] = []

    def compose(self) -> ComposeResult:
        yield CleaningList([], id="cleaning")

    @on(CleaningStepsEdited)
    def _edited(self, event: CleaningStepsEdited) -> None:
        self.reported.append(event.steps)


async def test_a_stale_draft_does_not_undo_a_newer_cleaning_edit() -> None:
    """The draft echoes the steps after every change, behind the widget: on a busy machine the
    echo of the draft before an edit arrives after the edit. It must not put the old steps back
    (the rows under the pointer would change); a change made elsewhere still shows."""
    app = CleaningHost()
    async with app.run_test(size=SIZE) as pilot:
        cleaning = app.query_one(CleaningList)
        cleaning.query_one("#add-op", Select).value = "dedup_exact"
        cleaning.query_one("#add-step", Button).press()
        await until(pilot, lambda: shown_ops(cleaning) == ["dedup_exact"], "the new step")
        await until(pilot, lambda: app.reported == [[{"op": "dedup_exact"}]], "the edit reported")
        await cleaning.set_steps([])  # the draft from before the edit, echoed late
        # The edit stays on screen and is reported once more (in case it was lost on the way).

        def handled() -> bool:
            return len(app.reported) == 2 or shown_ops(cleaning) != ["dedup_exact"]

        await until(pilot, handled, "the late echo handled")
        assert shown_ops(cleaning) == ["dedup_exact"]
        assert app.reported[1] == [{"op": "dedup_exact"}]
        await cleaning.set_steps([{"op": "dedup_exact"}])  # the draft caught up: nothing to do
        await cleaning.set_steps([{"op": "drop_empty"}])  # set elsewhere: shown
        await until(pilot, lambda: shown_ops(cleaning) == ["drop_empty"], "the steps set elsewhere")
        assert len(app.reported) == 2  # showing the draft's steps is not an edit


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
        await until(pilot, lambda: app.draft.recipe.data.path == "bad.jsonl", "the new path")
        screen.query_one("#inspect", Button).press()
        await until(pilot, inspection_shown(screen), "the error")
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


def tiny_app(tiny_assets, tmp_path: Path, **training: object) -> TunerApp:
    recipe = write_recipe(tmp_path / "recipe.toml", tiny_assets["data"], tiny_assets["model"], **training)
    return TunerApp(recipe, runs_dir=tmp_path / "runs")


async def inspect(app: TunerApp, pilot, screen: DataScreen) -> None:
    """Inspect the path in the input and wait until the report of that job is on screen."""
    screen.query_one("#inspect", Button).press()
    await until(
        pilot,
        lambda: screen.query_one("#report-title").display and screen.query_one("#cancel", Button).disabled,
        "the report",
    )


async def test_lengths_are_tokens_of_the_recipe_model_with_the_truncation_share(
    tiny_assets, tmp_path: Path
) -> None:
    """As `tuner inspect --recipe`: the model's tokenizer and chat template, and the share of rows
    longer than training.max_length; a new max_length or model inspects again."""
    app = tiny_app(tiny_assets, tmp_path, max_length=16)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_data(app, pilot)
        await inspect(app, pilot, screen)
        overview = text(screen, "#report-overview")
        assert "tokens: tokenizer " in overview and "whitespace" not in overview
        assert "max_length 16 (tokens): 64 of 64 rows (100.0%) would be cut" in overview
        assert not screen.query_one("#tokenizer-note").display
        histogram = screen.query_one("#tokens-histogram", Histogram)
        assert histogram.title == "tokens per row" and histogram.summary is not None
        # The tiny model's tokenizer has no chat template: training uses the fallback, and so does this.
        assert histogram.summary["counted_with"].endswith("with fallback chat template (it has none)")

        from tuner_tui.screens.messages import DraftEdited

        app.post_message(DraftEdited({"training.max_length": 4096}))
        await until(pilot, lambda: "max_length 4,096" in text(screen, "#report-overview"), "re-inspected")
        assert "0 of 64 rows (0.0%)" in text(screen, "#report-overview")

        app.post_message(DraftEdited({"model.name_or_path": ""}))
        await until(pilot, lambda: screen.query_one("#tokenizer-note").display, "counted in words")
        assert "whitespace words" in text(screen, "#report-overview")
        assert "no model chosen yet" in text(screen, "#tokenizer-note")
        assert screen.query_one("#tokens-histogram", Histogram).title == "words per row"


async def test_a_tokenizer_that_cannot_load_falls_back_to_words_in_one_line(app: TunerApp) -> None:
    """'org/model' is not on this machine and the hub is offline in tests."""
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_data(app, pilot)
        await inspect(app, pilot, screen)
        note = screen.query_one("#tokenizer-note", Static)
        assert note.display
        assert text(screen, "#tokenizer-note").startswith(
            "Lengths are whitespace words: the tokenizer of 'org/model' did not load."
        )
        assert note.content_region.height == 1  # one line, however long the reason
        assert "HF_HUB_OFFLINE" in str(note.tooltip)  # the whole reason, on hover
        assert "whitespace words" in text(screen, "#report-overview")
        assert screen.query_one("#tokens-histogram", Histogram).title == "words per row"


async def test_a_new_path_clears_the_old_report_at_once(
    app: TunerApp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_jsonl(tmp_path / "other.jsonl", ROWS[:2])
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_data(app, pilot)
        await inspect(app, pilot, screen)
        assert screen.query_one("#preview").display and text(screen, "#report-overview")
        screen.query_one("#data-path", Input).value = "other.jsonl"
        await pilot.pause()
        for shown in ("#preview", "#preview-title", "#report-title", "#histograms"):
            assert not screen.query_one(shown).display, shown
        assert text(screen, "#report-overview") == "" and text(screen, "#report-quality") == ""
        assert text(screen, "#detected") == "" and not list(screen.query(".role-column"))
        assert text(screen, "#data-status") == "Not inspected yet: Enter inspects this path."

        # What a slow load of the old path still brings back is dropped, not shown.
        import tuner_tui.data.load

        started, release = threading.Event(), threading.Event()
        real = tuner_tui.data.load.load_data

        def slow_load(*args, **kwargs):
            started.set()
            release.wait(10)
            return real(*args, **kwargs)

        monkeypatch.setattr(tuner_tui.data.load, "load_data", slow_load)
        screen.query_one("#inspect", Button).press()
        await pilot.pause()
        assert started.wait(10)
        screen.query_one("#data-path", Input).value = "train.jsonl"
        await pilot.pause()
        release.set()
        await settle(app, pilot)
        assert not screen.query_one("#preview").display and not screen.query_one("#report-title").display
        assert text(screen, "#data-status") == "Not inspected yet: Enter inspects this path."


async def test_a_burst_typed_into_the_path_is_kept_exactly(app: TunerApp) -> None:
    typed = "data/support-tickets_2026/exports.v2/all-regions/train_deduplicated-final.jsonl"
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_data(app, pilot)
        path = screen.query_one("#data-path", Input)
        path.focus()
        path.value = ""
        await until(pilot, lambda: app.draft.recipe.data.path == "", "the path cleared")
        await burst(pilot, typed)
        await until(pilot, lambda: app.draft.recipe.data.path == typed, "the draft to hold the path")
        for _ in range(5):
            await pilot.pause()
        assert path.value == typed
        assert app.draft.recipe.data.path == typed


@pytest.mark.parametrize("size", [(80, 24), (140, 40)])
def test_data_snapshot(snap_compare, tmp_path: Path, size: tuple[int, int]) -> None:
    """The demo's data inspected; every path shown is the recipe's relative one."""

    async def inspect(pilot) -> None:
        await pilot.press("2")
        await pilot.pause()
        pilot.app.screen.query_one("#inspect", Button).press()
        await until(pilot, inspection_shown(pilot.app.screen), "the inspection")
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


async def test_preference_pairs_show_their_statistics(tmp_path: Path) -> None:
    pairs = [
        {"prompt": f"Question {i}?", "chosen": f"A kind and full answer {i}.", "rejected": f"No {i}."}
        for i in range(6)
    ] + [{"prompt": "Same?", "chosen": "Same.", "rejected": "Same."}]
    write_jsonl(tmp_path / "pairs.jsonl", pairs)
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(
        RECIPE.replace("train.jsonl", "pairs.jsonl").replace("sequence_classification", "preference"),
        encoding="utf-8",
    )
    app = TunerApp(recipe, runs_dir=tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_data(app, pilot)
        screen.query_one("#inspect", Button).press()
        await until(pilot, inspection_shown(screen), "the inspection")
        assert "detected preference" in text(screen, "#detected")
        quality = text(screen, "#report-quality")
        assert "Pairs" in quality and "7 (6 can train)" in quality
        assert "chosen = rejected" in quality and "in 100% of pairs" in quality
