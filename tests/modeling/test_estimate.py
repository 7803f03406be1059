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


# --- several processes: per-device memory by strategy, time over the world size ------------------

PARTS_ONE_PROCESS = [
    "weights", "trainable_params", "optimizer_state", "gradients", "activations", "optimizer_step",
    "overhead",
]  # fmt: skip


def _tiny_shape(model: Path) -> tuple[int, int]:
    """(one decoder block's parameters, the output head's) of the tiny Llama, from its config:
    q and o are hidden x hidden, k and v hidden x kv_heads x head_dim, the SwiGLU MLP three
    hidden x intermediate matrices, plus two RMSNorm weights; the untied head is vocab x hidden."""
    import json

    c = json.loads((model / "config.json").read_text(encoding="utf-8"))
    hidden, kv = c["hidden_size"], c["num_key_value_heads"] * c["head_dim"]
    block = 2 * hidden * hidden + 2 * hidden * kv + 3 * hidden * c["intermediate_size"] + 2 * hidden
    assert not c["tie_word_embeddings"]
    return block, c["vocab_size"] * hidden


def _processes(model: Path, method: str, processes: int, strategy: str, **training) -> est.Estimate:
    recipe = _recipe(model, batch_size=2, max_length=32, max_steps=4, **training)
    recipe.method.type = method
    recipe.training.num_processes, recipe.training.strategy = processes, strategy
    return est.estimate_memory(recipe, device_bytes=2**30)


def test_one_process_ignores_the_strategy(tiny_assets) -> None:
    one = _processes(tiny_assets["model"], "lora", 1, "ddp")
    assert list(one.breakdown) == PARTS_ONE_PROCESS
    assert one.processes == 1 and one.strategy == "ddp"
    # float32 on the CPU: weights 4 bytes, peft's adapters float32, AdamW two moments each.
    b = one.breakdown
    assert b["weights"] == one.total_params * 4 and b["trainable_params"] == one.trainable_params * 4
    assert b["optimizer_state"] == one.trainable_params * 2 * 4
    # A strategy only matters with several processes (the recipe check says so too).
    for strategy in ("fsdp", "deepspeed"):
        other = _processes(tiny_assets["model"], "lora", 1, strategy)
        assert other.breakdown == one.breakdown and other.total_bytes == one.total_bytes
        assert other.notes == one.notes and other.processes == 1


@pytest.mark.parametrize("method", ["lora", "full"])
def test_ddp_adds_one_copy_of_the_trainable_gradients(tiny_assets, method: str) -> None:
    one = _processes(tiny_assets["model"], method, 1, "ddp")
    two = _processes(tiny_assets["model"], method, 2, "ddp")
    assert two.processes == 2 and two.strategy == "ddp"
    # Everything is replicated; the reducer's buckets are the only new part.
    gradient_bytes = two.trainable_params * 4  # float32 here, adapters or full
    assert two.breakdown.pop("ddp_buckets") == gradient_bytes
    del one.breakdown["overhead"], two.breakdown["overhead"]
    assert two.breakdown == one.breakdown
    assert any(n.startswith("ddp: each of the 2 processes") for n in two.notes)
    assert two.total_bytes > one.total_bytes


def test_fsdp_shards_weights_and_gathers_one_block_plus_the_head(tiny_assets) -> None:
    model = tiny_assets["model"]
    block, head = _tiny_shape(model)
    # Full tuning with accumulation, so gradients show at the start of backward too.
    one = _processes(model, "full", 1, "ddp", gradient_accumulation=2)
    four = _processes(model, "full", 4, "fsdp", gradient_accumulation=2)
    b1, b4 = one.breakdown, four.breakdown
    assert four.processes == 4 and four.strategy == "fsdp"
    assert b1["weights"] == one.total_params * 4
    for part in ("weights", "optimizer_state", "gradients"):
        assert b4[part] == -(-b1[part] // 4), part  # ceil(1/4 of the part)
    assert b4["fsdp_gathered"] == (block + head) * 4
    assert b4["weights"] + b4["fsdp_gathered"] < b1["weights"]
    assert any(f"one transformer block ({block:,} parameters)" in n for n in four.notes)
    # A 16-bit dtype: accelerate keeps the trainable weights as float32 shards, gathers in bf16.
    recipe = _recipe(model, batch_size=2, max_length=32, max_steps=4, gradient_accumulation=2)
    recipe.method.type, recipe.model.dtype = "full", "bfloat16"
    recipe.training.num_processes, recipe.training.strategy = 4, "fsdp"
    bf16 = est.estimate_memory(recipe, device_bytes=2**30)
    assert bf16.breakdown["weights"] == -(-bf16.total_params * 4 // 4)
    assert bf16.breakdown["gradients"] == -(-bf16.total_params * 4 // 4)
    assert bf16.breakdown["fsdp_gathered"] == (block + head) * 2
    # Adapters: the frozen base and the adapters are sharded alike.
    lora_one = _processes(model, "lora", 1, "ddp")
    lora_four = _processes(model, "lora", 4, "fsdp")
    for part in ("weights", "trainable_params", "optimizer_state"):
        assert lora_four.breakdown[part] == -(-lora_one.breakdown[part] // 4), part


def test_deepspeed_zero2_shards_gradients_and_optimizer_state_only(tiny_assets) -> None:
    model = tiny_assets["model"]
    one = _processes(model, "lora", 1, "ddp", gradient_accumulation=2)
    four = _processes(model, "lora", 4, "deepspeed", gradient_accumulation=2)
    assert four.breakdown["optimizer_state"] == -(-one.breakdown["optimizer_state"] // 4)
    assert four.breakdown["gradients"] == -(-one.breakdown["gradients"] // 4) > 0
    assert four.breakdown["weights"] == one.breakdown["weights"]
    assert four.breakdown["trainable_params"] == one.breakdown["trainable_params"]
    assert "fsdp_gathered" not in four.breakdown and "ddp_buckets" not in four.breakdown
    assert any(n.startswith("deepspeed ZeRO-2") for n in four.notes)
    # bf16 full tuning: ZeRO's 2 + 2/N + 12/N bytes per parameter for mixed-precision Adam.
    recipe = _recipe(model, batch_size=2, max_length=32, max_steps=4)
    recipe.method.type, recipe.model.dtype = "full", "bfloat16"
    recipe.training.num_processes, recipe.training.strategy = 4, "deepspeed"
    bf16 = est.estimate_memory(recipe, device_bytes=2**30)
    n = bf16.total_params
    assert bf16.breakdown["weights"] == 2 * n
    assert bf16.breakdown["optimizer_state"] == -(-12 * n // 4)


def test_the_largest_batch_is_searched_per_device(tiny_assets) -> None:
    def estimate(processes: int, strategy: str, batch_size: int = 1) -> est.Estimate:
        recipe = _recipe(tiny_assets["model"], batch_size=batch_size, max_length=8, max_steps=4)
        recipe.method.type = "full"
        recipe.training.num_processes, recipe.training.strategy = processes, strategy
        return est.estimate_memory(recipe, device_bytes=2 * 2**20)

    one, ddp, fsdp = estimate(1, "ddp"), estimate(2, "ddp"), estimate(4, "fsdp")
    assert 0 < ddp.max_batch_size < one.max_batch_size < fsdp.max_batch_size
    # The verdict and the search judge the same per-device total.
    largest = fsdp.max_batch_size
    assert estimate(4, "fsdp", largest).verdict == "fits"
    assert estimate(4, "fsdp", largest + 1).verdict != "fits"


def test_time_divides_by_the_world_size(tiny_assets) -> None:
    recipe = _recipe(tiny_assets["model"], batch_size=4, max_length=64)
    recipe.data.path = str(tiny_assets["data"])
    recipe.training.epochs = 1.0
    one = est.estimate_memory(recipe, device_bytes=2**30)
    # Two machines with one process each: the world size counts, not processes per node.
    recipe.training.nnodes = 2
    two = est.estimate_memory(recipe, device_bytes=2**30)
    assert one.time_s and two.time_s
    assert two.planned_tokens == one.planned_tokens and two.time_s == pytest.approx(one.time_s / 2)
    assert two.processes == 2
    assert any("linear scaling, an assumption" in a for a in two.time_assumptions)
    assert not any("linear scaling" in a for a in one.time_assumptions)
    # Steps-based: each step takes 2 processes x batch_size sequences, in the time of one.
    recipe.training.max_steps = 10
    steps_two = est.estimate_memory(recipe, device_bytes=2**30)
    recipe.training.nnodes = 1
    steps_one = est.estimate_memory(recipe, device_bytes=2**30)
    assert steps_two.planned_tokens == 2 * steps_one.planned_tokens == 2 * 10 * 4 * 64
    assert steps_two.time_s == pytest.approx(steps_one.time_s)
    assert any("10 steps x 8 sequences (4 on each of 2 processes)" in a for a in steps_two.time_assumptions)


def test_render_says_per_device_and_the_processes(tiny_assets) -> None:
    estimate = _processes(tiny_assets["model"], "lora", 2, "ddp")
    console = Console(file=io.StringIO(), width=80, record=True)
    est.render_estimate(estimate, console)
    text = console.export_text()
    assert "per device, 2 processes (ddp)" in text and "ddp buckets" in text
    assert max(len(line) for line in text.splitlines()) <= 80
    assert estimate.to_json()["processes"] == 2 and estimate.to_json()["strategy"] == "ddp"
    single = Console(file=io.StringIO(), width=80, record=True)
    est.render_estimate(_processes(tiny_assets["model"], "lora", 1, "ddp"), single)
    assert "per device" not in single.export_text()
