"""The Training step's dashboard: replay, live tail, control requests, errors, re-attach.

Run directories here are real: events are written with the worker's own EventWriter and read
back by the screen's follower, state.json carries a real pid (this test process when the run
must look alive, a finished child process when it must look crashed).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Button, Collapsible, Footer, Input

from tuner_tui.app import TunerApp
from tuner_tui.runs.events import EventWriter
from tuner_tui.runs.layout import RunDir
from tuner_tui.runs.state import TERMINAL_PHASES, process_start_time, read_state, write_state
from tuner_tui.screens.confirm import ConfirmModal
from tuner_tui.screens.training import TrainingScreen
from tuner_tui.views.series import MAX_PLOT_POINTS, Series
from tuner_tui.widgets.checkpoint_list import CheckpointList
from tuner_tui.widgets.gauges import GaugePanel, MetricCells
from tuner_tui.widgets.log_tail import LogTail, is_noise, read_tail
from tuner_tui.widgets.run_charts import MetricChart

SIZE = (100, 32)
GIB = 1024**3


# --- run directories -------------------------------------------------------------------------


def new_run(root: Path, phase: str = "training", *, pid: int | None = None, max_steps: int = 40) -> RunDir:
    """A run directory as the launcher leaves it; `pid` defaults to this (living) process."""
    run = RunDir(root)
    run.create()
    run.recipe.write_text("schema_version = 1\n", encoding="utf-8")
    pid = os.getpid() if pid is None else pid
    write_state(
        run.state,
        run_id=run.run_id,
        phase=phase,
        step=0,
        max_steps=max_steps,
        pid=pid,
        pid_started=process_start_time(pid),
    )
    return run


def loss_at(step: int) -> float:
    return 3.0 / (1 + 0.1 * step)


def emit_metric(events: EventWriter, step: int, max_steps: int = 40) -> None:
    events.emit(
        "metric",
        step=step,
        max_steps=max_steps,
        epoch=round(step / 20, 4),
        loss=loss_at(step),
        lr=1e-3 * (1 - step / max_steps),
        grad_norm=1 / math.sqrt(step),
        tokens_per_s=1500.0 + step,
        tokens_seen=512 * step,
        eta_s=(max_steps - step) * 0.5,
    )


def write_finished_run(root: Path) -> RunDir:
    """A completed 40-step run: metrics, evals, pruned checkpoints, telemetry, a long log."""
    run = new_run(root)
    with EventWriter(run.events) as events:
        for phase in ("queued", "preparing"):
            events.emit("status", phase=phase)
        events.emit("status", phase="training", step=0, max_steps=40)
        for step in range(1, 41):
            emit_metric(events, step)
            if step % 10 == 0:
                events.emit("eval", split="validation", step=step, loss=loss_at(step) + 0.1)
                removed = [f"checkpoint-{step - 20}"] if step > 20 else []
                path = run.checkpoints / f"checkpoint-{step}"
                events.emit("checkpoint", step=step, path=str(path), bytes=1000 * step, removed=removed)
            if step % 15 == 0:
                events.emit(
                    "telemetry",
                    cpu_percent=55.0,
                    process_cpu_percent=180.0,
                    rss_bytes=int(1.5 * GIB),
                    ram_used_bytes=8 * GIB,
                    ram_total_bytes=16 * GIB,
                    gpus=[],
                )
        events.emit("status", phase="evaluating")
        events.emit("eval", split="test", model="tuned", loss=1.1, accuracy=0.8)
        events.emit("status", phase="completed")
    write_state(run.state, phase="completed", step=40)
    run.log.write_text("".join(f"worker line {i}\n" for i in range(1000)), encoding="utf-8")
    return run


# --- helpers ---------------------------------------------------------------------------------


async def wait_for(
    pilot: Pilot, predicate: Callable[[], bool], timeout: float = 10.0, what: str = ""
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what or predicate}")


def screen_of(app: TunerApp) -> TrainingScreen:
    assert isinstance(app.screen, TrainingScreen), app.screen
    return app.screen


def text_of(app: TunerApp, selector: str) -> str:
    return str(app.screen.query_one(selector).render())


def progress_text(app: TunerApp) -> str:
    return text_of(app, "#progress-text")


# --- replay ----------------------------------------------------------------------------------


async def test_replay_of_a_finished_run_shows_where_it_ended(tmp_path: Path) -> None:
    run = write_finished_run(tmp_path / "runs" / "finished")
    app = TunerApp(attach=run.root, runs_dir=tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "step 40/40" in progress_text(app), what="the last step")
        screen = screen_of(app)
        assert screen.phase == "completed"
        assert text_of(app, "#phase") == "completed"
        assert screen.query_one("#phase").has_class("-completed")
        assert app.run_phase == "completed"
        assert "epoch 2.00" in progress_text(app)
        assert "ETA" not in progress_text(app)  # nothing left to wait for
        cells = screen.query_one(MetricCells).as_text()
        assert f"loss {loss_at(40):.4f}" in cells and "speed 1,540 tokens/s" in cells
        assert "eval loss 0.7000" in cells
        stats = text_of(app, "#stats")
        assert "tuned model: loss 1.1000, accuracy 0.8000" in stats

        # Every loss point is charted (40 points: no decimation needed).
        assert len(screen.view.loss) == 40
        train, evals = screen.query_one("#loss-chart", MetricChart).traces
        assert list(train.xs) == list(range(1, 41))
        assert list(evals.xs) == [10, 20, 30, 40] and evals.points
        (lr,) = screen.query_one("#lr-chart", MetricChart).traces
        assert lr.ys[0] == pytest.approx(1e-3 * (1 - 1 / 40))

        checkpoints = screen.query_one(CheckpointList)
        assert [c.step for c in checkpoints.kept] == [30, 40]
        assert {c.name for c in checkpoints.checkpoints.values() if c.removed} == {
            "checkpoint-10",
            "checkpoint-20",
        }
        gauges = screen.query_one(GaugePanel).as_text()
        assert "CPU: 55%" in gauges and "RAM: 8.0 / 16.0 GiB" in gauges and "worker RSS: 1.5 GiB" in gauges

        log = screen.query_one(LogTail)
        await wait_for(pilot, lambda: log.line_count > 0, what="the log tail")
        assert log.lines[-1] == "worker line 999" and log.line_count == 200

        # A finished run: nothing to stop or save; starting a new one is offered.
        assert screen.query_one("#stop", Button).disabled
        assert screen.query_one("#save-now", Button).disabled
        assert screen.query_one("#start", Button).display
        await pilot.press("s", "v")
        await pilot.pause(0.2)
        assert not isinstance(app.screen, ConfirmModal)
        assert list(run.control.iterdir()) == []


# --- live ------------------------------------------------------------------------------------


async def test_events_written_while_the_app_runs_appear(tmp_path: Path) -> None:
    run = new_run(tmp_path / "live", max_steps=400)
    events = EventWriter(run.events)
    events.emit("status", phase="training", step=0, max_steps=400)
    emit_metric(events, 1, 400)
    app = TunerApp(attach=run.root)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "step 1/400" in progress_text(app), what="the replayed step")
        screen = screen_of(app)
        assert screen.phase == "training" and app.run_phase == "training"
        assert "ETA 0:03:19" in progress_text(app)
        chart = screen.query_one("#loss-chart", MetricChart)
        redraws_before = chart.redraws

        # A burst far faster than anyone can read: every point kept, few redraws.
        for step in range(2, 302):
            emit_metric(events, step, 400)
        events.emit(
            "telemetry",
            cpu_percent=12.0,
            process_cpu_percent=95.0,
            rss_bytes=2 * GIB,
            ram_used_bytes=10 * GIB,
            ram_total_bytes=64 * GIB,
            gpus=[
                {
                    "index": 0,
                    "name": "NVIDIA H200",
                    "util": 87.0,
                    "memory_used": 70 * GIB,
                    "memory_total": 140 * GIB,
                    "temperature": 66.0,
                    "power_w": 512.0,
                }
            ],
        )
        with run.log.open("a", encoding="utf-8") as log:
            log.write("a line the worker just wrote\n")
        await wait_for(pilot, lambda: "step 301/400" in progress_text(app), what="the live step")
        await pilot.pause(REDRAW_GRACE)
        assert len(screen.view.loss) == 301
        assert [x for x in chart.traces[0].xs] == list(range(1, 302))
        assert chart.redraws - redraws_before < 20, "bursts must coalesce into a few redraws"
        gauges = screen.query_one(GaugePanel).as_text()
        assert "GPU 0 util: 87%  NVIDIA H200" in gauges
        assert "GPU 0 memory: 70.0 / 140.0 GiB" in gauges
        assert "GPU 0 temp: 66 °C" in gauges and "GPU 0 power: 512 W" in gauges
        assert "CPU:" not in gauges  # host CPU/RAM only stand in when there is no GPU
        await wait_for(
            pilot,
            lambda: screen.query_one(LogTail).lines[-1:] == ["a line the worker just wrote"],
            what="the new log line",
        )

        events.emit("status", phase="completed")
        write_state(run.state, phase="completed")
        await wait_for(pilot, lambda: screen.phase == "completed", what="completion")
        await wait_for(pilot, lambda: app.run_phase == "completed", what="the app to learn the phase")
    events.close()
    # Quitting the viewer touched nothing in the run.
    assert list(run.control.iterdir()) == []


REDRAW_GRACE = 0.4


# --- control requests --------------------------------------------------------------------------


async def test_save_now_and_stop_write_control_requests(tmp_path: Path) -> None:
    run = new_run(tmp_path / "active")
    with EventWriter(run.events) as events:
        events.emit("status", phase="training", step=0, max_steps=40)
        emit_metric(events, 3)
    app = TunerApp(attach=run.root)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.run_phase == "training", what="an active run")
        screen = screen_of(app)
        assert not screen.query_one("#stop", Button).disabled
        assert not screen.query_one("#start", Button).display  # one run at a time here

        await pilot.press("v")
        await wait_for(pilot, lambda: (run.control / "save-now").exists(), what="the save-now file")
        request = json.loads((run.control / "save-now").read_text())
        assert request["by"] == "tuner (TUI)" and request["requested"]

        # Stop asks first; cancelling writes nothing.
        await pilot.press("s")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal)
        await pilot.press("escape")
        await pilot.pause(0.2)
        assert not (run.control / "stop").exists()

        await pilot.click("#stop")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal)
        await pilot.press("y")
        await wait_for(pilot, lambda: (run.control / "stop").exists(), what="the stop file")
        assert isinstance(app.screen, TrainingScreen)


# --- errors and crashes ------------------------------------------------------------------------


async def test_an_error_event_shows_its_kind_and_hint(tmp_path: Path) -> None:
    run = new_run(tmp_path / "failed")
    hint = "Lower [training] learning_rate (e.g. by 10x)."
    with EventWriter(run.events) as events:
        events.emit("status", phase="training", step=0, max_steps=40)
        for step in range(1, 6):
            emit_metric(events, step)
        events.emit("metric", step=6, max_steps=40, loss=float("nan"), grad_norm=float("inf"), lr=1e-3)
        events.emit(
            "error",
            kind="diverged",
            message="The loss became nan at step 6.",
            hint=hint,
            last_checkpoint=None,
        )
        events.emit("status", phase="failed", error_kind="diverged")
    write_state(run.state, phase="failed")
    app = TunerApp(attach=run.root)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: screen_of(app).phase == "failed", what="the failed phase")
        await pilot.pause(REDRAW_GRACE)
        error = app.screen.query_one("#run-error")
        assert error.display
        shown = text_of(app, "#run-error")
        assert "diverged: The loss became nan at step 6." in shown
        assert f"hint: {hint}" in shown
        assert error.region.y < app.screen.query_one("#loss-chart").region.y  # above the charts
        assert app.screen.query_one("#phase").has_class("-failed")
        assert "loss nan" in screen_of(app).query_one(MetricCells).as_text()
        # The non-finite point is kept but not plotted.
        screen = screen_of(app)
        assert (
            len(screen.view.loss) == 6 and len(screen.query_one("#loss-chart", MetricChart).traces[0].xs) == 5
        )


async def test_a_worker_that_died_shows_as_crashed(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    run = new_run(tmp_path / "crashed", pid=gone.pid)
    with EventWriter(run.events) as events:
        events.emit("status", phase="training", step=0, max_steps=40)
        for step in range(1, 9):
            emit_metric(events, step)
    assert read_state(run.state)["phase"] == "crashed"
    app = TunerApp(attach=run.root)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: screen_of(app).phase == "crashed", what="crashed")
        await pilot.pause(REDRAW_GRACE)
        assert text_of(app, "#phase") == "crashed"
        shown = text_of(app, "#run-error")
        assert f"pid {gone.pid}" in shown and "'training'" in shown
        assert f"tuner run --resume {run.root}" in shown
        assert "step 8/40" in progress_text(app)
        assert app.screen.query_one("#stop", Button).disabled


async def test_a_path_that_is_not_a_run_says_so(tmp_path: Path) -> None:
    app = TunerApp(attach=tmp_path / "nothing-here")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: screen_of(app).unreadable is not None, what="the error")
        await pilot.pause()
        assert "is not a run directory" in text_of(app, "#run-error")
        assert not app.screen.query_one("#dashboard").display


# --- layout ------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(80, 24), (140, 40)])
async def test_dashboard_fits_small_and_large_terminals(tmp_path: Path, size: tuple[int, int]) -> None:
    run = write_finished_run(tmp_path / "runs" / "finished")
    app = TunerApp(attach=run.root)
    async with app.run_test(size=size) as pilot:
        await wait_for(pilot, lambda: "step 40/40" in progress_text(app), what="the replay")
        await pilot.pause(REDRAW_GRACE)
        screen = screen_of(app)
        width, height = size
        footer = screen.query_one(Footer)
        assert footer.region.y == height - 1
        content = screen.query_one("#content")
        assert content.virtual_size.width <= content.size.width  # no sideways scrolling
        for selector in ("#run-name", "#phase", "#stop", "#save-now", "#progress-text"):
            region = screen.query_one(selector).region
            assert region.right <= width and region.height >= 1, (selector, region)
        loss, lr = screen.query_one("#loss-chart"), screen.query_one("#lr-chart")
        if width >= 120:
            assert loss.region.y == lr.region.y  # side by side
        else:
            assert lr.region.y > loss.region.y  # stacked: each keeps a readable width
        assert loss.size.width >= 40
        for selector in ("#loss-chart", "#checkpoints", "#log"):
            screen.query_one(selector).scroll_visible(animate=False)
            await pilot.pause()
            region = screen.query_one(selector).region
            assert region.height > 0 and region.right <= width, (selector, region)


# --- starting ----------------------------------------------------------------------------------


async def test_start_with_a_draft_that_has_problems_lists_them(tmp_path: Path) -> None:
    app = TunerApp(runs_dir=tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.click("#blank")
        await pilot.press("4")
        await pilot.pause()
        shown = text_of(app, "#start-problems")
        assert "Cannot start a run" in shown and "data.path" in shown
        await pilot.click("#start")
        await pilot.pause(0.3)
        assert not (tmp_path / "runs").exists()
        assert any("Not started" in n.message for n in app._notifications)


# --- series decimation and log tail (the pieces that keep the UI fast) ---------------------------


def test_series_counts_every_point_and_keeps_a_bounded_summary() -> None:
    series = Series()
    for step in range(1, 100_001):
        series.append(step, 1.0 + (step % 97) / 97)
    series.append(100_001, 50.0)  # a spike at the very end
    series.append(100_002, float("nan"))
    assert len(series) == 100_002
    xs, ys = series.plot_points()
    assert len(xs) <= MAX_PLOT_POINTS
    assert xs == sorted(xs)
    assert max(ys) == 50.0 and min(ys) == 1.0  # extremes survive decimation
    assert all(math.isfinite(y) for y in ys)


def test_read_tail_reads_the_end_of_a_large_log(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    log.write_text("".join(f"line {i}\n" for i in range(200_000)) + "partial", encoding="utf-8")
    lines, offset = read_tail(log, 200)
    assert lines == [f"line {i}" for i in range(199_800, 200_000)]
    assert offset == log.stat().st_size - len("partial")


ANSI_LOG = (
    "[transformers] \x1b[1mBertForSequenceClassification LOAD REPORT\x1b[0m from: /models/minilm\n"
    "Map:   0%|          | 0/50 [00:00<?, ?examples/s]\rMap: 100%|##########| 50/50 [00:00]\n"
    "\x1b[31mred\x1b[0m\ttabbed \x1b]8;;https://example.com\x1b\\link\x1b]8;;\x1b\\ bell\x07\r\n"
)
ANSI_SHOWN = [
    "[transformers] BertForSequenceClassification LOAD REPORT from: /models/minilm",
    "Map: 100%|##########| 50/50 [00:00]",
    "red\ttabbed link bell\ufffd",
]


def test_read_tail_makes_terminal_output_ready_to_show(tmp_path: Path) -> None:
    """Colours and styles dropped, a redrawn progress bar shown as its last state, a stray control
    character made visible as U+FFFD; tabs and the text itself are kept."""
    log = tmp_path / "worker.log"
    log.write_text(ANSI_LOG, encoding="utf-8")
    lines, offset = read_tail(log)
    assert lines == ANSI_SHOWN and offset == log.stat().st_size


async def test_the_log_tail_renders_library_output_without_escape_characters(tmp_path: Path) -> None:
    """What library output puts in worker.log reaches the screen as plain text: no ESC ("[1m"
    noise on screen, and an SVG screenshot that is not XML), no other control character."""
    import xml.etree.ElementTree as ET

    run = write_finished_run(tmp_path / "runs" / "finished")
    run.log.write_text(ANSI_LOG, encoding="utf-8")
    app = TunerApp(attach=run.root, runs_dir=tmp_path / "runs")
    async with app.run_test(size=(120, 48)) as pilot:
        log = screen_of(app).query_one(LogTail)
        await wait_for(pilot, lambda: len(log.kept) >= len(ANSI_SHOWN), what="the log tail")
        assert list(log.kept) == ANSI_SHOWN
        # The transformers report and the progress bar are library noise: hidden until asked for.
        assert log.lines == ANSI_SHOWN[2:] and log.hidden_count == 2
        await pilot.press("l")
        await pilot.pause()
        assert log.lines == ANSI_SHOWN
        log.show_lines(["raw \x1b[1mbold\x1b[0m, as written"])  # unread lines are cleaned too
        await pilot.pause()
        assert log.lines[-1] == "raw bold, as written"
        shown = ["".join(segment.text for segment in log.render_line(y)) for y in range(log.line_count)]
        assert any("BertForSequenceClassification LOAD REPORT from" in line for line in shown)
        assert not any(ch < " " or "\x7f" <= ch <= "\x9f" for line in shown for ch in line)
        svg = app.export_screenshot()
    assert "\x1b" not in svg
    ET.fromstring(svg)  # well-formed XML: a browser draws it


# --- import hygiene --------------------------------------------------------------------------------


def test_mounting_the_dashboard_imports_no_ml_library(tmp_path: Path) -> None:
    run = write_finished_run(tmp_path / "runs" / "finished")
    code = textwrap.dedent(
        f"""
        import asyncio, json, sys
        from tuner_tui.app import TunerApp

        async def main():
            app = TunerApp(attach={str(run.root)!r})
            async with app.run_test(size=(100, 32)) as pilot:
                for _ in range(100):
                    await pilot.pause(0.05)
                    if "step 40/40" in str(app.screen.query_one("#progress-text").render()):
                        break
                shown = str(app.screen.query_one("#progress-text").render())
            heavy = [m for m in ("torch", "transformers", "peft", "datasets", "evaluate") if m in sys.modules]
            print(json.dumps({{"shown": shown, "heavy": heavy}}))

        asyncio.run(main())
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert "step 40/40" in found["shown"]
    assert found["heavy"] == []


# --- a real run: start it from the app, quit, re-attach ----------------------------------------


@pytest.mark.slow
async def test_start_quit_and_reattach_to_a_real_run(tiny_recipe, tmp_path: Path) -> None:
    recipe = tiny_recipe(max_steps=40, save_every_steps=10)
    runs = tmp_path / "runs"
    app = TunerApp(recipe, runs_dir=runs)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("4", "r")
        await pilot.pause()
        await pilot.press("y")  # the confirmation
        await wait_for(pilot, lambda: app.run_dir is not None, timeout=20, what="the run to start")
        screen = screen_of(app)
        await wait_for(pilot, lambda: len(screen.view.loss) >= 2, timeout=60, what="training steps")
        seen_before_quit = len(screen.view.loss)
    run = RunDir.open(app.run_dir)
    # Quitting the viewer leaves the worker running.
    state = read_state(run.state)
    assert state["phase"] in ("training", "evaluating", "completed"), state

    again = TunerApp(attach=run.root)
    async with again.run_test(size=SIZE) as pilot:
        screen = screen_of(again)
        await wait_for(pilot, lambda: len(screen.view.loss) >= seen_before_quit, what="the replayed history")
        assert screen.view.loss.plot_points()[0][:seen_before_quit] == list(range(1, seen_before_quit + 1))
        await wait_for(pilot, lambda: screen.phase in TERMINAL_PHASES, timeout=90, what="the run to end")
        await pilot.pause(REDRAW_GRACE)
        assert screen.phase == "completed", run.log.read_text()[-2000:]
        assert screen.view.loss.plot_points()[0] == list(range(1, 41))  # live updates arrived, none dropped
        assert "step 40/40" in progress_text(again)
        assert [c.step for c in screen.query_one(CheckpointList).kept] == [30, 40]
        log = screen.query_one(LogTail)
        assert log.line_count + log.hidden_count > 0  # library noise is hidden by default, and counted


def test_telemetry_of_several_ranks_is_labelled_as_theirs() -> None:
    from tuner_tui.widgets.gauges import telemetry_gauges

    event = {"rss_bytes": 3 * 2**30, "ram_total_bytes": 16 * 2**30, "process_cpu_percent": 180.0}
    labels = {g.label for g in telemetry_gauges({**event, "processes": 2})}
    assert "2 ranks RSS" in labels and "worker RSS" not in labels
    assert "worker RSS" in {g.label for g in telemetry_gauges({**event, "processes": 1})}


# --- 80x24: the run above the fold; the log's noise hidden; attach-only -----------------------------


async def test_at_80x24_progress_figures_and_loss_chart_are_above_the_fold(tmp_path: Path) -> None:
    from tests.tui.test_snapshots import write_finished_run as write_snapshot_run

    run = write_snapshot_run(tmp_path / "runs" / "finished")
    app = TunerApp(demo=True, attach=run.root, runs_dir=tmp_path / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.run_phase == "completed", what="the replay")
        await pilot.pause(REDRAW_GRACE)
        screen = screen_of(app)
        footer_y = screen.query_one(Footer).region.y
        assert not screen.query_one(".step-intro").display  # a followed run gets the room
        for selector in ("#progress-row", "#metrics", "#loss-chart"):
            region = screen.query_one(selector).region
            assert region.height > 0 and 0 <= region.y and region.bottom <= footer_y, (selector, region)
        cells = screen.query_one(MetricCells)
        for label in ("loss", "lr", "grad norm", "speed", "tokens", "eval loss"):
            box = cells.query_one(f"#{MetricCells.cell_id(label)}")
            label_box, value_box = box.children
            assert str(label_box.render()) == label
            # Cells of their own, the label's wider than its text: the value never runs into it.
            assert len(label) < label_box.region.width and label_box.region.right <= value_box.region.x
            assert box.region.bottom <= footer_y
        speed = cells.query_one(f"#{MetricCells.cell_id('speed')}").children[1]
        assert str(speed.render()) == "1,540 tokens/s"
        # The loop form is folded away while a run is followed (the lead's form, kept).
        assert screen.query_one("#loop-box", Collapsible).collapsed


async def test_the_loop_form_is_open_when_no_run_is_followed(tmp_path: Path) -> None:
    app = TunerApp(demo=True, runs_dir=tmp_path / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("4")
        await pilot.pause()
        screen = screen_of(app)
        assert not screen.query_one("#loop-box", Collapsible).collapsed
        assert screen.query_one(".step-intro").display
        assert not screen.query_one("#loop").disabled


NOISY_LOG = [
    "step 1: preparing the data",
    " 40%|####      | 20/50 [00:01<00:02, 9.9it/s]",
    "/site-packages/transformers/x.py:12: FutureWarning: `foo` is deprecated and will be removed",
    "  warnings.warn(",
    "Writing model shards: 100%|##########| 2/2 [00:03<00:00,  1.5s/it]",
    "Traceback (most recent call last):",
    "ValueError: the worker's own error",
    # transformers 5's load report of a new classification head
    "Key               | Status  | ",
    "------------------+---------+-",
    "classifier.weight | MISSING | ",
    "Notes:",
    "- MISSING:\tthose params were newly initialized because missing from the checkpoint.",
]


NOISE = [False, True, True, True, True, False, False, True, True, True, True, True]
"""Which lines of NOISY_LOG are library chatter."""


def test_library_noise_is_recognised_and_the_run_s_own_lines_are_not() -> None:
    assert [is_noise(line) for line in NOISY_LOG] == NOISE


async def test_the_log_tail_hides_noise_by_default_says_how_many_and_toggles(tmp_path: Path) -> None:
    run = write_finished_run(tmp_path / "runs" / "finished")
    run.log.write_text("".join(f"{line}\n" for line in NOISY_LOG), encoding="utf-8")
    app = TunerApp(attach=run.root, runs_dir=tmp_path / "runs")
    async with app.run_test(size=(120, 48)) as pilot:
        log = screen_of(app).query_one(LogTail)
        await wait_for(pilot, lambda: len(log.kept) == len(NOISY_LOG), what="the log tail")
        kept = [line for line, noise in zip(NOISY_LOG, NOISE, strict=True) if not noise]
        assert log.lines == kept
        assert log.hidden_count == 9 and "9 library lines hidden" in str(log.border_subtitle)
        assert "l: show all" in str(log.border_subtitle)
        await pilot.press("l")
        await pilot.pause()
        assert log.lines == NOISY_LOG and log.show_all and "all lines" in str(log.border_subtitle)
        await pilot.press("l")
        await pilot.pause()
        assert log.lines == kept


async def test_attach_only_shows_the_frozen_recipe_read_only(tmp_path: Path) -> None:
    run = write_finished_run(tmp_path / "runs" / "finished")
    run.recipe.write_text(
        "schema_version = 1\n[training]\nlearning_rate = 0.000321\nmax_steps = 40\n", encoding="utf-8"
    )
    app = TunerApp(attach=run.root, runs_dir=tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.run_phase == "completed", what="the replay")
        screen = screen_of(app)
        assert app.draft is None
        box = screen.query_one("#loop-box", Collapsible)
        assert box.display and "frozen recipe, read-only" in str(box.title)
        form = screen.query_one("#loop")
        assert form.disabled
        assert screen.query_one("#field-training-learning_rate", Input).value == "0.000321"
        assert "frozen recipe of run finished" in text_of(app, "#draft-note")


async def test_a_preference_run_charts_its_reward_margin_and_accuracy(tmp_path: Path) -> None:
    run = new_run(tmp_path / "runs" / "20250101-000000-polite-abcdef", phase="completed", max_steps=10)
    with EventWriter(run.events) as events:
        events.emit("status", phase="training", step=0, max_steps=10)
        for step in range(1, 11):
            events.emit(
                "metric", step=step, max_steps=10, loss=0.69 - 0.05 * step, lr=1e-3, grad_norm=0.5,
                reward_accuracy=0.5 + 0.05 * step, reward_margin=0.1 * step, chosen_reward=0.05 * step,
                rejected_reward=-0.05 * step,
            )  # fmt: skip
        events.emit("status", phase="completed")
    app = TunerApp(attach=run.root, runs_dir=tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        screen = screen_of(app)
        await wait_for(pilot, lambda: len(screen.view.reward_margin) == 10, what="the replay")
        await pilot.pause(REDRAW_GRACE)
        cells = screen.query_one(MetricCells).as_text()
        assert "reward margin 1.000" in cells and "reward acc 1.00" in cells
        chart = screen.query_one("#lr-chart", MetricChart)
        assert chart.title == "reward margin and accuracy"
        margin, accuracy = chart.traces
        assert list(margin.ys) == pytest.approx([0.1 * s for s in range(1, 11)])
        assert list(accuracy.ys) == pytest.approx([0.5 + 0.05 * s for s in range(1, 11)])
