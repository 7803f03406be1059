"""UI responsiveness: time to first paint, and event-loop lag while a run streams metrics.

    python benchmarks/ui.py [--runs 5] [--seconds 10] [--rate 20]

Every app runs in a fresh interpreter on a pseudo-terminal with Textual's real driver (not
headless), so the numbers include writing frames to a terminal, and this script drains it.

1. First paint: seconds from interpreter start-up (before Textual is imported) to the first
   refresh after the first screen is mounted, for `tuner` (TunerApp, Welcome screen), for
   `tuner attach` (TunerApp on the Training dashboard of a finished 2,000-step run), and for a
   minimal Textual app (Header, Static, Footer) as the baseline. Median of --runs each,
   interleaved. Target: tuner / minimal <= 2.
2. Event-loop lag: TunerApp follows a run whose events.jsonl already holds 20,000 metric events
   (a long run's history to replay and decimate) while a separate writer process appends
   --rate metric events a second, telemetry every second and worker.log lines. An asyncio
   callback scheduled every 10 ms records how late it ran; p50/p99/max of that delay are the
   lag. Target: p99 <= 50 ms.
"""

from __future__ import annotations

import time

T0 = time.perf_counter()  # before anything heavy: first paint counts the imports too

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

COLUMNS, LINES = 120, 36
# First paint against a minimal Textual app (issue 20).
PAINT_TARGETS = {"tuner": 1.5, "tuner attach": 2.0}
HISTORY_STEPS = 20_000


# --- children (each runs on its own pseudo-terminal) -----------------------------------------


def child_paint(kind: str, out: Path, attach: str | None) -> None:
    from textual.app import App, ComposeResult
    from textual.widgets import Footer, Header, Static

    def painted(app: App) -> None:
        out.write_text(json.dumps({"paint_s": time.perf_counter() - T0, "screen": type(app.screen).__name__}))
        app.exit()

    if kind == "minimal":

        class Minimal(App[None]):
            def compose(self) -> ComposeResult:
                yield Header()
                yield Static("Hello")
                yield Footer()

            def on_mount(self) -> None:
                self.call_after_refresh(painted, self)

        Minimal().run()
        return

    from tuner_tui.app import TunerApp

    class Probe(TunerApp):
        async def on_mount(self, event: object) -> None:
            # Run TunerApp's start-up (it mounts the first screen), then wait for its paint.
            event.prevent_default()  # type: ignore[attr-defined]
            await TunerApp.on_mount(self)
            self.call_after_refresh(painted, self)

    Probe(attach=Path(attach) if attach else None).run()


def child_lag(run_dir: str, out: Path, seconds: float) -> None:
    from textual import events

    from tuner_tui.app import TunerApp
    from tuner_tui.screens.training import TrainingScreen
    from tuner_tui.widgets.run_charts import MetricChart

    delays: list[float] = []

    class Probe(TunerApp):
        def on_ready(self, event: events.Ready) -> None:
            self._waiting = self.set_interval(0.05, self._replayed)

        def _replayed(self) -> None:
            # Measure the steady state: once the history is replayed, while new events stream.
            screen = self.screen
            if isinstance(screen, TrainingScreen) and len(screen.view.loss) >= HISTORY_STEPS:
                self._waiting.stop()
                replay_s = time.perf_counter() - T0
                self._probe(replay_s)

        def _probe(self, replay_s: float) -> None:
            loop = asyncio.get_running_loop()
            interval = 0.01
            start = loop.time()
            steps_before = len(self.screen.view.loss)  # type: ignore[attr-defined]

            def tick(expected: float) -> None:
                now = loop.time()
                delays.append(now - expected)
                if now - start < seconds:
                    loop.call_at(now + interval, tick, now + interval)
                else:
                    finish()

            def finish() -> None:
                training = self.screen
                assert isinstance(training, TrainingScreen), training
                out.write_text(
                    json.dumps(
                        {
                            "delays": delays,
                            "replay_s": replay_s,
                            "streamed": len(training.view.loss) - steps_before,
                            "steps_shown": len(training.view.loss),
                            "redraws": training.query_one("#loss-chart", MetricChart).redraws,
                            "plotted": len(training.query_one("#loss-chart", MetricChart).traces[0].xs),
                        }
                    )
                )
                self.exit()

            loop.call_at(start + interval, tick, start + interval)

    Probe(attach=Path(run_dir)).run()


def child_writer(run_dir: str, rate: float, seconds: float) -> None:
    """Stands in for the worker: appends metrics at `rate`/s, telemetry 1/s, log lines."""
    from tuner_tui.runs.events import EventWriter
    from tuner_tui.runs.layout import RunDir

    run = RunDir(Path(run_dir))
    step = HISTORY_STEPS
    period = 1.0 / rate
    start = time.monotonic()
    with EventWriter(run.events) as writer, open(run.log, "a", encoding="utf-8") as log:
        while time.monotonic() - start < seconds:
            step += 1
            writer.emit("metric", **metric(step))
            if step % int(rate) == 0:
                writer.emit("telemetry", **telemetry())
                log.write(f"step {step}: writing a log line like a chatty library would\n")
                log.flush()
            time.sleep(max(0.0, start + (step - HISTORY_STEPS) * period - time.monotonic()))


def metric(step: int) -> dict:
    total = HISTORY_STEPS * 2
    return {
        "step": step,
        "max_steps": total,
        "epoch": step / 1000,
        "loss": 2.0 / math.log(step + 2) + 0.05 * math.sin(step),
        "lr": 2e-4 * (1 - step / total),
        "grad_norm": 0.5 + 0.1 * math.cos(step),
        "tokens_per_s": 5000.0,
        "tokens_seen": step * 4096,
        "eta_s": (total - step) / 20,
    }


def telemetry() -> dict:
    gib = 1024**3
    gpu = {"name": "NVIDIA H200", "util": 93.0, "memory_used": 80 * gib, "memory_total": 141 * gib}
    return {
        "cpu_percent": 20.0,
        "process_cpu_percent": 101.0,
        "rss_bytes": 6 * gib,
        "ram_used_bytes": 40 * gib,
        "ram_total_bytes": 128 * gib,
        "gpus": [{"index": i, **gpu, "temperature": 60.0 + i, "power_w": 600.0} for i in range(2)],
    }


# --- the parent ------------------------------------------------------------------------------


def on_pty(args: list[str], timeout: float = 120.0) -> int:
    """Run `python benchmarks/ui.py ARGS` on a new pseudo-terminal, drain it, return the status."""
    import fcntl
    import pty
    import struct
    import termios

    pid, fd = pty.fork()
    if pid == 0:  # the child: size the terminal, then become the app
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", LINES, COLUMNS, 0, 0))
        os.environ["TERM"] = "xterm-256color"
        os.execv(sys.executable, [sys.executable, __file__, *args])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if not os.read(fd, 65536):
                break
        except OSError:  # EIO: the child closed the terminal
            break
    os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def make_run(root: Path, steps: int, phase: str, pid: int | None = None) -> Path:
    from tuner_tui.runs.events import EventWriter
    from tuner_tui.runs.layout import RunDir
    from tuner_tui.runs.state import process_start_time, write_state

    run = RunDir(root)
    run.create()
    run.recipe.write_text("schema_version = 1\n", encoding="utf-8")
    fields = {"pid": pid, "pid_started": process_start_time(pid)} if pid else {}
    write_state(run.state, run_id=run.run_id, phase=phase, step=steps, **fields)
    with EventWriter(run.events) as writer:
        writer.emit("status", phase="training", step=0, max_steps=HISTORY_STEPS * 2)
        for step in range(1, steps + 1):
            writer.emit("metric", **metric(step))
            if step % 20 == 0:
                writer.emit("telemetry", **telemetry())
        if phase == "completed":
            writer.emit("status", phase="completed")
    run.log.write_text("".join(f"history line {i}\n" for i in range(5000)), encoding="utf-8")
    return run.root


def paint(kind: str, tmp: Path, attach: Path | None = None) -> float:
    out = tmp / f"paint-{kind}.json"
    out.unlink(missing_ok=True)
    code = on_pty(["--child", "paint", kind, str(out), str(attach or "")])
    if code != 0 or not out.exists():
        raise SystemExit(f"the {kind} app did not paint (exit code {code})")
    return json.loads(out.read_text())["paint_s"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="first-paint runs per app")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the lag measurement")
    parser.add_argument("--rate", type=float, default=20.0, help="metric events per second")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--results", type=Path, help="Also write the headline measures as JSON here.")
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "paint":
            child_paint(rest[0], Path(rest[1]), rest[2] or None)
        elif kind == "lag":
            child_lag(rest[0], Path(rest[1]), float(rest[2]))
        elif kind == "writer":
            child_writer(rest[0], float(rest[1]), float(rest[2]))
        return

    print(f"terminal {COLUMNS}x{LINES} (pseudo-terminal, real driver), python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        finished = make_run(tmp / "finished", 2000, "completed")
        times: dict[str, list[float]] = {"minimal": [], "tuner": [], "tuner attach": []}
        paint("minimal", tmp)  # warm the file cache (bytecode, packages) for every app alike
        for _ in range(args.runs):
            times["minimal"].append(paint("minimal", tmp))
            times["tuner"].append(paint("tuner", tmp))
            times["tuner attach"].append(paint("tuner", tmp, finished))
        medians = {name: statistics.median(values) for name, values in times.items()}
        print(f"\nfirst paint, median of {args.runs} (from interpreter start, imports included):")
        for name, value in medians.items():
            ratio = value / medians["minimal"]
            print(f"  {name:<13} {value * 1000:7.0f} ms   ratio {ratio:4.2f}")
        for name, target in PAINT_TARGETS.items():
            ratio = medians[name] / medians["minimal"]
            print(
                f"  {name} / minimal = {ratio:.2f} (target <= {target}): "
                f"{'ok' if ratio <= target else 'MISSED'}"
            )

        # Lag: a writer process stands in for the worker; state.json names it, so it is live.
        import subprocess

        live = tmp / "live"
        writer_seconds = args.seconds + 15  # covers the app's start-up and replay
        writer = subprocess.Popen(
            [sys.executable, __file__, "--child", "writer", str(live), str(args.rate), str(writer_seconds)],
            stdin=subprocess.DEVNULL,
        )
        make_run(live, HISTORY_STEPS, "training", pid=writer.pid)
        out = tmp / "lag.json"
        code = on_pty(["--child", "lag", str(live), str(out), str(args.seconds)])
        writer.terminate()
        writer.wait()
        if code != 0 or not out.exists():
            raise SystemExit(f"the lag run failed (exit code {code})")
        result = json.loads(out.read_text())
        delays = [d * 1000 for d in result["delays"]]
        p50, p99, worst = percentile(delays, 0.5), percentile(delays, 0.99), max(delays)
        print(
            f"\nevent-loop lag over {args.seconds:.0f} s while {args.rate:.0f} metric events/s stream "
            f"(after a {HISTORY_STEPS:,}-step history):"
        )
        print(
            f"  history on screen {result['replay_s']:.2f} s after interpreter start "
            "(replay is not part of the lag numbers)"
        )
        print(f"  samples {len(delays)}  p50 {p50:.1f} ms  p99 {p99:.1f} ms  max {worst:.1f} ms")
        print(f"  metric events that arrived while measuring: {result['streamed']:,}")
        print(
            f"  loss points kept {result['steps_shown']:,}, plotted {result['plotted']}, "
            f"chart redraws {result['redraws']}"
        )
        print(f"  p99 {p99:.1f} ms (target <= 50 ms): {'ok' if p99 <= 50 else 'MISSED'}")
    if args.results:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from benchmarks.results import Result, write_results

        paints = [
            Result(
                f"first paint, {name}",
                medians[name] * 1000,
                "ms",
                medians["minimal"] * 1000,
                medians[name] / medians["minimal"],
                f"<= {target}",
                medians[name] / medians["minimal"] <= target,
            )
            for name, target in PAINT_TARGETS.items()
        ]
        lag = Result("event-loop lag p99 while streaming", p99, "ms", None, None, "<= 50 ms", p99 <= 50)
        write_results(args.results, [*paints, lag])


if __name__ == "__main__":
    main()
