"""A real 2x2 grid sweep of tiny runs, its driver SIGKILLed after two trials and resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.waiting import wait_for
from tuner_tui.iterate import sweep as engine


def test_grid_sweep_killed_after_two_trials_resumes_only_the_rest(tiny_recipe, tmp_path: Path) -> None:
    recipe = tiny_recipe(max_steps=2, save_every_steps=2)
    folder = engine.create_sweep(
        recipe, ["training.learning_rate=1e-2,1e-3", "method.r=2,4"], tmp_path / "runs"
    )
    driver = engine.start_driver(folder)

    def done() -> list[dict]:
        return [t for t in engine.read_sweep(folder)["trials"] if t.get("phase") in engine.DONE]

    wait_for(lambda: len(done()) >= 2, timeout=400, what="two finished trials")
    os.kill(driver.pid, signal.SIGKILL)
    wait_for(lambda: driver.poll() is not None, what="the driver to die")
    first_two = {t["number"]: t["run_dir"] for t in done()}
    assert engine.sweep_running(folder) is None
    resumed = subprocess.run(
        [sys.executable, "-m", "tuner_tui.cli", "sweep", "--resume", str(folder)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    sweep = json.loads((folder / "sweep.json").read_text())
    assert sweep["phase"] == "completed"
    assert len(sweep["trials"]) == 4
    assert all(t["phase"] == "completed" and isinstance(t["metric"], float) for t in sweep["trials"])
    for number, run_dir in first_two.items():  # finished trials were not run again
        assert sweep["trials"][number]["run_dir"] == run_dir
    assert len(list((folder / "runs").iterdir())) == 4
    assert sorted(tuple(sorted(t["values"].items())) for t in sweep["trials"]) == sorted(
        (("method.r", r), ("training.learning_rate", lr)) for lr in (1e-2, 1e-3) for r in (2, 4)
    )
    best = min(sweep["trials"], key=lambda t: t["metric"])  # perplexity: lower is better
    assert sweep["best"]["run_dir"] == best["run_dir"]
    assert (folder / "best-recipe.toml").read_text() == Path(best["recipe"]).read_text()
    assert "Best: trial" in resumed.stdout and "tuner compare" in resumed.stdout
