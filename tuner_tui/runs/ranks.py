"""One training process among several: who am I, how do the ranks agree, where does my output go.

torchrun starts every rank with RANK, LOCAL_RANK, WORLD_SIZE and the rendezvous in its
environment. Rank 0 owns the run directory (events, state, checkpoint commits); the others
write only their log, `worker.rank<N>.log`, and on failure `worker.rank<N>.error.json`, which
the supervisor (runs/supervisor.py) reads to name the rank that failed.

Decisions that must be the same everywhere (which checkpoint to resume, whether to stop or save
after this step) are made on rank 0, or reduced over all ranks, and never read separately.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuner_tui.errors import TunerError
from tuner_tui.runs.state import atomic_write_json

# A rank that failed only because another rank went away exits with this code, so the supervisor
# looks elsewhere for the cause.
EXIT_PEER_LOST = 75
_PEER_LOST_WORDS = (
    "connection reset by peer",
    "connection closed by peer",
    "broken pipe",
    "gloo",
    "nccl",
    "socket timeout",
    "processgroup",
    "timed out",
)


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


def init_process_group() -> None:
    """Join the ranks' process group: NCCL for CUDA tensors (with gloo for CPU ones), else gloo.

    Initialised here rather than by the Trainer so ranks can agree on the run directory and the
    checkpoint to resume before any training object exists; accelerate reuses the group."""
    import torch
    import torch.distributed as dist

    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        backend = "cuda:nccl,cpu:gloo"
    else:
        backend = "gloo"
    dist.init_process_group(backend=backend)


def destroy_process_group() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


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

    device = f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu"
    tensor = torch.tensor([1 if f else 0 for f in flags], dtype=torch.int32, device=device)
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

    parent = os.getppid()
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def is_peer_lost(exc: BaseException) -> bool:
    """True for the errors a rank sees when another rank died: communication failures."""
    try:
        import torch.distributed as dist

        if isinstance(exc, dist.DistError):
            return True
    except ImportError:
        pass
    text = f"{type(exc).__name__}: {exc}".lower()
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


def read_rank_errors(run_root: Path) -> list[dict[str, Any]]:
    found = []
    for path in sorted(Path(run_root).glob("worker.rank*.error.json")):
        try:
            found.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    return found


def clear_rank_errors(run_root: Path) -> None:
    for path in Path(run_root).glob("worker.rank*.error.json"):
        path.unlink(missing_ok=True)
