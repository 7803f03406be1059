"""Memory estimate vs measured peak of real CPU training steps, for six settings.

Each setting runs in a fresh subprocess (so peaks do not mix): it builds a small Llama from a
config, saves it, and trains 2 optimizer steps with transformers' Trainer through tuner's own
`build_method` and collator, on full-length sequences. Measured = peak resident memory
(`ru_maxrss`) minus the resident memory just before the model is loaded.

Why RSS and not the torch profiler or tracemalloc: tracemalloc sees only Python-object
allocations, not torch's C++ CPU allocator; the profiler's memory timeline needs CUDA. The CPU
allocator hands large blocks straight to the OS (mmap), so RSS follows tensor memory closely;
the baseline subtracts the interpreter and libraries.

    python benchmarks/memory_estimate.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile

SETTINGS = [
    # name, model shape (hidden, layers, intermediate, vocab), method, batch, max_length, ckpt, optimizer
    ("lora r16 b4 s256", (512, 8, 1376, 8000), {"type": "lora", "r": 16}, 4, 256, False, "adamw_torch"),
    ("lora r16 b8 s512", (512, 8, 1376, 8000), {"type": "lora", "r": 16}, 8, 512, False, "adamw_torch"),
    ("lora ckpt b8 s512", (512, 8, 1376, 8000), {"type": "lora", "r": 16}, 8, 512, True, "adamw_torch"),
    ("full adamw b4 s256", (512, 8, 1376, 8000), {"type": "full"}, 4, 256, False, "adamw_torch"),
    (
        "freeze-2 sgd b4 s384",
        (512, 8, 1376, 8000),
        {"type": "freeze", "trainable_layers": 2},
        4,
        384,
        False,
        "sgd",
    ),
    ("full wide b2 s512", (768, 6, 2048, 16000), {"type": "full"}, 2, 512, False, "adamw_torch"),
]

CHILD = r"""
import json, resource, sys, threading
from pathlib import Path
import torch
from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments
from datasets import Dataset
from tuner_tui.recipe import Recipe
from tuner_tui.modeling.methods import build_method
from tuner_tui.modeling.estimate import estimate_memory
from tuner_tui.training.examples import PadCollator

spec = json.loads(sys.argv[1]); root = Path(sys.argv[2])
torch.set_num_threads(2)
hidden, layers, inter, vocab = spec["shape"]
config = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
    num_attention_heads=hidden // 64, num_key_value_heads=hidden // 64, max_position_embeddings=1024)
torch.manual_seed(0)
LlamaForCausalLM(config).save_pretrained(root / "model")
recipe = Recipe()
recipe.model.name_or_path = str(root / "model"); recipe.model.dtype = "float32"
for k, v in spec["method"].items(): setattr(recipe.method, k, v)
recipe.training.batch_size = spec["batch"]; recipe.training.max_length = spec["seq"]
recipe.training.gradient_checkpointing = spec["ckpt"]; recipe.training.optimizer = spec["optim"]
recipe.training.max_steps = 2
estimate = estimate_memory(recipe, device_bytes=64 * 2**30)
n = spec["batch"] * 2
g = torch.Generator().manual_seed(0)
ids = torch.randint(1, vocab, (n, spec["seq"]), generator=g).tolist()
data = Dataset.from_dict({"input_ids": ids, "attention_mask": [[1] * spec["seq"]] * n, "labels": ids})
import gc; gc.collect()
baseline = int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize()
model = LlamaForCausalLM.from_pretrained(root / "model", dtype=torch.float32)
if spec["ckpt"]: model.enable_input_require_grads()
setup = build_method(model, recipe.method, "causal_lm", total_steps=2, gradient_checkpointing=spec["ckpt"])
args = TrainingArguments(output_dir=str(root / "out"), per_device_train_batch_size=spec["batch"], max_steps=2,
    optim=spec["optim"], learning_rate=1e-4, activation_checkpointing=spec["ckpt"], use_cpu=True,
    report_to="none", disable_tqdm=True, save_strategy="no", remove_unused_columns=False,
    logging_strategy="no")
Trainer(model=setup.model, args=args, train_dataset=data, data_collator=PadCollator(0)).train()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"measured": peak - baseline, "estimate": estimate.total_bytes,
    "breakdown": estimate.breakdown, "trainable": estimate.trainable_params}))
"""


def main() -> None:
    print(
        f"{'setting':24} {'estimate':>10} {'measured':>10} {'error':>8}"
        "   (MiB; error = estimate/measured - 1)"
    )
    errors = []
    for name, shape, method, batch, seq, ckpt, optim in SETTINGS:
        spec = {"shape": shape, "method": method, "batch": batch, "seq": seq, "ckpt": ckpt, "optim": optim}
        with tempfile.TemporaryDirectory() as root:
            result = subprocess.run(
                [sys.executable, "-c", CHILD, json.dumps(spec), root],
                capture_output=True,
                text=True,
                check=False,
            )
        if result.returncode != 0:
            print(f"{name:24} failed: {result.stderr[-800:]}")
            continue
        row = json.loads(result.stdout.strip().splitlines()[-1])
        error = row["estimate"] / row["measured"] - 1
        errors.append(abs(error))
        print(f"{name:24} {row['estimate'] / 2**20:10.1f} {row['measured'] / 2**20:10.1f} {error:+8.1%}")
    if errors:
        print(f"max |error| {max(errors):.1%}, mean |error| {sum(errors) / len(errors):.1%} (target <= 25%)")


if __name__ == "__main__":
    main()
