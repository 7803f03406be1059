"""Padding-free packing: the same loss as padding on the same batch, and it trains."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.modeling.helpers import recipe_for, train_in_process
from tuner_tui.recipe import Recipe
from tuner_tui.training.examples import IGNORE, PadCollator, make_collator


def _features(tokenizer) -> list[dict]:
    texts = ["Capital of Peru? Lima.", "What is the capital of France? The capital of France is Paris.", "Hi"]
    features = []
    for text in texts:
        ids = tokenizer(text)["input_ids"]
        # Prompt tokens masked as completion-only loss does, so masking survives flattening too.
        labels = [IGNORE] * 2 + ids[2:]
        features.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels})
    return features


def test_packed_loss_equals_padded_loss_on_the_same_batch(tiny_assets) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_assets["model"])
    model = AutoModelForCausalLM.from_pretrained(tiny_assets["model"]).eval()
    model.config.use_cache = False  # as build_method sets it for training
    features = _features(tokenizer)
    recipe = Recipe()
    recipe.training.packing = True
    packed = make_collator(recipe, tokenizer)(features)
    padded = PadCollator(tokenizer.pad_token_id)(features)
    assert "attention_mask" not in packed and packed["input_ids"].shape[0] == 1
    assert packed["input_ids"].shape[1] == sum(len(f["input_ids"]) for f in features)
    with torch.no_grad():
        packed_loss = model(**packed).loss
        padded_loss = model(**padded).loss
    # Same tokens, same targets, one mean over them: only summation order differs.
    assert torch.allclose(packed_loss, padded_loss, atol=1e-5, rtol=0), (packed_loss, padded_loss)


def test_packing_without_a_block_mask_would_differ(tiny_assets) -> None:
    """Guard for the test above: without restarting positions the examples see each other."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_assets["model"])
    model = AutoModelForCausalLM.from_pretrained(tiny_assets["model"]).eval()
    model.config.use_cache = False
    recipe = Recipe()
    recipe.training.packing = True
    packed = make_collator(recipe, tokenizer)(_features(tokenizer))
    padded = PadCollator(tokenizer.pad_token_id)(_features(tokenizer))
    leaky = {"input_ids": packed["input_ids"], "labels": packed["labels"]}
    with torch.no_grad():
        assert not torch.allclose(model(**leaky).loss, model(**padded).loss, atol=1e-3)


@pytest.mark.slow
def test_training_with_packing_lowers_the_loss(tiny_assets, tmp_path: Path) -> None:
    recipe_path = recipe_for(
        tmp_path,
        tiny_assets["data"],
        tiny_assets["model"],
        {"type": "lora", "r": 4, "alpha": 8.0},
        max_steps=30,
        learning_rate=0.02,
        packing=True,
        save_every_steps=1000,
    )
    _, _, events = train_in_process(recipe_path, tmp_path / "runs")
    losses = [e["loss"] for e in events if e["type"] == "metric"]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.2, losses
    assert any(e.get("chat_template") == "fallback:alpaca" for e in events if e["type"] == "log")


def test_packing_with_prompt_tuning_is_refused(tiny_assets, tmp_path: Path) -> None:
    from tuner_tui.errors import TunerError

    recipe_path = recipe_for(
        tmp_path,
        tiny_assets["data"],
        tiny_assets["model"],
        {"type": "prompt_tuning"},
        max_steps=2,
        packing=True,
    )
    with pytest.raises(TunerError, match="training.packing: is true, which does not work with"):
        train_in_process(recipe_path, tmp_path / "runs")


def test_bucketing_and_packing_are_exclusive_and_bucketing_sets_the_sampler(tiny_assets, tmp_path) -> None:
    from tuner_tui.runs.layout import RunDir
    from tuner_tui.training.examples import LENGTH_COLUMN
    from tuner_tui.training.run import training_arguments

    recipe = Recipe()
    recipe.training.packing = recipe.training.bucket_by_length = True
    assert any(p.path == "training.bucket_by_length" for p in recipe.problems())
    recipe.training.packing = False
    assert not any(p.path.startswith("training.") for p in recipe.problems())
    args = training_arguments(recipe, RunDir(tmp_path / "run"), "cpu", has_validation=False)
    assert args.train_sampling_strategy == "group_by_length"
    assert args.length_column_name == LENGTH_COLUMN
    recipe.training.bucket_by_length = False
    assert (
        training_arguments(recipe, RunDir(tmp_path / "run"), "cpu", False).train_sampling_strategy == "random"
    )


def test_training_with_bucketing_reads_the_length_column(tiny_assets, tmp_path: Path, monkeypatch) -> None:
    from transformers import trainer_pt_utils

    sampled: list[list[int]] = []
    real = trainer_pt_utils.LengthGroupedSampler.__init__

    def spy(self, *args, **kwargs):
        sampled.append(kwargs.get("lengths"))
        real(self, *args, **kwargs)

    monkeypatch.setattr(trainer_pt_utils.LengthGroupedSampler, "__init__", spy)
    recipe_path = recipe_for(
        tmp_path,
        tiny_assets["data"],
        tiny_assets["model"],
        {"type": "lora", "r": 4, "alpha": 8.0},
        max_steps=3,
        bucket_by_length=True,
        save_every_steps=1000,
    )
    outcome, _, events = train_in_process(recipe_path, tmp_path / "runs")
    assert outcome.global_step == 3
    train = outcome.data.train
    assert train["length"] == [len(ids) for ids in train["input_ids"]]
    # The sampler got our lengths (no re-tokenizing, no walk over input_ids).
    assert sampled and sampled[0] is not None and list(sampled[0]) == list(train["length"])
