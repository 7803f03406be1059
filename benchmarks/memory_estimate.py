"""Memory estimate vs measured peak of real CPU training steps, for six settings.

Each setting runs in two fresh subprocesses (so peaks do not mix): each builds a small Llama from a
config, saves it, and trains 2 optimizer steps with transformers' Trainer through tuner's own
`build_method` and collator, on full-length sequences. Three measurements:

- measured: peak resident memory (`ru_maxrss`) minus the resident memory just before the model
  loads, with glibc's mmap threshold pinned at 128 KiB (MALLOC_MMAP_THRESHOLD_);
- rss-dflt: the same with glibc's default, dynamic threshold. After the first large tensor is
  freed glibc raises its threshold (up to 32 MiB), later tensors come from the heap, and freed
  heap memory stays resident: this over-counts, most with checkpointing's many recomputed
  tensors (2.0 GiB resident for 0.6 GiB of live tensors). A GPU's caching allocator does not do
  this; tensors are what the estimate models;
- tensors: peak of live tensor bytes from the torch profiler's allocation events
  (`profile_memory=True`, CPU), counted from before the model loads.

tracemalloc would see only Python objects, not torch's C++ allocator.

    python benchmarks/memory_estimate.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.results import Result, add_results_option, write_results  # noqa: E402

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
import contextlib, gc; gc.collect()
baseline = int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize()
profiler = contextlib.nullcontext()
if spec["profile"]:
    from torch.profiler import ProfilerActivity, profile
    profiler = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
with profiler as prof:
    model = LlamaForCausalLM.from_pretrained(root / "model", dtype=torch.float32)
    if spec["ckpt"]: model.enable_input_require_grads()
    setup = build_method(model, recipe.method, "causal_lm", total_steps=2,
        gradient_checkpointing=spec["ckpt"])
    args = TrainingArguments(output_dir=str(root / "out"), per_device_train_batch_size=spec["batch"],
        max_steps=2, optim=spec["optim"], learning_rate=1e-4, activation_checkpointing=spec["ckpt"],
        use_cpu=True, report_to="none", disable_tqdm=True, save_strategy="no", remove_unused_columns=False,
        logging_strategy="no")
    trainer = Trainer(model=setup.model, args=args, train_dataset=data, data_collator=PadCollator(0))
    trainer.train()
    # Checkpointing is switched on inside train(); make sure it really was, PEFT wrapper and all.
    assert not spec["ckpt"] or all(layer.gradient_checkpointing for layer in model.model.layers)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
tensors = None
if spec["profile"]:
    live = top = 0
    events = prof.profiler.kineto_results.events()
    for nbytes in [e.nbytes() for e in sorted(events, key=lambda e: e.start_ns()) if e.name() == "[memory]"]:
        live += nbytes
        top = max(top, live)
    tensors = top
print(json.dumps({"measured": peak - baseline, "tensors": tensors, "estimate": estimate.total_bytes,
    "breakdown": estimate.breakdown, "trainable": estimate.trainable_params}))
"""


# glibc raises its mmap threshold to the size of each freed mmapped block (up to 32 MiB), after
# which tensors of that size come from the heap, and freed heap memory stays resident. Pinning the
# threshold (an env var glibc reads at start) returns every large freed tensor to the OS at once.
PINNED_GLIBC = {"MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}


def start(spec: dict, env: dict[str, str], root: str) -> subprocess.Popen:
    # Output to files, not pipes: two children writing to pipes read one after the other could block.
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, json.dumps(spec), root],
        stdout=open(os.path.join(root, "stdout"), "w"),  # noqa: SIM115 - closed with the folder
        stderr=open(os.path.join(root, "stderr"), "w"),  # noqa: SIM115
        text=True,
        env={**os.environ, **env},
    )


def measure(spec: dict) -> tuple[dict, dict]:
    """(default glibc run, pinned-threshold run with the profiler): two processes side by side
    (peaks are per process, so running them together changes neither, only the wall time)."""
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        children = [
            start({**spec, "profile": False}, {}, a),
            start({**spec, "profile": True}, PINNED_GLIBC, b),
        ]
        results = []
        for child, root in zip(children, (a, b), strict=True):
            child.wait()
            out = open(os.path.join(root, "stdout")).read()
            if child.returncode != 0:
                raise RuntimeError(open(os.path.join(root, "stderr")).read()[-800:])
            results.append(json.loads(out.strip().splitlines()[-1]))
    return results[0], results[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="", help="Run only settings whose name contains this.")
    parser.add_argument("--json", action="store_true", help="Also print each row's breakdown as JSON.")
    add_results_option(parser)
    args = parser.parse_args()
    mib = 2**20
    head = f"{'setting':22} {'estimate':>9} {'measured':>9} {'error':>7}"
    print(f"{head}   {'rss-dflt':>9} {'tensors':>9} {'error':>7}")
    errors, tensor_errors = [], []
    for name, shape, method, batch, seq, ckpt, optim in SETTINGS:
        if args.only not in name:
            continue
        spec = {"shape": shape, "method": method, "batch": batch, "seq": seq, "ckpt": ckpt, "optim": optim}
        try:
            default, pinned = measure(spec)
        except RuntimeError as exc:
            print(f"{name:22} failed: {exc}")
            continue
        estimate = pinned["estimate"]
        error = estimate / pinned["measured"] - 1
        tensor_error = estimate / pinned["tensors"] - 1
        errors.append(abs(error))
        tensor_errors.append(abs(tensor_error))
        print(
            f"{name:22} {estimate / mib:9.1f} {pinned['measured'] / mib:9.1f} {error:+7.1%}   "
            f"{default['measured'] / mib:9.1f} {pinned['tensors'] / mib:9.1f} {tensor_error:+7.1%}"
        )
        if args.json:
            print(json.dumps({"setting": name, **pinned, "rss_default": default["measured"]}))
    if errors:
        print(
            "MiB. measured = peak RSS delta with glibc's mmap threshold pinned; rss-dflt = the same with "
            "glibc's default\n(dynamic) threshold; tensors = peak live tensor bytes (torch profiler). "
            "error = estimate/x - 1.\n"
            f"vs measured: max |error| {max(errors):.1%}, mean {sum(errors) / len(errors):.1%}; "
            f"vs tensors: max {max(tensor_errors):.1%}, mean {sum(tensor_errors) / len(tensor_errors):.1%}"
            " (target <= 25%)"
        )
        write_results(
            args.results,
            [
                Result(
                    f"memory estimate max |error| vs live tensors ({len(errors)} settings)",
                    max(tensor_errors),
                    "fraction",
                    None,
                    None,
                    "<= 0.25",
                    max(tensor_errors) <= 0.25,
                ),
                Result("memory estimate max |error| vs RSS", max(errors), "fraction"),
            ],
        )


if __name__ == "__main__":
    main()
