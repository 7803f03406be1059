"""LoRA throughput on a ~1B Llama on one GPU: tokens/s, model FLOPs utilisation (MFU), peak memory.

The model is tests/gpu/helpers.py's LLAMA_1B (TinyLlama-1.1B's shape, random weights, bf16). It
trains through tuner's own path in this process (`train`, as the worker calls it) on a recipe with
`packing = true` (padding-free: a batch's rows in one sequence with restarting positions),
`max_length = 2048`, bf16 and tuner's default LoRA (r 16 on every linear layer), on plain-text rows
of 256 to 2048 tokens.

- tokens/s: tuner's own figure (each metric event's `tokens_per_s`: non-padding tokens over the
  wall time between logged steps), over the steps after the warm-up;
- MFU: tokens/s x FLOPs per token / the GPU's dense bf16 peak (BF16_DENSE_PEAK_TFLOPS, from the
  vendors' datasheets; `--peak-tflops` for a GPU not listed). FLOPs per token is
  `flops_per_token` of tuner_tui/modeling/estimate.py, the count `tuner estimate`'s time uses
  (about 4N for LoRA on a frozen base, plus causal attention over each example's own length);
- peak memory: torch.cuda.max_memory_allocated and max_memory_reserved during training.

    python benchmarks/gpu_throughput.py [--steps 30] [--warmup 5] [--batch-size 8] [--out FILE]

Prints one `gpu_throughput:` result line and writes the numbers as JSON (`--out`). Without CUDA it
says so, writes {"skipped": why} and exits 0; `--tiny` runs a small model on the CPU instead (the
script's own check, no meaningful numbers).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Dense (no structured sparsity) bf16 tensor-core peaks in TFLOP/s, from NVIDIA's datasheets. The
# first key found in torch.cuda.get_device_name() wins, so the more specific names come first.
BF16_DENSE_PEAK_TFLOPS = {
    "H100 PCIe": 756.0,
    "H100 NVL": 835.0,
    "GH200": 989.4,
    "H200": 989.4,
    "H100": 989.4,  # SXM ("NVIDIA H100 80GB HBM3")
    "H800": 989.4,
    "B200": 2250.0,
    "A100": 312.0,
    "A800": 312.0,
    "L40S": 362.1,
    "L4": 121.0,
    "A10": 125.0,
}
GIB = 2**30


def bf16_peak(device_name: str) -> tuple[float | None, str]:
    """(peak FLOP/s or None, the table key that matched or why none did)."""
    for key, tflops in BF16_DENSE_PEAK_TFLOPS.items():
        if key in device_name:
            return tflops * 1e12, key
    return None, f"'{device_name}' is not in BF16_DENSE_PEAK_TFLOPS: MFU unknown (give --peak-tflops)"


def write(out: Path, result: dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


def steady_throughput(metrics: list[dict[str, Any]], warmup: int) -> tuple[float, int, int]:
    """(tokens/s, tokens, steps) over the logged steps after `warmup`, from tuner's metric events:
    each event's tokens since the previous one, over the time its tokens_per_s implies."""
    tokens = steps = 0
    seconds = 0.0
    previous = None
    for event in metrics:
        seen = event["tokens_seen"]
        if previous is not None and event["step"] > warmup and event["tokens_per_s"] > 0:
            delta = seen - previous
            tokens += delta
            seconds += delta / event["tokens_per_s"]
            steps += 1
        previous = seen
    return (tokens / seconds if seconds else 0.0), tokens, steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="Timed steps (after the warm-up).")
    parser.add_argument("--warmup", type=int, default=5, help="Steps left out of the timing.")
    parser.add_argument("--batch-size", type=int, default=8, help="Examples per step (packed in one row).")
    parser.add_argument("--max-length", type=int, default=2048, help="Longest example, in tokens.")
    parser.add_argument("--model", type=Path, help="Folder for the model (built there if not yet).")
    parser.add_argument("--peak-tflops", type=float, help="The GPU's dense bf16 peak, if not in the table.")
    parser.add_argument("--out", type=Path, default=Path("gpu_throughput.json"), help="JSON result file.")
    parser.add_argument("--tiny", action="store_true", help="A small model, CPU allowed: checks the script.")
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available() and not args.tiny:
        why = f"no CUDA GPU (torch {torch.__version__}: torch.cuda.is_available() is False)"
        print(f"gpu_throughput: skipped: {why}")
        write(args.out, {"skipped": why})
        return 0

    from transformers import AutoConfig

    from tests.gpu.helpers import (
        LLAMA_1B,
        LLAMA_DRY_RUN,
        ensure_llama,
        free_cuda,
        gpu_recipe,
        text_rows,
        write_jsonl,
    )
    from tuner_tui.modeling.estimate import flops_per_token, measure_throughput
    from tuner_tui.recipe import load_recipe
    from tuner_tui.runs.events import EventWriter, iter_events
    from tuner_tui.runs.launcher import create_run
    from tuner_tui.training.run import train

    cuda = torch.cuda.is_available()
    shape = LLAMA_DRY_RUN if args.tiny else LLAMA_1B
    max_length = min(args.max_length, 256) if args.tiny else args.max_length
    steps = args.warmup + args.steps
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu-throughput-") as tmp:
        work = Path(tmp)
        model = ensure_llama(args.model or work / "model", shape)
        built_s = time.perf_counter() - started
        rows = text_rows(args.batch_size * steps + 16, max_length // 8, max_length + 16, seed=1)
        data = write_jsonl(work / "rows.jsonl", rows)
        recipe = gpu_recipe(
            work / "recipe.toml",
            model,
            data,
            held_out=0.0,  # no evaluation: the loop alone is timed
            max_steps=steps,
            batch_size=args.batch_size,
            max_length=max_length,
            packing=True,
            learning_rate=1e-4,
            save_every_steps=100000,
        )
        run = create_run(recipe, work / "runs")
        free_cuda()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
            allocated, reserved = torch.cuda.memory_allocated(), torch.cuda.memory_reserved()
        with EventWriter(run.events) as events:
            outcome = train(load_recipe(run.recipe), run, events, threading.Event())
        peak_allocated = torch.cuda.max_memory_allocated() - allocated if cuda else None
        peak_reserved = torch.cuda.max_memory_reserved() - reserved if cuda else None
        history = list(iter_events(run.events))
        attention = getattr(outcome.model.config, "_attn_implementation", None)
        config = AutoConfig.from_pretrained(model)  # before the folder goes (when it is ours)
        del outcome
        free_cuda()

    metrics = [e for e in history if e["type"] == "metric"]
    model_log = next(e for e in history if e["type"] == "log" and "trainable_params" in e)
    trainable, total = model_log["trainable_params"], model_log["total_params"]
    tokens_per_s, tokens, timed = steady_throughput(metrics, args.warmup)
    mean_example = tokens / max(timed * args.batch_size, 1)
    per_token = flops_per_token(config, total - trainable, trainable, "lora", mean_example)
    achieved = tokens_per_s * per_token
    name = torch.cuda.get_device_name(0) if cuda else "cpu"
    peak, matched = (args.peak_tflops * 1e12, "--peak-tflops") if args.peak_tflops else bf16_peak(name)
    matmul = measure_throughput("cuda", "bfloat16") if cuda else None
    losses = [m["loss"] for m in metrics]
    result: dict[str, Any] = {
        "device": name,
        "params": total,
        "trainable_params": trainable,
        "settings": {
            "method": "lora r16 (all linear layers)",
            "dtype": "bfloat16" if cuda else "float32",
            "packing": True,
            "max_length": max_length,
            "batch_size": args.batch_size,
            "warmup_steps": args.warmup,
            "timed_steps": timed,
            "attention": attention,
        },
        "tokens_per_s": tokens_per_s,
        "mean_example_tokens": mean_example,
        "tokens_per_step": tokens / max(timed, 1),
        "flops_per_token": per_token,
        "achieved_tflops": achieved / 1e12,
        "bf16_peak_tflops": peak / 1e12 if peak else None,
        "peak_source": matched,
        "mfu": achieved / peak if peak else None,
        "measured_matmul_tflops": matmul / 1e12 if matmul else None,
        "share_of_measured_matmul": achieved / matmul if matmul else None,
        "peak_allocated_gib": peak_allocated / GIB if peak_allocated is not None else None,
        "peak_reserved_gib": peak_reserved / GIB if peak_reserved is not None else None,
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
        "model_build_s": built_s,
        "wall_s": time.perf_counter() - started,
        "versions": versions(),
        "notes": [
            "tokens/s counts real tokens (packing pads nothing)",
            "packed rows reach the model as position_ids only; with the sdpa kernel transformers "
            "turns them into a block-diagonal mask, and attention under an explicit mask may run "
            "over the whole packed row (batch x example length), which this MFU does not count",
        ],
    }
    write(args.out, result)
    mfu = (
        f"MFU {result['mfu']:.1%} of {peak / 1e12:.0f} TFLOP/s bf16 dense"
        if peak
        else f"MFU unknown ({matched})"
    )
    memory = (
        f"peak {peak_allocated / GIB:.1f} GiB allocated, {peak_reserved / GIB:.1f} GiB reserved"
        if peak_allocated is not None
        else "peak memory: no CUDA"
    )
    print(
        f"gpu_throughput: {name}: {total / 1e9:.2f}B LoRA, packed, max_length {max_length}, batch "
        f"{args.batch_size}: {tokens_per_s:,.0f} tokens/s, {achieved / 1e12:.1f} TFLOP/s, {mfu}; {memory}"
    )
    return 0


def versions() -> dict[str, str]:
    import importlib.metadata

    found = {}
    for name in ("torch", "transformers", "peft", "accelerate", "trl"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "missing"
    return found


if __name__ == "__main__":
    sys.exit(main())
