"""The README's screenshots: real SVGs of the main screens, on the built-in demo.

    python benchmarks/screenshots.py [--run RUN_DIR] [--out docs/screenshots] [--size 120x36]
                                     [--only training,evaluation]

Welcome, Data (the demo's tickets inspected) and Model & method show the demo recipe as shipped.
Training and Evaluation show a real finished run of the demo recipe: RUN_DIR if given, otherwise
this script runs `tuner run` on the demo first (a few minutes on a laptop CPU). The app runs with
the run's parent folder as its working folder, so paths read `runs/<run id>`.

Every SVG written is parsed as XML before the script moves on: one that a browser would refuse
to draw (a raw control character from a log, say) stops the script with the file and the spot.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

from textual.pilot import Pilot
from textual.widgets import Button, Input, Static

from tuner_tui.app import TunerApp, demo_recipe
from tuner_tui.runs.layout import list_runs
from tuner_tui.widgets.log_tail import LogTail

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ("welcome", "data", "model", "training", "evaluation")


class InvalidScreenshot(Exception):
    """An SVG that is not well-formed XML."""


def check_svg(path: Path) -> None:
    """Raise InvalidScreenshot unless `path` parses as XML (what a browser needs to draw it)."""
    try:
        ET.parse(path)
    except ET.ParseError as error:
        line, column = error.position
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()
        near = text[line - 1][max(0, column - 60) : column + 20] if line <= len(text) else ""
        raise InvalidScreenshot(f"{path} is not valid XML ({error}); near: {near!r}") from error


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
    check_svg(out / f"{name}.svg")
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
        # The log is read once something shows: its lines, or the count of library lines hidden.
        log = pilot.app.screen.query_one(LogTail)
        await wait_for(pilot, lambda: log.line_count > 0 or log.hidden_count > 0)
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
    (run,) = list_runs(runs_dir)
    return Path(run["path"])


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", type=Path, help="a finished run of the demo recipe")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--size", default="120x36")
    parser.add_argument(
        "--only", default=",".join(SHOTS), help=f"comma-separated screenshots to make, of {', '.join(SHOTS)}"
    )
    args = parser.parse_args()
    only = set(args.only.split(","))
    if only - set(SHOTS):
        parser.error(
            f"--only: unknown {', '.join(sorted(only - set(SHOTS)))}; choose from {', '.join(SHOTS)}"
        )
    size = tuple(int(n) for n in args.size.split("x"))
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    needs_run = bool(only & {"training", "evaluation"})
    if args.run:
        run = args.run.resolve()
    elif needs_run:
        run = demo_run(Path(tempfile.mkdtemp()) / "runs")
    else:  # no run shown: an empty runs folder
        run = Path(tempfile.mkdtemp()) / "runs" / "none"
        run.parent.mkdir()
    os.chdir(run.parent.parent)  # paths show as runs/<run id>
    runs_dir = Path(run.parent.name)
    relative = runs_dir / run.name

    if "welcome" in only:
        await shoot(TunerApp(runs_dir=runs_dir), size, out, "welcome", welcome)
    if "data" in only:
        await shoot(TunerApp(demo=True, runs_dir=runs_dir), size, out, "data", data)
    if "model" in only:
        await shoot(TunerApp(demo=True, runs_dir=runs_dir), size, out, "model", model)
    if "training" in only:
        app = TunerApp(demo=True, runs_dir=runs_dir, attach=relative)
        await shoot(app, (size[0], max(size[1], 48)), out, "training", training_for(relative))
    if "evaluation" in only:
        app = TunerApp(demo=True, runs_dir=runs_dir)
        app.set_reactive(TunerApp.run_dir, relative)
        await shoot(app, size, out, "evaluation", evaluation)
    # The committed ones too, so a hand-edited or older SVG cannot slip through either.
    for path in sorted(out.glob("*.svg")):
        check_svg(path)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except InvalidScreenshot as error:
        sys.exit(f"error: {error}")
