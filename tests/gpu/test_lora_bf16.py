"""bf16 LoRA on the ~1B Llama through `tuner run`: a learnable task, finite and falling loss."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

from tests.gpu.helpers import GPU_MODULE, ON_GPU, gpu_recipe
from tests.waiting import events_of
from tuner_tui.recipe import load_recipe
from tuner_tui.runs.layout import RunDir

pytestmark = GPU_MODULE
TUNER = [sys.executable, "-m", "tuner_tui.cli"]


def test_bf16_lora_run_learns_the_capitals_with_finite_falling_loss(
    llama_1b: Path, gpu_data: dict[str, Path], tmp_path: Path, measurements: dict
) -> None:
    recipe = gpu_recipe(
        tmp_path / "recipe.toml",
        llama_1b,
        gpu_data["alpaca"],
        compare_base=True,  # the base model's evaluation on the GPU too
        max_steps=60,
        save_every_steps=30,
        learning_rate=2e-3,
    )
    result = subprocess.run(
        [*TUNER, "run", str(recipe), "--runs-dir", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    (root,) = (tmp_path / "runs").iterdir()
    run = RunDir.open(root)
    log = run.log.read_text(encoding="utf-8") if run.log.exists() else ""
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:] + log[-3000:]
    assert "Completed" in result.stdout

    frozen = load_recipe(run.recipe)
    model_log = next(e for e in events_of(run, "log") if "trainable_params" in e)
    if ON_GPU:
        import torch

        assert frozen.environment["device"] == "cuda" and model_log["device"] == "cuda"
        # The Trainer's own arguments, as saved with the checkpoint: bf16 mixed precision.
        args = torch.load(run.checkpoints / "checkpoint-60" / "training_args.bin", weights_only=False)
        assert args.bf16 and not args.fp16
    total = model_log["total_params"]
    assert total > (0.9e9 if ON_GPU else 1e5), total

    losses = [m["loss"] for m in events_of(run, "metric")]
    assert len(losses) == 60 and all(math.isfinite(x) for x in losses), losses
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    measurements["lora_bf16"] = {"params": total, "loss_first5": first, "loss_last5": last}
    # Random weights start near ln(32000) = 10.4 nats; the templates are learnt within 60 steps.
    assert last < first - 1.0, losses
    tokens_per_s = [m["tokens_per_s"] for m in events_of(run, "metric")]
    assert all(t > 0 for t in tokens_per_s)
