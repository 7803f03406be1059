"""Tokens/s of padding-free packing and of length bucketing vs padding, same model, same examples.

Examples have uniformly random lengths in 16..512 tokens. Padding pads each batch (random order)
to its longest example; packing (`[training] packing = true`, transformers'
DataCollatorWithFlattening) puts the batch's examples in one row with restarting position ids, so
no compute goes to pad tokens; bucketing (`[training] bucket_by_length = true`) keeps padding but
orders the rows as transformers' LengthGroupedSampler does (group_by_length), so each batch holds
examples of similar length. Throughput counts real (non-pad) tokens per second of forward +
backward + optimizer step.

    python benchmarks/packing.py [--steps 6] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.results import Result, add_results_option, write_results  # noqa: E402
from tuner_tui.recipe import Recipe  # noqa: E402
from tuner_tui.training.examples import PadCollator, make_collator  # noqa: E402

PAD = 0


def build_model(seed: int) -> LlamaForCausalLM:
    # A small Llama with a realistic vocabulary: per-token costs (embeddings, MLP, LM head)
    # dominate as in real models, attention is a smaller share.
    config = LlamaConfig(
        vocab_size=32000,
        hidden_size=256,
        intermediate_size=768,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=1024,
        pad_token_id=PAD,
        use_cache=False,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def examples(count: int, seed: int) -> list[dict[str, list[int]]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        ids = [rng.randrange(1, 32000) for _ in range(rng.randint(16, 512))]
        rows.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": list(ids)})
    return rows


def bucketed(rows: list[dict], batch_size: int, seed: int) -> list[list[dict]]:
    """The rows in the order the Trainer's group_by_length sampler draws them, in batches."""
    from transformers.trainer_pt_utils import get_length_grouped_indices

    lengths = [len(row["input_ids"]) for row in rows]
    order = get_length_grouped_indices(lengths, batch_size, generator=torch.Generator().manual_seed(seed))
    ordered = [rows[i] for i in order]
    return [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]


def pad_share(batches: list[list[dict]]) -> float:
    real = sum(len(f["input_ids"]) for b in batches for f in b)
    slots = sum(len(b) * max(len(f["input_ids"]) for f in b) for b in batches)
    return 1 - real / slots


def run(collate, batches: list[list[dict]], seed: int) -> tuple[float, float]:
    """(real tokens per second, mean loss) over the batches, after one warm-up step."""
    model = build_model(seed).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step(batch: list[dict]) -> float:
        loss = model(**collate(batch)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        return float(loss)

    step(batches[0])
    tokens = sum(len(f["input_ids"]) for batch in batches[1:] for f in batch)
    start = time.perf_counter()
    losses = [step(batch) for batch in batches[1:]]
    return tokens / (time.perf_counter() - start), sum(losses) / len(losses)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    add_results_option(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = examples((args.steps + 1) * args.batch_size, seed=0)
    batches = [rows[i : i + args.batch_size] for i in range(0, len(rows), args.batch_size)]
    recipe = Recipe()
    recipe.training.packing = True
    padded_tps, padded_loss = run(PadCollator(PAD), batches, seed=0)
    packed_tps, packed_loss = run(make_collator(recipe, tokenizer=None), batches, seed=0)
    buckets = bucketed(rows, args.batch_size, seed=0)
    bucket_tps, bucket_loss = run(PadCollator(PAD), buckets, seed=0)
    print(f"examples: {len(rows)} (lengths 16..512), batch {args.batch_size}, {args.steps} timed steps")
    print(
        f"padding:   {padded_tps:8.0f} tokens/s  (pad share {pad_share(batches):.0%})"
        f"  mean loss {padded_loss:.4f}"
    )
    print(f"packing:   {packed_tps:8.0f} tokens/s  (pad share 0%)   mean loss {packed_loss:.4f}")
    print(
        f"bucketing: {bucket_tps:8.0f} tokens/s  (pad share {pad_share(buckets):.0%})"
        f"  mean loss {bucket_loss:.4f}  (other batches: loss not comparable)"
    )
    print(f"ratio packing/padding:   {packed_tps / padded_tps:.2f}x (target >= 1.3x)")
    print(f"ratio bucketing/padding: {bucket_tps / padded_tps:.2f}x")
    ratio = packed_tps / padded_tps
    write_results(
        args.results,
        [
            Result(
                "packing vs padding tokens/s",
                packed_tps,
                "tokens/s",
                padded_tps,
                ratio,
                ">= 1.3",
                ratio >= 1.3,
            ),
            Result(
                "bucketing vs padding tokens/s", bucket_tps, "tokens/s", padded_tps, bucket_tps / padded_tps
            ),
        ],
    )


if __name__ == "__main__":
    main()
