"""The README's screenshots: real SVGs of the main screens, on the built-in demo.

    python benchmarks/screenshots.py [--run RUN_DIR] [--out docs/screenshots] [--size 120x36]

Welcome, Data (the demo's tickets inspected) and Model & method show the demo recipe as shipped.
Training and Evaluation show a real finished run of the demo recipe: RUN_DIR if given, otherwise
this script runs `tuner run` on the demo first (a few minutes on a laptop CPU). The app runs with
the run's parent folder as its working folder, so paths read `runs/<run id>`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from textual.pilot import Pilot
from textual.widgets import Button, Input, Static

from tuner_tui.app import TunerApp, demo_recipe

ROOT = Path(__file__).resolve().parents[1]


async def wait_for(pilot: Pilot, predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await pilot.pause(0.1)
    raise TimeoutError(f"timed out waiting for {predicate}")


def text_of(pilot: Pilot, selector: str) -> str:
    return str(pilot.app.screen.query_one(selector, Static).render())


async def shoot(app: TunerApp, size: tuple[int, int], out: Path, name: str, before) -> None:
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        await before(pilot)
        pilot.app.clear_notifications()
        await pilot.pause(0.5)
        app.save_screenshot(filename=f"{name}.svg", path=str(out))
    print(f"wrote {out / (name + '.svg')}")


async def welcome(pilot: Pilot) -> None:
    pass


async def data(pilot: Pilot) -> None:
    await pilot.press("2")
    await pilot.pause()
    pilot.app.screen.query_one("#inspect", Button).press()
    await pilot.pause(0.5)
    await pilot.app.workers.wait_for_complete()
    pilot.app.screen.query_one("#data-path", Input).blur()


async def model(pilot: Pilot) -> None:
    await pilot.press("3")
    await pilot.pause(1.0)  # the facts and estimate are debounced, then computed in workers
    await pilot.app.workers.wait_for_complete()


def training_for(run: Path):
    async def training(pilot: Pilot) -> None:
        await wait_for(pilot, lambda: pilot.app.run_phase in ("completed", "failed", "stopped"))
        await pilot.pause(0.5)

    return training


async def evaluation(pilot: Pilot) -> None:
    await pilot.press("5")
    await wait_for(pilot, lambda: text_of(pilot, "#verdict").strip() != "")


def demo_run(runs_dir: Path) -> Path:
    """Run the demo recipe headless; its run directory."""
    with_recipe = str(demo_recipe())
    subprocess.run(
        [sys.executable, "-m", "tuner_tui.cli", "run", with_recipe, "--runs-dir", str(runs_dir)], check=True
    )
    (run,) = runs_dir.iterdir()
    return run


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", type=Path, help="a finished run of the demo recipe")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--size", default="120x36")
    args = parser.parse_args()
    size = tuple(int(n) for n in args.size.split("x"))
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    run = args.run.resolve() if args.run else demo_run(Path(tempfile.mkdtemp()) / "runs")
    os.chdir(run.parent.parent)  # paths show as runs/<run id>
    runs_dir = Path(run.parent.name)
    relative = runs_dir / run.name

    await shoot(TunerApp(runs_dir=runs_dir), size, out, "welcome", welcome)
    await shoot(TunerApp(demo=True, runs_dir=runs_dir), size, out, "data", data)
    await shoot(TunerApp(demo=True, runs_dir=runs_dir), size, out, "model", model)
    app = TunerApp(demo=True, runs_dir=runs_dir, attach=relative)
    await shoot(app, (size[0], max(size[1], 48)), out, "training", training_for(relative))
    app = TunerApp(demo=True, runs_dir=runs_dir)
    app.set_reactive(TunerApp.run_dir, relative)
    await shoot(app, size, out, "evaluation", evaluation)


if __name__ == "__main__":
    asyncio.run(main())
