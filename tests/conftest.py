"""Shared fixtures: a tiny causal LM and alpaca data, built once per session, offline."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One compute thread per process: the suite runs one pytest-xdist worker per core, and each test
# may start workers and ranks of its own; torch's default (a thread per core in every process)
# oversubscribes the machine several times over, and a test then takes 5x its time. Set before
# torch is imported (its thread pool reads it once); worker subprocesses inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

from tests.tiny import alpaca_rows, build_tiny_llama, write_jsonl, write_recipe  # noqa: E402


@pytest.fixture(scope="session")
def tiny_assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    model = build_tiny_llama(root / "model")
    data = write_jsonl(root / "alpaca.jsonl", alpaca_rows(64))
    return {"model": model, "data": data}


@pytest.fixture
def tiny_recipe(tiny_assets: dict[str, Path], tmp_path: Path):
    """Factory: a recipe file for the tiny model with training overrides."""

    def make(extra: str = "", **training: object) -> Path:
        return write_recipe(
            tmp_path / "recipe.toml", tiny_assets["data"], tiny_assets["model"], extra, **training
        )

    return make
