"""Every [method] trains the tiny Llama, lowers its loss and reloads from disk with identical outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.modeling.helpers import recipe_for, train_in_process
from tuner_tui.errors import TunerError
from tuner_tui.modeling.export import load_tuned_model
from tuner_tui.recipe import MethodConfig, load_recipe

pytestmark = pytest.mark.slow

# Per-method settings: learning rates differ by orders of magnitude between a handful of scaling
# vectors (ia3), virtual tokens (prompt/prefix) and every weight (full).
METHODS: dict[str, tuple[dict, float]] = {
    "lora": ({"type": "lora", "r": 4, "alpha": 8.0}, 0.02),
    "lora_rslora_pissa": ({"type": "lora", "r": 4, "alpha": 8.0, "rslora": True, "init": "pissa"}, 0.02),
    "dora": ({"type": "dora", "r": 4, "alpha": 8.0}, 0.02),
    "ia3": ({"type": "ia3"}, 0.1),
    "loha": ({"type": "loha", "r": 4, "alpha": 8.0}, 0.02),
    "lokr": ({"type": "lokr", "r": 4, "alpha": 8.0}, 0.02),
    "adalora": ({"type": "adalora", "r": 4, "alpha": 8.0}, 0.02),
    "prompt_tuning": ({"type": "prompt_tuning", "num_virtual_tokens": 8}, 0.1),
    "prefix_tuning": ({"type": "prefix_tuning", "num_virtual_tokens": 8}, 0.05),
    "full": ({"type": "full"}, 0.003),
    "freeze": ({"type": "freeze", "trainable_layers": 1}, 0.003),
}


@pytest.mark.parametrize("name", list(METHODS))
def test_method_trains_and_reloads_identically(name: str, tiny_assets, tmp_path: Path) -> None:
    import torch

    method, lr = METHODS[name]
    recipe_path = recipe_for(
        tmp_path,
        tiny_assets["data"],
        tiny_assets["model"],
        method,
        max_steps=30,
        learning_rate=lr,
        save_every_steps=1000,
    )
    outcome, run, events = train_in_process(recipe_path, tmp_path / "runs")
    counts = [e for e in events if e["type"] == "log" and "trainable_params" in e]
    assert counts and 0 < counts[0]["trainable_params"] <= counts[0]["total_params"]
    losses = [e["loss"] for e in events if e["type"] == "metric"]
    assert len(losses) == 30
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < first - 0.2, (name, losses)

    batch = outcome.tokenizer(["What is the capital of Peru?"], return_tensors="pt")
    outcome.model.eval()
    reloaded = load_tuned_model(load_recipe(run.recipe), run.adapter)
    with torch.no_grad():
        expected = outcome.model(**batch).logits
        actual = reloaded(**batch).logits
    if name == "adalora":
        # Pruned ranks are zeroed in memory but cut out of the saved tensors, so the reloaded
        # matmuls have a smaller inner dimension: same sums, different rounding (~5e-6).
        assert torch.allclose(expected, actual, atol=1e-5, rtol=0), (expected - actual).abs().max()
    else:
        assert torch.equal(expected, actual), (expected - actual).abs().max()


def test_qlora_on_cpu_is_a_clear_error_suggesting_lora(tiny_assets, tmp_path: Path) -> None:
    recipe_path = recipe_for(
        tmp_path, tiny_assets["data"], tiny_assets["model"], {"type": "qlora"}, max_steps=2
    )
    with pytest.raises(TunerError, match=r"method.type: is 'qlora'.*need a CUDA GPU.*type = 'lora'"):
        train_in_process(recipe_path, tmp_path / "runs")


def test_loftq_without_bitsandbytes_is_a_clear_error(monkeypatch) -> None:
    import importlib.util

    from tuner_tui.modeling.methods import build_method

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a)
    )
    with pytest.raises(TunerError, match="loftq.*bitsandbytes"):
        build_method(object(), MethodConfig(type="lora", init="loftq"), "causal_lm")
