"""DPO on the GPU (`[model] task = "preference"`, `[preference] loss = "dpo"`): the worker trains
the ~1B model on a planted preference (a polite ending chosen over a rude one) and evaluates it."""

from __future__ import annotations

import math
from pathlib import Path

from tests.gpu.helpers import GPU_MODULE, ON_GPU
from tests.training.test_preference import preference_recipe, run_in_process

pytestmark = GPU_MODULE


def test_dpo_run_learns_the_planted_preference(
    llama_1b: Path, gpu_data: dict[str, Path], tmp_path: Path, measurements: dict
) -> None:
    recipe = preference_recipe(tmp_path, llama_1b, gpu_data["pairs"], "dpo", learning_rate=2e-3)
    report, events = run_in_process(recipe, tmp_path / "runs")
    model_log = next(e for e in events if e["type"] == "log" and "trainable_params" in e)
    assert model_log["device"] == ("cuda" if ON_GPU else "cpu")
    metrics = [e for e in events if e["type"] == "metric"]
    assert metrics and all(math.isfinite(m["loss"]) for m in metrics)
    assert {"reward_accuracy", "reward_margin", "chosen_reward", "rejected_reward"} <= set(metrics[-1])
    base = report["metrics"]["base"]["preference_accuracy"]
    tuned = report["metrics"]["tuned"]["preference_accuracy"]
    measurements["dpo"] = {
        "base_preference_accuracy": base,
        "tuned_preference_accuracy": tuned,
        "reward_margin_first": metrics[0]["reward_margin"],
        "reward_margin_last": metrics[-1]["reward_margin"],
    }
    assert metrics[-1]["reward_margin"] > metrics[0]["reward_margin"]
    assert tuned >= 0.8 and tuned > base, (base, tuned)
