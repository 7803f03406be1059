"""QLoRA: 4-bit NF4 weights through bitsandbytes train, and the saved adapter reloads onto a fresh
4-bit base with the very logits it was trained to."""

from __future__ import annotations

import math

import pytest

from tests.gpu.helpers import GPU_MODULE, bitsandbytes_missing, cuda_only

pytestmark = [*GPU_MODULE, cuda_only]


def test_qlora_trains_in_4bit_and_reloads_with_identical_logits(trained, measurements) -> None:
    if why := bitsandbytes_missing():
        pytest.skip(why)
    import torch
    from peft import PeftModel, prepare_model_for_kbit_training

    from tuner_tui.modeling.loading import load_model
    from tuner_tui.recipe import load_recipe

    done = trained("qlora")
    recipe = load_recipe(done.run.recipe)
    model, tokenizer = done.outcome.model, done.outcome.tokenizer
    assert getattr(model.get_base_model(), "is_loaded_in_4bit", False)
    four_bit = [n for n, p in model.named_parameters() if type(p).__name__ == "Params4bit"]
    assert len(four_bit) == 7 * model.config.num_hidden_layers, four_bit[:5]  # every layer's linears
    assert len(done.losses) == 4 and all(math.isfinite(x) for x in done.losses), done.losses

    batch = tokenizer(["What is the capital of Peru?", "Name the capital city of Chile."], padding=True)
    batch = {k: torch.tensor(v, device="cuda") for k, v in batch.items()}
    # Reloaded as it was built for training (tuner's build_qlora): the same NF4 quantization of the
    # same bf16 weights, peft's float32 casts of the rest, then the saved adapter.
    base = prepare_model_for_kbit_training(
        load_model(recipe.model, device="cuda", quantize_4bit=True), use_gradient_checkpointing=False
    )
    reloaded = PeftModel.from_pretrained(base, str(done.run.adapter)).eval()
    # Recorded, not asserted: tuner's evaluation (evaluation/run.py) puts the adapter on the bf16
    # base, not on the 4-bit one it was trained against.
    on_bf16 = PeftModel.from_pretrained(load_model(recipe.model, device="cuda"), str(done.run.adapter))
    on_bf16 = on_bf16.to("cuda").eval()
    model.eval()
    # All under the autocast the trained model runs in anyway: for training, the Trainer's
    # accelerate wrapped its forward in bf16 autocast (and a float32 cast of the outputs).
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        expected = model(**batch).logits
        actual = reloaded(**batch).logits
        evaluated = on_bf16(**batch).logits
    difference = (expected.float() - actual.float()).abs().max().item()
    measurements["qlora_reload"] = {
        "max_abs_logit_difference": difference,
        "bf16_base_max_abs_logit_difference": (expected.float() - evaluated.float()).abs().max().item(),
        "bf16_base_top1_agreement": (expected.argmax(-1) == evaluated.argmax(-1)).float().mean().item(),
    }
    assert torch.equal(expected.float(), actual.float()), f"max |difference| {difference}"
