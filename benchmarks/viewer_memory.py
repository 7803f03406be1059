"""Peak memory of replaying a long run: `tuner attach --plain` and the Training dashboard.

    python benchmarks/viewer_memory.py [--events 1000000]

Writes a run directory whose events.jsonl holds `--events` events in the worker's mix (metrics
every step, an eval and a checkpoint every 500 steps, telemetry every 50, a log line every 100),
then replays it in separate processes and prints each one's peak RSS:

- idle: a Python process that imports the viewer's modules and reads nothing (the floor);
- read-all: the whole file parsed into a list of events, as the viewer did before it streamed;
- plain: `tuner attach --plain RUN` until it prints the run's end;
- dashboard: the wizard attached to the run (headless), until its view has folded every event.

The target (issue 19): plain and dashboard under 300 MB for 1M events; the ratios are against
the idle floor and the read-all baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.results import Result, add_results_option, write_results  # noqa: E402

TARGET_MB = 300.0


def write_run(root: Path, events: int) -> Path:
    """A completed run of `events` events (as EventWriter writes them) with its state.json."""
    run = root / "20260101-000000-bench-abcdef"
    for sub in ("control", "checkpoints", "report"):
        (run / sub).mkdir(parents=True)
    (run / "recipe.toml").write_text("schema_version = 1\n", encoding="utf-8")
    seq = 0
    step = 0
    with open(run / "events.jsonl", "w", encoding="utf-8") as f:

        def emit(kind: str, **fields: object) -> None:
            nonlocal seq
            seq += 1
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(1_700_000_000 + seq)) + ".000Z"
            f.write(json.dumps({"seq": seq, "time": stamp, "type": kind, **fields}) + "\n")

        emit("status", phase="queued")
        emit("status", phase="training", step=0, max_steps=events)
        while seq < events - 2:
            step += 1
            emit(
                "metric", step=step, max_steps=events, epoch=step / 1000, loss=2.0 / (1 + step / 1e4),
                lr=1e-4, grad_norm=0.5 + (step % 7) / 10, tokens_per_s=1500.0, tokens_seen=512 * step,
                eta_s=float(events - step),
            )  # fmt: skip
            if step % 50 == 0:
                emit("telemetry", cpu_percent=50.0, rss_bytes=1 << 30, ram_used_bytes=8 << 30, gpus=[])
            if step % 100 == 0:
                emit("log", level="info", message=f"step {step} done")
            if step % 500 == 0:
                emit("eval", split="validation", step=step, loss=2.1 / (1 + step / 1e4))
                emit("checkpoint", step=step, path=f"checkpoints/checkpoint-{step}", bytes=1000, removed=[])
        emit("status", phase="completed", step=step)
    state = {"phase": "completed", "step": step, "max_steps": events, "run_id": run.name}
    (run / "state.json").write_text(json.dumps(state), encoding="utf-8")
    return run


def case(name: str, run: Path) -> None:
    """Run one case in this process (a child of the benchmark)."""
    if name == "idle":
        import tuner_tui.runs.viewer  # noqa: F401
    elif name == "read-all":
        with open(run / "events.jsonl", "rb") as f:
            events = [json.loads(line) for line in f.read().split(b"\n") if line]
        assert events
    elif name == "dashboard":
        import asyncio

        from tuner_tui.app import TunerApp

        total = sum(1 for _ in open(run / "events.jsonl", "rb"))

        async def replay() -> None:
            app = TunerApp(attach=run, runs_dir=run.parent)
            async with app.run_test(size=(140, 40)) as pilot:
                await pilot.press("4")
                screen = app.screen
                while getattr(getattr(screen, "view", None), "events", 0) < total:
                    await pilot.pause(0.1)
                await pilot.pause(0.5)  # a redraw with everything folded

        asyncio.run(replay())
    else:
        raise SystemExit(f"unknown case {name}")


def measure(name: str, run: Path) -> tuple[float, float]:
    """Peak RSS (MB) and seconds of one case in its own process."""
    if name == "plain":
        command = [sys.executable, "-m", "tuner_tui.cli", "attach", "--plain", str(run)]
    else:
        command = [sys.executable, __file__, "--case", name, "--run", str(run)]
    start = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{name} failed: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
    return usage.ru_maxrss / 1024, seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--run", help=argparse.SUPPRESS)
    add_results_option(parser)
    args = parser.parse_args()
    if args.case:
        case(args.case, Path(args.run))
        return
    with tempfile.TemporaryDirectory() as tmp:
        run = write_run(Path(tmp), args.events)
        size_mb = (run / "events.jsonl").stat().st_size / 2**20
        print(f"events.jsonl: {args.events:,} events, {size_mb:.0f} MB")
        results = {name: measure(name, run) for name in ("idle", "read-all", "plain", "dashboard")}
    idle, read_all = results["idle"][0], results["read-all"][0]
    print(f"{'case':<10} {'peak MB':>8} {'seconds':>8} {'x idle':>7} {'x read-all':>10}  target")
    for name, (peak, seconds) in results.items():
        verdict = ""
        if name in ("plain", "dashboard"):
            verdict = "ok" if peak < TARGET_MB else f"OVER {TARGET_MB:.0f} MB"
        print(f"{name:<10} {peak:8.0f} {seconds:8.1f} {peak / idle:7.2f} {peak / read_all:10.2f}  {verdict}")
    write_results(
        args.results,
        [
            Result(
                f"replay {args.events:,} events, {name} peak RSS",
                results[name][0],
                "MB",
                read_all,
                results[name][0] / read_all,
                f"< {TARGET_MB:.0f} MB",
                results[name][0] < TARGET_MB,
            )
            for name in ("plain", "dashboard")
        ]
        + [Result(f"replay {args.events:,} events, dashboard seconds", results["dashboard"][1], "s")],
    )


if __name__ == "__main__":
    main()
