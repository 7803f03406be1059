"""Session fixtures of the GPU check: one ~1B model folder and the data files, built once.

Measurements the tests make (memory against the estimate, the resume's difference, ...) go to
`measurements`; with GPU_CHECK_OUT set (scripts/gpu-check sets it), they are written to
$GPU_CHECK_OUT/gpu-tests.json at the end, for the check's summary table.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.gpu.helpers import (
    ON_GPU,
    build_llama,
    ensure_llama,
    free_cuda,
    gpu_recipe,
    seq,
    text_rows,
    write_jsonl,
)
from tuner_tui.runs.layout import RunDir


@pytest.fixture(scope="session")
def llama_1b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ~1B Llama (bf16, random weights) with its tokenizer, saved once for every test (in
    GPU_CHECK_MODEL when set, which the benchmark then reuses)."""
    shared = os.environ.get("GPU_CHECK_MODEL")
    if shared and ON_GPU:
        return ensure_llama(Path(shared))
    return build_llama(tmp_path_factory.mktemp("llama-1b") / "model")


@pytest.fixture(scope="session")
def gpu_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """alpaca: the capitals task (learnable: fixed templates); long: text rows longer than 1024
    tokens (a full-length batch, as the estimate assumes); pairs: a planted preference."""
    from tests.tiny import alpaca_rows
    from tests.training.test_preference import planted_pairs

    root = tmp_path_factory.mktemp("gpu-data")
    longest = seq(1024, 128)
    return {
        "alpaca": write_jsonl(root / "alpaca.jsonl", alpaca_rows(256)),
        "long": write_jsonl(root / "long.jsonl", text_rows(96, longest + 16, longest + 64)),
        "pairs": write_jsonl(root / "pairs.jsonl", planted_pairs(200)),
    }


@pytest.fixture(scope="session")
def measurements() -> Any:
    found: dict[str, Any] = {}
    yield found
    out = os.environ.get("GPU_CHECK_OUT")
    if out and found:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "gpu-tests.json").write_text(json.dumps(found, indent=2, default=str) + "\n")


@dataclass
class Trained:
    """One in-process training (tuner's `train`, as the worker calls it) and what it cost."""

    recipe: Path
    run: RunDir
    outcome: Any  # tuner_tui.training.run.TrainingOutcome
    losses: list[float]
    peak_bytes: int  # CUDA: max_memory_allocated during training, less what was allocated before
    peak_reserved_bytes: int  # the caching allocator's reserve, likewise


@pytest.fixture(scope="session")
def trained(llama_1b: Path, gpu_data: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Any:
    """`trained(method)`: 4 steps of `method` ('lora' or 'qlora') on full-length batches (4 x 1024
    tokens, the estimate's own assumption), run once per session in this process so that CUDA's
    peak-memory counters see exactly the training."""
    import torch

    from tuner_tui.recipe import load_recipe
    from tuner_tui.runs.events import EventWriter, iter_events
    from tuner_tui.runs.launcher import create_run
    from tuner_tui.training.run import train

    done: dict[str, Trained] = {}

    def train_once(method: str) -> Trained:
        if method in done:
            return done[method]
        root = tmp_path_factory.mktemp(f"trained-{method}")
        recipe = gpu_recipe(
            root / "recipe.toml",
            llama_1b,
            gpu_data["long"],
            method=method,
            batch_size=4,
            max_length=seq(1024, 128),
            max_steps=4,
            learning_rate=1e-3,
        )
        run = create_run(recipe, root / "runs")
        free_cuda()
        before = before_reserved = 0
        if ON_GPU:
            torch.cuda.reset_peak_memory_stats()
            before, before_reserved = torch.cuda.memory_allocated(), torch.cuda.memory_reserved()
        with EventWriter(run.events) as events:
            outcome = train(load_recipe(run.recipe), run, events, threading.Event())
        peak = reserved = 0
        if ON_GPU:
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated() - before
            reserved = torch.cuda.max_memory_reserved() - before_reserved
        losses = [e["loss"] for e in iter_events(run.events) if e.get("type") == "metric"]
        done[method] = Trained(recipe, run, outcome, losses, peak, reserved)
        return done[method]

    yield train_once
    done.clear()
    free_cuda()
