"""The wizard's Try it panel (answers streamed from a separate process into the screen, base and
tuned side by side) and Monitor view (traffic from the requests log, drift checks), with Pilot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from textual.app import App
from textual.widgets import DataTable, Static

from tests.tui.conftest import until

pytestmark = pytest.mark.slow


class Host(App[None]):
    def __init__(self, screen: object) -> None:
        super().__init__()
        self.first = screen

    def on_mount(self) -> None:
        self.push_screen(self.first)  # type: ignore[arg-type]


def pane(app: App, which: str) -> str:
    return str(app.screen.query_one(f"#answer-{which}", Static).render())


async def test_try_it_streams_base_and_tuned_and_closes(causal_run: Path) -> None:
    from tuner_tui.screens.try_it import TryItScreen

    screen = TryItScreen(causal_run)
    app = Host(screen)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: screen.ready, "the models to load", timeout=120)
        await pilot.click("#prompt")
        for key in "What is the capital of Peru?":
            await pilot.press(key if key != " " else "space")
        await pilot.press("enter")
        await until(
            pilot, lambda: screen.current is None and "tokens" in pane(app, "tuned"), "both answers", 120
        )
        assert pane(app, "tuned").startswith("The capital")
        assert pane(app, "base")  # an answer (or "(empty answer)") from the base model
        process = screen.process
        await pilot.press("escape")
        assert process is not None
        await until(pilot, lambda: process.proc.poll() is not None, "the process to end", 30)


async def test_monitor_shows_traffic_and_drift(classifier_run: Path) -> None:
    from tests.deploy.conftest import classifier_rows
    from tuner_tui.screens.monitor import MonitorScreen, traffic_text

    # What a server started with --log-prompts writes (this run is never served by the tests).
    log = classifier_run / "serve" / "requests.jsonl"
    log.parent.mkdir(exist_ok=True)
    rows = classifier_rows(40, seed=4)
    lines = [
        {"time": f"2026-12-02T10:00:{i:02d}.000Z", "latency_s": 0.1 * (i % 5 + 1), "prompt_tokens": 9,
         "status": 200, "prompt": row["text"]}
        for i, row in enumerate(rows)
    ]  # fmt: skip
    log.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert traffic_text(log) == "Requests: 40 over 39 s (1.03/s)\nLatency: p50 300 ms, p95 500 ms"
    screen = MonitorScreen(classifier_run)
    app = Host(screen)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(
            pilot, lambda: "Requests: 40" in str(screen.query_one("#traffic", Static).render()), "traffic"
        )
        assert "Not being served" in str(screen.query_one("#server", Static).render())
        await pilot.press("r")
        table = screen.query_one("#checks", DataTable)
        await until(pilot, lambda: table.row_count == 5, "the drift checks", 120)
        assert "training rows" in str(screen.query_one("#drift-status", Static).render())
