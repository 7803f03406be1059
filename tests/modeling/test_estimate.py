"""Memory model terms and the time estimate (its device calibration is faked)."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console

from tuner_tui.modeling import estimate as est
from tuner_tui.recipe import Recipe

CONFIG = SimpleNamespace(
    hidden_size=512, intermediate_size=1376, num_hidden_layers=8, num_attention_heads=8, vocab_size=8000
)


def _recipe(model: Path, **training) -> Recipe:
    recipe = Recipe()
    recipe.model.name_or_path = str(model)
    for key, value in training.items():
        setattr(recipe.training, key, value)
    return recipe


@pytest.fixture
def fake_calibration(monkeypatch) -> list[tuple[str, str]]:
    """measure_throughput answers 10 GFLOP/s without running a matmul; records its calls."""
    calls: list[tuple[str, str]] = []

    def fake(device: str, dtype: str) -> float:
        calls.append((device, dtype))
        return 1e10

    monkeypatch.setattr(est, "measure_throughput", fake)
    return calls


def test_checkpointing_peak_is_the_larger_of_logits_and_one_recomputed_layer() -> None:
    seq = 512
    inputs = 8 * seq * 512 * 4
    logits = est.logits_bytes_per_sequence(CONFIG, seq)
    ckpt = est.activation_bytes_per_sequence(CONFIG, seq, 4, True)
    # Backward passes the loss (logits buffers) before it recomputes any layer: not a sum.
    assert ckpt == inputs + logits
    full = est.activation_bytes_per_sequence(CONFIG, seq, 4, False)
    assert full == 8 * (seq * (est.ACT_PER_HIDDEN * 512 + est.ACT_PER_INTERMEDIATE * 1376) * 4) + logits
    # A classifier has no vocabulary-sized head: the recomputed layer is the peak then.
    no_head = est.activation_bytes_per_sequence(CONFIG, seq, 4, True, lm_head=False)
    assert inputs < no_head < ckpt


def test_attention_scores_count_only_for_the_eager_kernel() -> None:
    sdpa = est.activation_bytes_per_sequence(CONFIG, 256, 4, False)
    eager = est.activation_bytes_per_sequence(CONFIG, 256, 4, False, quadratic_attention=True)
    assert eager - sdpa == 8 * 2 * 8 * 256 * 256 * 4


def test_full_adamw_peak_phase_and_accumulation(tiny_assets, fake_calibration) -> None:
    recipe = _recipe(tiny_assets["model"], batch_size=1, max_length=8, max_steps=2)
    recipe.method.type = "full"
    estimate = est.estimate_memory(recipe, device_bytes=2**30)
    # Tiny batch: the optimizer step (gradients + AdamW's sqrt(v) temporaries) is the peak.
    assert estimate.peak_phase == "optimizer step"
    b = estimate.breakdown
    assert b["activations"] == 0 and b["optimizer_step"] == b["gradients"] == estimate.total_params * 4
    assert sum(b.values()) == estimate.total_bytes
    recipe.training.batch_size, recipe.training.max_length = 16, 256
    big = est.estimate_memory(recipe, device_bytes=2**30)
    assert big.peak_phase == "start of backward" and big.breakdown["gradients"] == 0
    # With accumulation the gradients stay alive through the next forward and backward.
    recipe.training.gradient_accumulation = 4
    accumulated = est.estimate_memory(recipe, device_bytes=2**30)
    assert accumulated.breakdown["gradients"] == estimate.total_params * 4


def test_time_estimate_is_positive_linear_in_steps_and_printed(tiny_assets, fake_calibration) -> None:
    recipe = _recipe(tiny_assets["model"], batch_size=4, max_length=64, max_steps=10)
    first = est.estimate_memory(recipe, device_bytes=2**30)
    recipe.training.max_steps = 30
    second = est.estimate_memory(recipe, device_bytes=2**30)
    assert first.time_s is not None and second.time_s is not None and first.time_s > 0
    assert second.time_s == pytest.approx(3 * first.time_s)
    assert first.planned_tokens == 10 * 4 * 64 and first.device_flops == 1e10
    assert fake_calibration and all(call == ("cpu", "float32") for call in fake_calibration)
    data = first.to_json()
    assert data["time_s"] == first.time_s and data["time_assumptions"]
    console = Console(file=io.StringIO(), width=80, record=True)
    est.render_estimate(first, console)
    text = console.export_text()
    assert "Time: about" in text and "GFLOP/s" in text and "10 steps x 4 sequences" in text
    assert max(len(line) for line in text.splitlines()) <= 80


def test_time_estimate_counts_epochs_over_the_data(tiny_assets, fake_calibration) -> None:
    recipe = _recipe(tiny_assets["model"], batch_size=4, max_length=64)
    recipe.data.path = str(tiny_assets["data"])
    recipe.training.epochs = 1.0
    one = est.estimate_memory(recipe, device_bytes=2**30)
    recipe.training.epochs = 2.0
    two = est.estimate_memory(recipe, device_bytes=2**30)
    assert one.time_s and two.time_s and two.time_s == pytest.approx(2 * one.time_s, rel=0.01)
    assert 0 < one.planned_tokens < 64 * 64
    assert any("epochs x" in a and "train rows" in a for a in one.time_assumptions)


def test_flops_per_token_full_is_about_three_times_the_forward() -> None:
    total = 30_000_000
    full = est.flops_per_token(CONFIG, total, total, "full", 1)
    lora = est.flops_per_token(CONFIG, total, 100_000, "lora", 1)
    matmul = total - 8000 * 512
    assert full == pytest.approx(6 * matmul, rel=0.01)
    assert lora == pytest.approx(4 * matmul, rel=0.05)
    assert est.flops_per_token(CONFIG, total, 100_000, "lora", 1, checkpointing=True) > lora


def test_calibration_runs_a_short_matmul(monkeypatch) -> None:
    from tests.modeling.conftest import REAL_MEASURE_THROUGHPUT as real

    monkeypatch.setattr(est, "CALIBRATION_SECONDS", 0.01)
    monkeypatch.setattr(est, "CALIBRATION_SIZE", {"cpu": 64})
    real.cache_clear()
    try:
        assert real("cpu", "float32") > 0
    finally:
        real.cache_clear()


def _saved_bytes(method: str, layers: int) -> int:
    """Bytes of distinct non-parameter tensors a forward pass saves for backward."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from tuner_tui.modeling.methods import build_method

    config = LlamaConfig(
        vocab_size=500,
        hidden_size=128,
        intermediate_size=344,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        use_cache=False,
    )
    torch.manual_seed(0)
    recipe = Recipe()
    recipe.method.type = method
    model = build_method(LlamaForCausalLM(config), recipe.method, "causal_lm", total_steps=2).model.train()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    ids = torch.randint(1, 500, (2, 64))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=ids)
    return sum(saved.values())


@pytest.mark.parametrize("method", ["full", "lora"])
def test_per_layer_constants_match_what_a_llama_layer_saves(method: str) -> None:
    measured = _saved_bytes(method, 3) - _saved_bytes(method, 2)
    config = SimpleNamespace(
        hidden_size=128, intermediate_size=344, num_hidden_layers=1, num_attention_heads=4, vocab_size=500
    )
    # lora all-linear with dropout: q, k, v, o, gate, up see hidden-wide inputs, down intermediate.
    dropout_inputs = 6 * 128 + 344 if method == "lora" else 0
    per_layer = est.activation_bytes_per_sequence(config, 64, 4, False, dropout_inputs=dropout_inputs)
    per_layer -= est.logits_bytes_per_sequence(config, 64)
    assert per_layer * 2 == pytest.approx(measured, rel=0.1)


def test_mlp_shape_and_attention_dropout_are_read_from_the_model() -> None:
    from transformers import BertConfig, LlamaConfig

    from tuner_tui.modeling.describe import meta_model

    llama = LlamaConfig(hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=2)
    bert = BertConfig(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2)
    assert est._intermediate_copies(meta_model(llama, "causal_lm"), llama) == 4  # gate + up
    assert est._intermediate_copies(meta_model(bert, "sequence_classification"), bert) == 2
    plain = est.activation_bytes_per_sequence(CONFIG, 128, 4, False, quadratic_attention=True)
    dropped = est.activation_bytes_per_sequence(
        CONFIG, 128, 4, False, quadratic_attention=True, attention_dropout=True
    )
    assert dropped - plain == 8 * 8 * 128 * 128  # one mask byte per score
