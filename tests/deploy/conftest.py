"""Completed runs for the deploy tests, trained once per test session.

A tiny causal Llama (alpaca capitals) and a tiny Llama classifier, each trained by the real
worker in-process. With pytest-xdist every worker would train its own; they share one instead
(pytest-xdist's documented pattern: the first worker to take the lock trains, the others wait and
reuse the run directory).
"""

from __future__ import annotations

import json
import os
import random
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.tiny import write_jsonl, write_recipe

NO_BIAS = "[bias]\nenabled = false\n"
WORDS = {
    "up": ["profit", "growth", "record", "gain", "strong", "rise"],
    "down": ["loss", "decline", "weak", "drop", "cut", "fall"],
}


def classifier_rows(n: int, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "up" if i % 2 else "down"
        words = rng.sample(WORDS[label], 3)
        rows.append({"text": f"quarterly {words[0]} and {words[1]} with {words[2]}", "label": label})
    return rows


def shared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_id = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    base = tmp_path_factory.getbasetemp()
    return base.parent / f"deploy-{run_id}" if run_id else base / "deploy"


def trained_once(root: Path, name: str, make: Callable[[Path], Path]) -> Path:
    """The run directory `make(folder)` trains, made by one worker and reused by the others."""
    from filelock import FileLock

    root.mkdir(parents=True, exist_ok=True)
    folder = root / name
    marker = root / f"{name}.done"
    with FileLock(str(root / f"{name}.lock")):
        if marker.exists():
            return Path(marker.read_text(encoding="utf-8"))
        folder.mkdir(exist_ok=True)
        run = make(folder)
        marker.write_text(str(run), encoding="utf-8")
        return run


def train(recipe: Path, runs: Path) -> Path:
    from tuner_tui.runs.launcher import create_run
    from tuner_tui.runs.worker import run_worker

    run = create_run(recipe, runs)
    code = run_worker(run.root, threading.Event())
    assert code == 0, (run.root / "events.jsonl").read_text(encoding="utf-8")[-3000:]
    return run.root


@pytest.fixture(scope="session")
def causal_run(tiny_assets: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A completed LoRA run of the tiny Llama that answers 'The capital of ...'."""

    def make(folder: Path) -> Path:
        recipe = write_recipe(folder / "recipe.toml", tiny_assets["data"], tiny_assets["model"], NO_BIAS,
                              max_steps=30, learning_rate=0.05, save_every_steps=1000)  # fmt: skip
        return train(recipe, folder / "runs")

    return trained_once(shared_root(tmp_path_factory), "causal", make)


@pytest.fixture(scope="session")
def classifier_run(tiny_assets: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A completed LoRA run of the tiny Llama as an up/down classifier."""

    def make(folder: Path) -> Path:
        data = write_jsonl(folder / "labels.jsonl", classifier_rows(60))
        recipe = write_recipe(folder / "recipe.toml", data, tiny_assets["model"], NO_BIAS,
                              max_steps=6, learning_rate=0.05, save_every_steps=1000)  # fmt: skip
        text = recipe.read_text(encoding="utf-8")
        text = text.replace(
            "[model]\nname_or_path", '[model]\ntask = "sequence_classification"\nname_or_path'
        )
        text = text.replace("[data]\n", '[data]\nformat = "classification"\n', 1)
        recipe.write_text(text, encoding="utf-8")
        return train(recipe, folder / "runs")

    return trained_once(shared_root(tmp_path_factory), "classifier", make)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
