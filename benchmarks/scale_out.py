"""What several processes cost per step beyond the training itself: the stop/save agreement.

After every optimizer step the ranks OR their stop and save requests with one all-reduce of two
integers (tuner_tui/runs/ranks.any_rank), so `tuner stop` or a SIGTERM stops every rank after the
same step. This measures that all-reduce with 2 CPU processes on gloo, next to one DDP training
step of a small Llama (forward + backward with the gradient all-reduce + AdamW step) measured in
the same processes, and prints the ratio. NCCL on GPUs could not be measured here (no GPU): there
the agreement is a small device all-reduce plus a host sync per step.

    python benchmarks/scale_out.py [--steps 20] [--agreements 500]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(rank: int, world: int, port: int, steps: int, agreements: int, out: dict) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    from tuner_tui.runs.ranks import Rank, any_rank

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    me = Rank(rank=rank, local_rank=rank, world_size=world, local_world_size=world)
    config = LlamaConfig(
        vocab_size=8000,
        hidden_size=256,
        intermediate_size=768,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
    )
    torch.manual_seed(0)
    model = torch.nn.parallel.DistributedDataParallel(LlamaForCausalLM(config))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch = torch.randint(0, config.vocab_size, (4, 128))
    step_times = []
    for _ in range(steps + 2):  # the first two warm up
        start = time.perf_counter()
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step_times.append(time.perf_counter() - start)
    agree_times = []
    for _ in range(agreements):
        start = time.perf_counter()
        any_rank([False, False], me)
        agree_times.append(time.perf_counter() - start)
    if rank == 0:
        out["step_s"] = statistics.median(step_times[2:])
        out["agree_s"] = statistics.median(agree_times)
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--agreements", type=int, default=500)
    args = parser.parse_args()
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(worker, args=(2, free_port(), args.steps, args.agreements, out), nprocs=2, join=True)
        step, agree = out["step_s"], out["agree_s"]
    print(f"DDP training step (2 ranks, gloo, median): {step * 1e3:.1f} ms")
    print(f"stop/save agreement all-reduce (median):   {agree * 1e6:.0f} us")
    print(f"agreement / step: {agree / step:.5f} ({100 * agree / step:.3f}% of a step)")


if __name__ == "__main__":
    main()
