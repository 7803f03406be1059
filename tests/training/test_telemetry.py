"""Telemetry: CPU/RSS always; per-GPU numbers through NVML, faked at the pynvml boundary."""

from __future__ import annotations

import sys
import time
import types
from pathlib import Path

from tuner_tui.runs.events import EventWriter, read_events
from tuner_tui.training.telemetry import GpuProbe, TelemetrySampler


class _NVMLError(Exception):
    pass


def fake_pynvml(count: int = 2, fail_init: bool = False) -> types.ModuleType:
    nvml = types.ModuleType("pynvml")
    nvml.NVML_TEMPERATURE_GPU = 0
    nvml.NVMLError = _NVMLError
    state = {"shutdown": False}

    def init() -> None:
        if fail_init:
            raise _NVMLError("Driver Not Loaded")

    nvml.nvmlInit = init
    nvml.nvmlShutdown = lambda: state.__setitem__("shutdown", True)
    nvml.nvmlDeviceGetCount = lambda: count
    nvml.nvmlDeviceGetHandleByIndex = lambda i: i
    nvml.nvmlDeviceGetName = lambda h: b"NVIDIA H100 80GB HBM3"
    nvml.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=50 + h, memory=10)
    nvml.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(used=(h + 1) * 2**30, total=80 * 2**30)
    nvml.nvmlDeviceGetTemperature = lambda h, sensor: 60 + h

    def power(h: int) -> int:
        if h == 1:
            raise _NVMLError("Not Supported")
        return 300_000

    nvml.nvmlDeviceGetPowerUsage = power
    nvml.state = state
    return nvml


def test_gpu_probe_reads_every_gpu_and_skips_unsupported_fields(monkeypatch) -> None:
    nvml = fake_pynvml()
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    probe = GpuProbe()
    assert probe.available
    gpus = probe.sample()
    assert gpus[0] == {
        "index": 0,
        "name": "NVIDIA H100 80GB HBM3",
        "util": 50,
        "memory_used": 2**30,
        "memory_total": 80 * 2**30,
        "temperature": 60,
        "power_w": 300.0,
    }
    assert gpus[1]["util"] == 51 and "power_w" not in gpus[1]
    probe.close()
    assert nvml.state["shutdown"]


def test_gpu_probe_without_driver_says_why(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(fail_init=True))
    probe = GpuProbe()
    assert not probe.available and probe.sample() == []
    assert "no NVIDIA driver" in probe.reason and "Driver Not Loaded" in probe.reason


def test_sampler_emits_at_start_and_periodically(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(count=1))
    events = EventWriter(tmp_path / "events.jsonl")
    sampler = TelemetrySampler(events, interval_s=0.05)
    sampler.start()
    time.sleep(0.3)
    sampler.stop()
    events.close()
    read, _ = read_events(tmp_path / "events.jsonl")
    telemetry = [e for e in read if e["type"] == "telemetry"]
    assert len(telemetry) >= 3
    first = telemetry[0]
    assert first["rss_bytes"] > 0 and first["ram_total_bytes"] >= first["ram_used_bytes"] > 0
    assert first["gpus"][0]["memory_total"] == 80 * 2**30


def test_sampler_on_cpu_logs_why_gpus_are_missing(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(fail_init=True))
    with EventWriter(tmp_path / "events.jsonl") as events:
        sampler = TelemetrySampler(events, interval_s=10)
        sampler.start()
        sampler.stop()
    read, _ = read_events(tmp_path / "events.jsonl")
    assert read[0]["type"] == "log" and "GPU telemetry off" in read[0]["message"]
    assert read[1]["type"] == "telemetry" and read[1]["gpus"] == []


def test_rank_0_lists_the_other_nodes_gpus_from_their_files(tmp_path: Path, monkeypatch) -> None:
    from tuner_tui.training.telemetry import NodeTelemetryFile, node_telemetry_file
    from tuner_tui.widgets.gauges import telemetry_gauges

    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(count=2))
    other = TelemetrySampler(NodeTelemetryFile(tmp_path, 1), interval_s=10)
    other.start()  # its first sample goes to telemetry.node1.json, its log line nowhere
    other.stop()
    assert node_telemetry_file(tmp_path, 1).is_file()
    with EventWriter(tmp_path / "events.jsonl") as events:
        sampler = TelemetrySampler(events, interval_s=10, other_nodes=tmp_path)
        event = sampler.sample()
        sampler.stop()
    assert [(g.get("node"), g["index"]) for g in event["gpus"]] == [(None, 0), (None, 1), (1, 0), (1, 1)]
    assert event["nodes"][0]["node"] == 1 and "gpus" not in event["nodes"][0]
    labels = [g.label for g in telemetry_gauges(event)]
    assert "GPU 1 util" in labels and "node 1 GPU 1 util" in labels
    stale = TelemetrySampler(EventWriter(tmp_path / "e2.jsonl"), interval_s=0.0, other_nodes=tmp_path)
    time.sleep(0.05)
    assert [g.get("node") for g in stale.sample()["gpus"]] == [None, None]  # a node gone is not shown
    stale.stop()
