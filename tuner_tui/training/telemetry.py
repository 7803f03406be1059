"""CPU, memory and per-GPU telemetry, sampled on a background thread into `telemetry` events.

GPU numbers come from NVML (nvidia-ml-py). Without an NVIDIA driver NVML fails to initialise;
the sampler then reports CPU and memory only and says once, in a `log` event, why GPUs are absent.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Protocol

import psutil

from tuner_tui.runs.state import atomic_write_json


class GpuProbe:
    """Reads every local GPU through NVML; `available` is False (with `reason`) when it cannot."""

    def __init__(self) -> None:
        self.available = False
        self.reason = ""
        self._nvml: Any = None
        self._handles: list[Any] = []
        try:
            import pynvml

            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            self._nvml = pynvml
            self.available = count > 0
            self.reason = "" if count else "NVML reports no GPUs"
        except ImportError:
            self.reason = "nvidia-ml-py is not installed"
        except Exception as exc:  # pynvml.NVMLError and its many subclasses
            self.reason = f"NVML unavailable ({exc}): no NVIDIA driver on this machine"

    def sample(self) -> list[dict[str, Any]]:
        if not self.available:
            return []
        nvml = self._nvml
        gpus = []
        for index, handle in enumerate(self._handles):
            gpu: dict[str, Any] = {"index": index}
            readers = {
                "name": lambda h: _text(nvml.nvmlDeviceGetName(h)),
                "util": lambda h: nvml.nvmlDeviceGetUtilizationRates(h).gpu,
                "memory_used": lambda h: nvml.nvmlDeviceGetMemoryInfo(h).used,
                "memory_total": lambda h: nvml.nvmlDeviceGetMemoryInfo(h).total,
                "temperature": lambda h: nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU),
                "power_w": lambda h: nvml.nvmlDeviceGetPowerUsage(h) / 1000.0,
            }
            for key, read in readers.items():
                try:
                    gpu[key] = read(handle)
                except Exception:  # a field a GPU does not support stays absent
                    continue
            gpus.append(gpu)
        return gpus

    def close(self) -> None:
        if self.available:
            try:
                self._nvml.nvmlShutdown()
            except Exception:
                pass


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class EventSink(Protocol):
    def emit(self, type: str, **fields: Any) -> dict[str, Any]: ...  # noqa: A002


class TelemetrySampler:
    """Emits a `telemetry` event now and then every `interval_s` seconds until stopped."""

    def __init__(
        self,
        events: EventSink,
        interval_s: float = 5.0,
        gpu: GpuProbe | None = None,
        local_ranks: bool = False,
        other_nodes: Path | None = None,
    ):
        """`local_ranks`: this is the first rank of several on its node; CPU and RSS then sum over
        every rank on the node (the supervisor's child processes), and GPUs are every GPU NVML
        sees here. `other_nodes`: the run directory, where the other nodes' samplers leave their
        latest sample (NodeTelemetryFile); each event then lists their GPUs too, tagged `node`."""
        self.events = events
        self.interval_s = interval_s
        self.gpu = gpu if gpu is not None else GpuProbe()
        self.local_ranks = local_ranks
        self.other_nodes = other_nodes
        self._processes: dict[int, psutil.Process] = {}
        self._watched()  # the first reading primes the CPU counters
        psutil.cpu_percent(None)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="telemetry", daemon=True)

    def _watched(self) -> list[psutil.Process]:
        """This process, or all local ranks; each keeps one Process object so cpu_percent works."""
        found = [psutil.Process()]
        if self.local_ranks:
            try:
                found = psutil.Process().parent().children() or found  # type: ignore[union-attr]
            except (psutil.Error, AttributeError):
                pass
        watched = []
        for process in found:
            if process.pid not in self._processes:
                self._processes[process.pid] = process
                process.cpu_percent(None)
            watched.append(self._processes[process.pid])
        return watched

    def sample(self) -> dict[str, Any]:
        memory = psutil.virtual_memory()
        cpu, rss, counted = 0.0, 0, 0
        for process in self._watched():
            try:
                cpu += process.cpu_percent(None)
                rss += process.memory_info().rss
                counted += 1
            except psutil.Error:  # a rank that just ended
                continue
        sample = {
            "cpu_percent": psutil.cpu_percent(None),
            "process_cpu_percent": cpu,
            "rss_bytes": rss,
            "processes": counted,
            "ram_used_bytes": memory.total - memory.available,
            "ram_total_bytes": memory.total,
            "gpus": self.gpu.sample(),
        }
        if self.other_nodes is not None:
            nodes = read_node_telemetry(self.other_nodes, max_age_s=3 * self.interval_s)
            sample["nodes"] = [
                {k: v for k, v in node.items() if k != "gpus"} for node in nodes
            ]  # their CPU, RAM and ranks' RSS
            sample["gpus"] += [
                {**gpu, "node": node["node"]} for node in nodes for gpu in node.get("gpus", [])
            ]
        return sample

    def start(self) -> None:
        if not self.gpu.available:
            self.events.emit("log", level="info", message=f"GPU telemetry off: {self.gpu.reason}.")
        self.events.emit("telemetry", **self.sample())
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.events.emit("telemetry", **self.sample())

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.interval_s + 1)
        self.gpu.close()


def node_telemetry_file(run_root: Path, node_rank: int) -> Path:
    return Path(run_root) / f"telemetry.node{node_rank}.json"


class NodeTelemetryFile:
    """Where a node other than 0 puts its samples: one file it replaces, which rank 0's sampler
    reads (events.jsonl has one writer). Quacks like the EventWriter the sampler writes to."""

    def __init__(self, run_root: Path, node_rank: int):
        self.path = node_telemetry_file(run_root, node_rank)
        self.node_rank = node_rank

    def emit(self, type: str, **fields: Any) -> dict[str, Any]:  # noqa: A002
        if type == "telemetry":
            atomic_write_json(self.path, {"node": self.node_rank, "time": time.time(), **fields})
        return fields


def read_node_telemetry(run_root: Path, max_age_s: float) -> list[dict[str, Any]]:
    """The other nodes' latest samples, newest first per node; stale ones (a node gone) are left out."""
    found = []
    now = time.time()
    for path in sorted(Path(run_root).glob("telemetry.node*.json")):
        try:
            sample = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if now - float(sample.get("time", 0)) <= max_age_s:
            found.append(sample)
    return found
