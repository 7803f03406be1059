"""merge_and_export: adapter copy by default, merged safetensors model matching base+adapter."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.modeling.helpers import recipe_for, train_in_process
from tuner_tui.errors import TunerError
from tuner_tui.modeling.export import MERGE_TOLERANCE, load_tuned_model, merge_and_export
from tuner_tui.recipe import load_recipe

pytestmark = pytest.mark.slow


def test_merged_export_matches_base_plus_adapter(tiny_assets, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    recipe_path = recipe_for(
        tmp_path,
        tiny_assets["data"],
        tiny_assets["model"],
        {"type": "lora", "r": 4, "alpha": 8.0},
        max_steps=8,
        learning_rate=0.05,
        save_every_steps=1000,
    )
    _, run, _ = train_in_process(recipe_path, tmp_path / "runs")
    plain = merge_and_export(run.root, tmp_path / "plain", merge=False)
    assert (plain / "adapter_model.safetensors").exists() and (plain / "tuner_recipe.toml").exists()

    merged_dir = merge_and_export(run.root, tmp_path / "merged", merge=True)
    assert (merged_dir / "model.safetensors").exists() and not (merged_dir / "adapter_config.json").exists()
    assert not list(merged_dir.glob("*.bin"))
    tokenizer = AutoTokenizer.from_pretrained(merged_dir)
    batch = tokenizer(
        ["What is the capital of Peru?", "Capital of Chile?"], return_tensors="pt", padding=True
    )
    with torch.no_grad():
        expected = load_tuned_model(load_recipe(run.recipe), run.adapter)(**batch).logits
        actual = AutoModelForCausalLM.from_pretrained(merged_dir).eval()(**batch).logits
        base = AutoModelForCausalLM.from_pretrained(tiny_assets["model"]).eval()(**batch).logits
    assert (expected - base).abs().max() > 100 * MERGE_TOLERANCE  # the adapter changed something
    assert torch.allclose(expected, actual, atol=MERGE_TOLERANCE, rtol=0), (expected - actual).abs().max()

    with pytest.raises(TunerError, match="not empty"):
        merge_and_export(run.root, merged_dir, merge=True)


def test_prompt_tuning_cannot_be_merged(tiny_assets, tmp_path: Path) -> None:
    recipe_path = recipe_for(
        tmp_path,
        tiny_assets["data"],
        tiny_assets["model"],
        {"type": "prompt_tuning"},
        max_steps=2,
        save_every_steps=1000,
    )
    _, run, _ = train_in_process(recipe_path, tmp_path / "runs")
    with pytest.raises(TunerError, match="cannot be merged"):
        merge_and_export(run.root, tmp_path / "out", merge=True)
    assert (merge_and_export(run.root, tmp_path / "copy", merge=False) / "adapter_config.json").exists()
