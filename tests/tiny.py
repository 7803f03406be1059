"""Tiny models and data built in the test itself, saved with save_pretrained so the real
from_pretrained path runs. No hub access."""

from __future__ import annotations

import json
import random
from pathlib import Path

COUNTRIES = [
    ("France", "Paris"),
    ("Spain", "Madrid"),
    ("Italy", "Rome"),
    ("Germany", "Berlin"),
    ("Poland", "Warsaw"),
    ("Norway", "Oslo"),
    ("Sweden", "Stockholm"),
    ("Greece", "Athens"),
    ("Egypt", "Cairo"),
    ("Kenya", "Nairobi"),
    ("Peru", "Lima"),
    ("Chile", "Santiago"),
    ("Japan", "Tokyo"),
    ("India", "Delhi"),
    ("Canada", "Ottawa"),
    ("Cuba", "Havana"),
]


def alpaca_rows(n: int = 64, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        country, capital = COUNTRIES[i % len(COUNTRIES)]
        style = rng.choice(
            ["What is the capital of {c}?", "Name the capital city of {c}.", "Capital of {c}?"]
        )
        rows.append(
            {
                "instruction": style.format(c=country),
                "input": "",
                "output": f"The capital of {country} is {capital}.",
            }
        )
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def build_tokenizer(corpus: list[str], vocab_size: int = 400):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
    )


def build_tiny_llama(
    folder: Path, corpus: list[str] | None = None, seed: int = 0, vocab_size: int = 400, **config: object
) -> Path:
    """A 2-layer Llama-style causal LM (~60k parameters) with its own BPE tokenizer; `config`
    overrides LlamaConfig fields (benchmarks build bigger ones)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if corpus is None:
        corpus = [r["instruction"] + " " + r["output"] for r in alpaca_rows(64)]
        corpus += ["### Instruction:\n", "### Response:\n"]
    tokenizer = build_tokenizer(corpus, vocab_size=vocab_size)
    settings: dict = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 256,
        "initializer_range": 0.3,  # logits far enough from uniform for a LoRA to move them
        **config,
    }
    llama_config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **settings,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(llama_config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


BENCH_MODEL = {
    "vocab_size": 4000,
    "hidden_size": 256,
    "intermediate_size": 688,
    "num_hidden_layers": 4,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "max_position_embeddings": 512,
    "initializer_range": 0.02,
}
"""The benchmarks' model: a 4-layer Llama big enough that a step is compute, not overhead."""


def build_bench_llama(folder: Path, corpus: list[str]) -> Path:
    """The benchmarks' 4-layer Llama (BENCH_MODEL) with a tokenizer trained on `corpus`."""
    return build_tiny_llama(folder, corpus, **BENCH_MODEL)


def write_recipe(path: Path, data: Path, model: Path, extra: str = "", **training: object) -> Path:
    """A small causal-LM LoRA recipe for the tiny model; `extra` is appended TOML."""
    settings = {
        "max_steps": 12,
        "batch_size": 4,
        "learning_rate": 0.01,
        "save_every_steps": 4,
        "max_length": 64,
        "log_every_steps": 1,
        "keep_checkpoints": 2,
        **training,
    }
    lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in settings.items())
    path.write_text(
        f"""schema_version = 1
[project]
name = "tiny"
seed = 7
[data]
path = "{data}"
validation_fraction = 0.1
test_fraction = 0.1
[model]
name_or_path = "{model}"
[method]
type = "lora"
r = 4
alpha = 8.0
dropout = 0.1
[evaluation]
max_samples = 8
[evaluation.generation]
max_new_tokens = 16
[training]
{lines}
{extra}""",
        encoding="utf-8",
    )
    return path
