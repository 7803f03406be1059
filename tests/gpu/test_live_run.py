"""A live `tuner run` worker on the GPU: its NVML telemetry events carry real readings, and the
wizard's dashboard, attached to the run, shows them in its GPU gauges.

One long run serves both tests: started once, stopped (SIGTERM: a checkpoint, phase `stopped`) at
the module's end. The sampler reads every 5 seconds, so the run trains until a reading taken
while it trained has arrived.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.gpu.helpers import GPU_MODULE, ON_GPU, cuda_only, gpu_recipe, wait_while_running
from tests.runs.test_worker import wait_until_done
from tests.waiting import events_of
from tuner_tui.runs.launcher import start_run
from tuner_tui.runs.layout import RunDir
from tuner_tui.runs.state import read_raw_state, worker_alive

pytestmark = GPU_MODULE
GIB = 2**30


def training_readings(run: RunDir) -> list[dict]:
    """Telemetry events written after the first training step was logged."""
    events = events_of(run)
    first_metric = next((e["seq"] for e in events if e["type"] == "metric"), None)
    if first_metric is None:
        return []
    return [e for e in events if e["type"] == "telemetry" and e["seq"] > first_metric]


def busy(event: dict) -> bool:
    """A reading of the GPU at work (on the CPU dry run: any reading)."""
    gpus = event.get("gpus") or []
    return not ON_GPU or bool(gpus and gpus[0].get("util", 0) > 0)


@pytest.fixture(scope="module")
def live_run(
    llama_1b: Path, gpu_data: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunDir]:
    root = tmp_path_factory.mktemp("live")
    recipe = gpu_recipe(
        root / "recipe.toml", llama_1b, gpu_data["alpaca"], max_steps=20000, save_every_steps=20000
    )
    run = start_run(recipe, root / "runs")
    try:
        wait_while_running(
            run, lambda: any(busy(e) for e in training_readings(run)), 180, "a telemetry reading in training"
        )
        yield run
    finally:
        state = read_raw_state(run.state)
        if worker_alive(state):
            os.kill(state["pid"], signal.SIGTERM)  # stops after this step, with a checkpoint
            try:
                wait_until_done(run, timeout=90)
            finally:
                if worker_alive(read_raw_state(run.state)):
                    os.kill(state["pid"], signal.SIGKILL)


@cuda_only
def test_nvml_telemetry_events_carry_real_gpu_readings(live_run: RunDir, measurements: dict) -> None:
    import torch

    assert not [e for e in events_of(live_run, "log") if "GPU telemetry off" in e.get("message", "")]
    reading = next(e for e in training_readings(live_run) if busy(e))
    gpu = reading["gpus"][0]
    measurements["telemetry"] = gpu
    assert gpu["index"] == 0 and gpu["name"] == torch.cuda.get_device_name(0)
    assert 0 < gpu["util"] <= 100
    total = torch.cuda.get_device_properties(0).total_memory
    assert abs(gpu["memory_total"] / total - 1) < 0.05, (gpu["memory_total"], total)
    # The worker holds at least the bf16 weights (2.2 GB) on the GPU.
    assert 2 * GIB < gpu["memory_used"] <= gpu["memory_total"]
    assert 15 <= gpu["temperature"] <= 100
    assert 10 < gpu["power_w"] < 2000
    assert reading["rss_bytes"] > 0 and reading["processes"] == 1


def gauge_text(event: dict) -> str:
    from tuner_tui.widgets.gauges import telemetry_gauges

    return "\n".join(f"{g.label}: {g.text}" for g in telemetry_gauges(event))


async def until(predicate: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.1)


async def test_dashboard_gpu_gauges_follow_the_live_run(live_run: RunDir) -> None:
    from tuner_tui.app import TunerApp
    from tuner_tui.screens.training import TrainingScreen
    from tuner_tui.widgets.gauges import GaugePanel

    app = TunerApp(attach=live_run.root, runs_dir=live_run.root.parent)
    async with app.run_test(size=(100, 32)):
        await until(lambda: isinstance(app.screen, TrainingScreen), "the Training screen", 30)
        panel = app.screen.query_one(GaugePanel)
        # Fed by the run: after a reading that arrives while the app watches, the gauges say
        # exactly what the newest telemetry event says.
        seen = len(events_of(live_run, "telemetry"))
        await until(lambda: len(events_of(live_run, "telemetry")) > seen, "a new telemetry event", 30)
        await until(
            lambda: panel.as_text() == gauge_text(events_of(live_run, "telemetry")[-1]),
            "the gauges to show the newest telemetry event",
        )
        text = panel.as_text()
        if ON_GPU:
            import torch

            name = torch.cuda.get_device_name(0)
            assert re.search(rf"^GPU 0 util: \d+%  {re.escape(name)}$", text, re.M), text
            used, total = map(
                float, re.search(r"^GPU 0 memory: ([\d.]+) / ([\d.]+) GiB$", text, re.M).groups()
            )
            assert 2 <= used <= total and total > 10, text
            assert re.search(r"^GPU 0 temp: \d+ °C$", text, re.M) and re.search(
                r"^GPU 0 power: \d+ W$", text, re.M
            )
            assert "CPU:" not in text  # host CPU and RAM stand in only when there is no GPU
        else:
            assert "CPU:" in text and "RAM:" in text
        assert "worker RSS:" in text
