"""One training process among several: who am I, how do the ranks agree, where does my output go.

torchrun starts every rank with RANK, LOCAL_RANK, WORLD_SIZE and the rendezvous in its
environment. Rank 0 owns the run directory (events, state, checkpoint commits); the others
write only their log, `worker.rank<N>.log`, and on failure `worker.rank<N>.error.json`, which
the supervisor (runs/supervisor.py) reads to name the rank that failed.

Decisions that must be the same everywhere (which checkpoint to resume, whether to stop or save
after this step) are made on rank 0, or reduced over all ranks, and never read separately.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuner_tui.errors import TunerError
from tuner_tui.runs.state import atomic_write_json

# A rank that failed only because another rank went away exits with this code, so the supervisor
# looks elsewhere for the cause.
EXIT_PEER_LOST = 75
# What a collective raises when a peer is gone (gloo's TCP pair errors, store and NCCL timeouts).
_PEER_LOST_WORDS = (
    "connection reset by peer",
    "connection closed by peer",
    "connection refused",
    "broken pipe",
    "timed out",
    "timeout",
)
# Where this rank's collectives run: set by init_process_group.
_collective_device = "cpu"


@dataclass(frozen=True)
class Rank:
    """This process's place among the training processes (a single process is rank 0 of 1)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1
    node_rank: int = 0

    @classmethod
    def from_env(cls) -> Rank:
        env = os.environ
        return cls(
            rank=int(env.get("RANK", 0)),
            local_rank=int(env.get("LOCAL_RANK", 0)),
            world_size=int(env.get("WORLD_SIZE", 1)),
            local_world_size=int(env.get("LOCAL_WORLD_SIZE", 1)),
            node_rank=int(env.get("GROUP_RANK", 0)),
        )

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def primary(self) -> bool:
        return self.rank == 0


SINGLE = Rank()


def check_strategy(strategy: str) -> None:
    """Refuse a strategy whose package is missing, before any process starts.

    Raises:
        TunerError: strategy 'deepspeed' without the deepspeed package.
    """
    import importlib.util

    if strategy == "deepspeed" and importlib.util.find_spec("deepspeed") is None:
        raise TunerError(
            "[training] strategy = 'deepspeed' needs the deepspeed package, which is not installed in "
            "this environment. Install it (pip install deepspeed; it builds against a CUDA toolkit), or "
            "use strategy = 'fsdp', which shards the same state with PyTorch alone."
        )


def rank_log(run_root: Path, rank: int) -> Path:
    return Path(run_root) / f"worker.rank{rank}.log"


def rank_error_file(run_root: Path, rank: int) -> Path:
    return Path(run_root) / f"worker.rank{rank}.error.json"


def init_process_group(device: str) -> None:
    """Join the ranks' process group: NCCL (with gloo for CPU tensors) when training on CUDA,
    gloo when training on CPU (also on a machine that has GPUs).

    Initialised here rather than by the Trainer so ranks can agree on the run directory and the
    checkpoint to resume before any training object exists; accelerate reuses the group.

    Args:
        device: The recipe's [training] device ('auto', 'cpu', 'cuda', ...), passed on by the
            supervisor in TUNER_DEVICE.
    """
    import torch
    import torch.distributed as dist

    global _collective_device
    if device in ("auto", "cuda") and torch.cuda.is_available():
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        if local_rank >= torch.cuda.device_count():
            raise TunerError(
                f"Local rank {local_rank} has no GPU: this node has {torch.cuda.device_count()} CUDA "
                "GPU(s). Set [training] num_processes to at most that (one process per GPU)."
            )
        torch.cuda.set_device(local_rank)
        _collective_device = f"cuda:{local_rank}"
        dist.init_process_group(backend="cuda:nccl,cpu:gloo")
    else:
        _collective_device = "cpu"
        dist.init_process_group(backend="gloo")


def leave_process_group(rank: Rank) -> None:
    """All ranks meet once more and close the group (rank 0 then evaluates alone, with no
    collective left that a finished peer could leave hanging)."""
    barrier(rank)
    destroy_process_group()


def destroy_process_group() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def local_main_first(rank: Rank) -> Iterator[None]:
    """Local rank 0 runs the block first (filling caches), the node's other ranks after it."""
    if rank.distributed and rank.local_rank != 0:
        barrier(rank)
    yield
    if rank.distributed and rank.local_rank == 0:
        barrier(rank)


def broadcast(value: Any, rank: Rank) -> Any:
    """Rank 0's `value`, on every rank."""
    if not rank.distributed:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(value: Any, rank: Rank) -> list[Any]:
    """Every rank's `value`, in rank order, on every rank."""
    if not rank.distributed:
        return [value]
    import torch.distributed as dist

    out: list[Any] = [None] * rank.world_size
    dist.all_gather_object(out, value)
    return out


def any_rank(flags: list[bool], rank: Rank) -> list[bool]:
    """Element-wise OR of `flags` over all ranks: one small all-reduce (on the GPU under NCCL)."""
    if not rank.distributed:
        return flags
    import torch
    import torch.distributed as dist

    tensor = torch.tensor([1 if f else 0 for f in flags], dtype=torch.int32, device=_collective_device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return [bool(v) for v in tensor.tolist()]


def barrier(rank: Rank) -> None:
    if rank.distributed:
        import torch.distributed as dist

        dist.barrier()


def redirect_output(path: Path) -> None:
    """Point this process's stdout and stderr (file descriptors, so native code follows) at `path`."""
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def die_with_parent() -> None:
    """Ask Linux to send SIGTERM when the supervisor dies, so no rank outlives it.

    SIGTERM, not SIGKILL: the ranks then agree to stop, save a checkpoint and end `stopped`,
    which `tuner run --resume` continues."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        return
    supervisor = os.environ.get("TUNER_SUPERVISOR_PID")
    if supervisor and os.getppid() != int(supervisor):  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def is_peer_lost(exc: BaseException, kind: str) -> bool:
    """True for the errors a rank sees when another rank died: lost connections and timeouts of
    collectives. An error of its own (out of memory, divergence, bad input) never is, even when
    it surfaced inside a collective."""
    if kind in ("oom", "diverged", "invalid", "evaluation", "disk_full"):
        return False
    try:
        import torch.distributed as dist

        if isinstance(exc, (dist.DistNetworkError, dist.DistStoreError)):
            return True
    except (ImportError, AttributeError):
        pass
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(word in text for word in _PEER_LOST_WORDS)


def write_rank_error(run_root: Path, rank: Rank, kind: str, message: str, hint: str, peer_lost: bool) -> None:
    """What went wrong on this rank, for the supervisor to report (it alone writes the event)."""
    atomic_write_json(
        rank_error_file(run_root, rank.rank),
        {
            "rank": rank.rank,
            "local_rank": rank.local_rank,
            "node_rank": rank.node_rank,
            "pid": os.getpid(),
            "kind": kind,
            "message": message,
            "hint": hint,
            "peer_lost": peer_lost,
            "time": time.time(),
        },
    )


def read_rank_errors(run_root: Path, world_size: int) -> list[dict[str, Any]]:
    """The error files of ranks 0..world_size-1, each opened by name (a network filesystem may
    cache a directory listing that does not show another node's new file yet)."""
    found = []
    for rank in range(world_size):
        try:
            found.append(json.loads(rank_error_file(run_root, rank).read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    return found


def node_failures_file(run_root: Path, node_rank: int) -> Path:
    return Path(run_root) / f"worker.node{node_rank}.failures.json"


def read_node_failures(run_root: Path, nnodes: int) -> dict[int, dict[str, Any]]:
    """Failed ranks that the supervisors of nodes 1..nnodes-1 recorded, by global rank."""
    found: dict[int, dict[str, Any]] = {}
    for node in range(1, nnodes):
        try:
            data = json.loads(node_failures_file(run_root, node).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        found.update({int(rank): info for rank, info in data.items()})
    return found


def clear_rank_errors(run_root: Path) -> None:
    """Forget the failures of an earlier attempt (node 0's supervisor, before it starts ranks)."""
    for pattern in ("worker.rank*.error.json", "worker.node*.failures.json"):
        for path in Path(run_root).glob(pattern):
            path.unlink(missing_ok=True)
