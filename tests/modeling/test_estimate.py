"""Memory model terms and the time estimate (its device calibration is faked)."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console

from tuner_tui.modeling import estimate as est
from tuner_tui.recipe import Recipe
from tuner_tui.views.estimate import print_estimate

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
    print_estimate(console, first)
    text = console.export_text()
    assert f"for {first.planned_tokens:,} tokens" in text and "GFLOP/s" in text
    assert "10 steps x 4 sequences" in text
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
    # float32 on the CPU: weights 4 bytes, peft's adapters float32, AdamW two moments each. The
    # total counts the adapters too (as training reports it); the weights are the frozen rest.
    b = one.breakdown
    assert b["weights"] == (one.total_params - one.trainable_params) * 4
    assert b["trainable_params"] == one.trainable_params * 4
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
    print_estimate(console, estimate)
    text = console.export_text()
    assert "per device · 2 processes × 1 node (ddp)" in text and "ddp buckets" in text
    assert max(len(line) for line in text.splitlines()) <= 80
    assert estimate.to_json()["processes"] == 2 and estimate.to_json()["strategy"] == "ddp"
    single = Console(file=io.StringIO(), width=80, record=True)
    print_estimate(single, _processes(tiny_assets["model"], "lora", 1, "ddp"))
    single_text = single.export_text()
    assert "per device" not in single_text and "1 process, one device" in single_text


def _loaded_counts(recipe: Recipe, base_dir: Path | None = None) -> tuple[int, int]:
    """(trainable, total) of the model as the worker builds it, as peft itself reports them."""
    from tuner_tui.modeling.loading import load_model, load_tokenizer, parameter_counts
    from tuner_tui.modeling.methods import build_method
    from tuner_tui.training.examples import prepare_data

    data = prepare_data(recipe, load_tokenizer(recipe.model, base_dir), base_dir)
    base = load_model(
        recipe.model,
        device="cpu",
        base_dir=base_dir,
        num_labels=len(data.id2label) if data.id2label else None,
        id2label=data.id2label,
    )
    model = build_method(base, recipe.method, recipe.model.task, total_steps=10).model
    assert parameter_counts(model) == model.get_nb_trainable_parameters()
    return model.get_nb_trainable_parameters()


@pytest.mark.parametrize("task", ["causal_lm", "sequence_classification"])
def test_estimate_reports_the_parameter_counts_of_the_loaded_peft_model(
    tiny_assets, tmp_path: Path, task: str
) -> None:
    import json

    recipe = _recipe(tiny_assets["model"], batch_size=2, max_length=32, max_steps=4)
    recipe.model.task = task
    recipe.data.path = str(tiny_assets["data"])
    if task == "sequence_classification":
        # Five labels, not the config's default two: the head is sized by the data.
        rows = [{"text": f"ticket number {i}", "label": f"queue{i % 5}"} for i in range(40)]
        data = tmp_path / "tickets.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        recipe.data.path, recipe.data.format = str(data), "classification"
        recipe.data.fields = {"text": "text", "label": "label"}
    estimate = est.estimate_memory(recipe, device_bytes=2**30)
    assert (estimate.trainable_params, estimate.total_params) == _loaded_counts(recipe)
    # Weights in memory are the base model's; the adapters count apart, in float32.
    assert estimate.breakdown["weights"] < estimate.total_params * 4


def test_a_classifier_estimate_without_readable_data_says_how_it_sized_the_head(
    tiny_assets, tmp_path: Path
) -> None:
    recipe = _recipe(tiny_assets["model"], batch_size=2, max_length=32, max_steps=4)
    recipe.model.task, recipe.data.path = "sequence_classification", str(tmp_path / "missing.jsonl")
    estimate = est.estimate_memory(recipe, device_bytes=2**30)
    assert any(
        n.startswith("classifier head counted for the model config's 2 labels") for n in estimate.notes
    )


@pytest.mark.slow
def test_the_demo_recipe_estimate_matches_its_loaded_model() -> None:
    """The built-in demo (real MiniLM, six intents): the counts `tuner estimate` prints are the
    ones the run logs."""
    from tuner_tui.recipe import load_recipe

    path = Path(__file__).resolve().parents[2] / "assets" / "demo" / "recipe.toml"
    recipe = load_recipe(path)
    recipe.training.max_steps = 4  # the count does not depend on the schedule
    estimate = est.estimate_memory(recipe, device_bytes=2**34, base_dir=path.parent)
    assert (estimate.trainable_params, estimate.total_params) == _loaded_counts(recipe, path.parent)


# --- the presenter (tuner_tui.views.estimate), shared by `tuner estimate` and the Model step -----


def _estimate(**fields) -> est.Estimate:
    base = {
        "total_bytes": 1_288_490_188,
        "device_bytes": 16 * 2**30,
        "device_label": "system RAM (available; no CUDA GPU)",
        "verdict": "fits",
        "breakdown": {"weights": 90_852_864, "activations": 1_100_000_000, "overhead": 97_637_324},
        "trainable_params": 294_912,
        "total_params": 23_008_128,
        "batch_size": 16,
        "max_length": 128,
        "max_batch_size": 1,
        "dtype": "float32",
        "method": "lora",
        "notes": ["[training] batch_size = 16 is [bold]large[/bold]"],
        "peak_phase": "start of backward",
        "time_s": 983.4,
        "planned_tokens": 1_638_400,
        "flops_per_token": 2.7e8,
        "device_flops": 1.2e11,
        "time_assumptions": ["cpu sustains 30% of a measured 120 GFLOP/s float32 matmul"],
    }
    return est.Estimate(**{**base, **fields})


def _shown(estimate: est.Estimate, width: int = 80) -> str:
    console = Console(file=io.StringIO(), width=width, record=True)
    print_estimate(console, estimate)
    return console.export_text()


def test_every_figure_has_its_unit_and_no_raw_key_shows() -> None:
    from tuner_tui.views.estimate import estimate_rows

    estimate = _estimate()
    text = _shown(estimate)
    assert "fits" in text and "1.20 GiB of 16.00 GiB (7%) on system RAM" in text
    assert "about 16 min for 1,638,400 tokens" in text
    assert "16 sequences of up to 128 tokens" in text and "per device" not in text  # one device
    assert "1 sequence fits" in text and "294,912 of 23,008,128 parameters (1.282%)" in text
    assert "at the start of backward" in text and "1.02 GiB" in text  # activations, in the breakdown
    # No field name leaks as a label ('time s: 983', 'flops per token').
    for key in estimate.to_json():
        assert f"{key}:" not in text and f"{key.replace('_', ' ')}:" not in text, key
    assert "983" not in text and "flops per token" not in text.lower()
    # Every value says what it counts: a unit or a word, never a bare number.
    assert all(any(c.isalpha() for c in value) for _, value in estimate_rows(estimate))
    # Notes are shown as written: recipe sections in brackets are not markup.
    assert "[training] batch_size = 16 is [bold]large[/bold]" in text
    assert max(len(line) for line in text.splitlines()) <= 80


def test_an_unknown_time_and_nothing_that_fits_are_said_in_words() -> None:
    text = _shown(
        _estimate(verdict="won't-fit", max_batch_size=0, time_s=None, planned_tokens=0, time_assumptions=[])
    )
    assert "won't-fit" in text and "none: not even 1 sequence fits" in text
    assert "time" in text and "unknown" in text


def test_the_cli_prints_at_most_80_columns_on_a_wide_terminal() -> None:
    text = _shown(_estimate(device_label="GPU 0 (" + "a very long device name " * 6 + ")"), width=200)
    assert max(len(line) for line in text.splitlines()) <= 80


def test_a_problem_in_a_key_the_estimate_reads_blocks_it() -> None:
    from tuner_tui.recipe import Problem
    from tuner_tui.views.estimate import blocked_view, estimate_blocker

    harmless = [
        Problem("data.path", "does not exist"),
        Problem("training.master_addr", "is missing"),  # rendezvous: no memory figure reads it
        Problem("objectives[0].metric", "unknown"),
        Problem("training.learning_rate", "must be > 0"),
    ]
    assert estimate_blocker(harmless) is None
    for key in ("training.batch_size", "method.dropout", "model.name_or_path", "model.dtype"):
        problem = Problem(key, "is wrong")
        assert estimate_blocker([*harmless, problem]) == problem
    shown = str(blocked_view(Problem("training.batch_size", "is -1, must be at least 1.")))
    assert shown.startswith("No estimate: fix training.batch_size first")
    assert "is -1, must be at least 1." in shown


def test_the_keys_said_to_block_the_estimate_are_the_keys_it_reads(tiny_assets) -> None:
    """ESTIMATE_READS names every training key estimate_memory reads (memory and time, the
    epochs path too): a problem in any of them stops the wizard from estimating."""
    import dataclasses

    from tuner_tui.views.estimate import ESTIMATE_READS

    read: set[str] = set()

    def recording(section: object, prefix: str) -> object:
        fields = {f.name for f in dataclasses.fields(section)}  # type: ignore[arg-type]

        class Recording(type(section)):  # type: ignore[misc]
            def __getattribute__(self, name: str) -> object:
                if name in fields:
                    read.add(f"{prefix}.{name}")
                return super().__getattribute__(name)

        copy = Recording.__new__(Recording)
        copy.__dict__.update(vars(section))
        return copy

    for max_steps in (4, 0):
        recipe = _recipe(tiny_assets["model"], batch_size=2, max_length=32, max_steps=max_steps)
        recipe.data.path, recipe.training.epochs = str(tiny_assets["data"]), 1.0
        recipe.training = recording(recipe.training, "training")  # type: ignore[assignment]
        est.estimate_memory(recipe, device_bytes=2**30)
    training = {key for key in read if key.startswith("training.")}
    assert {"training.batch_size", "training.epochs", "training.optimizer"} <= training
    assert training <= set(ESTIMATE_READS)


def test_a_problem_of_this_machine_does_not_block_the_estimate(monkeypatch) -> None:
    """An fsdp layout on a CPU-only machine is refused by `tuner run` here, but its memory on the GPU
    box it is meant for is exactly what a user wants to know."""
    from tuner_tui.preflight import preflight_problems
    from tuner_tui.recipe import Recipe
    from tuner_tui.views.estimate import estimate_blocker

    monkeypatch.setattr("tuner_tui.preflight.cuda_device_count", lambda: 0)  # a CPU-only machine
    recipe = Recipe()
    recipe.training.num_processes, recipe.training.strategy, recipe.training.device = 2, "fsdp", "cuda"
    machine = [p for p in preflight_problems(recipe, None) if p.path.startswith("training.")]
    assert machine and all(p.machine for p in machine)
    assert estimate_blocker(machine) is None
