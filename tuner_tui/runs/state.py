"""`state.json`: the run's current phase, step and worker pid, replaced atomically; the run's
lock (`run.lock`), which says who may write any of it; and telling a full disk from other errors."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuner_tui.errors import TunerError
from tuner_tui.runs.events import now_iso

PHASES = ("queued", "preparing", "training", "evaluating", "completed", "failed", "stopped")
ACTIVE_PHASES = frozenset({"queued", "preparing", "training", "evaluating"})
TERMINAL_PHASES = frozenset({"completed", "failed", "stopped"})
# Reported by viewers (never written by the worker): an active phase whose worker is gone.
CRASHED = "crashed"


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temp file in the same folder, fsync, then rename over the target."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # a full disk, say: leave no half-written temp file behind
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


_WALL_CLOCK = 1e9
"""A recorded start time above this is seconds since the epoch (runs written before start times
were counted from boot); below it, seconds since boot."""


def process_start_time(pid: int) -> float | None:
    """When `pid` started, to tell it from a later process given the same pid.

    On Linux, seconds since boot from /proc (clock ticks: exact, and immune to the wall clock
    being stepped by NTP or a VM resumed from a snapshot, which shifts psutil's wall-clock start
    time of every process and made live workers read as crashed). Elsewhere psutil's wall-clock
    create time."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        return int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22, starttime
    except FileNotFoundError:
        if os.path.isdir("/proc/self"):
            return None  # a Linux /proc without this pid: it is gone
    except (OSError, ValueError, IndexError):
        pass
    return _wall_clock_start(pid)


def _wall_clock_start(pid: int) -> float | None:
    import psutil  # here, not at module scope: the wizard's start-up does not need it

    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def write_state(path: Path, **fields: Any) -> dict[str, Any]:
    """Merge `fields` into state.json (creating it) and stamp `updated`."""
    state = read_raw_state(path)
    state.update(fields)
    state["updated"] = now_iso()
    atomic_write_json(path, state)
    return state


def read_raw_state(path: Path) -> dict[str, Any]:
    """state.json's object as written; {} when it is missing or damaged (see `read_state`)."""
    try:
        state = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def _this_host() -> str:
    import socket

    return socket.gethostname()


def _process_alive(pid: Any, recorded_start: Any) -> bool:
    """`pid` runs, is not a zombie, and started when recorded (not a reused pid)."""
    import psutil

    if not isinstance(pid, int):
        return False
    if recorded_start is not None and not isinstance(recorded_start, (int, float)):
        recorded_start = None  # a hand-edited or damaged state.json: the pid alone decides
    legacy = recorded_start is not None and recorded_start > _WALL_CLOCK
    started = _wall_clock_start(pid) if legacy else process_start_time(pid)
    if started is None:
        return False
    try:
        if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return False
    except psutil.NoSuchProcess:
        return False
    return recorded_start is None or abs(started - float(recorded_start)) < 1.0


def worker_alive(state: dict[str, Any]) -> bool:
    """True when the worker (or supervisor) pid in `state` is running and is the same process.

    A worker on another machine (a run in a shared directory, seen from a login node) cannot be
    checked from here: it counts as alive, and the recorded phase stands."""
    host = state.get("host")
    if host and host != _this_host():
        return True
    return _process_alive(state.get("pid"), state.get("pid_started"))


def ranks_alive(state: dict[str, Any]) -> bool:
    """True while any of the run's rank processes on this machine still runs (ranks outlive a
    killed supervisor for the moments it takes them to stop and save)."""
    here = _this_host()
    return any(
        _process_alive(entry.get("pid"), entry.get("started"))
        for entry in state.get("rank_pids") or []
        if isinstance(entry, dict) and entry.get("host") == here
    )


@dataclass(frozen=True)
class RunStatus:
    """state.json as its readers use it (the wizard, `tuner runs`), typed once: any field may be
    missing or of another type in a damaged or hand-edited file, and then reads as unknown."""

    phase: str | None = None
    """None: no state read yet (or state.json has no phase)."""
    pid: int | None = None
    step: int = 0
    max_steps: int | None = None
    recorded_phase: str | None = None
    """For `crashed`: the phase state.json recorded when the worker vanished."""
    verdict: str | None = None
    created: str | None = None
    updated: str | None = None
    damaged: str | None = None
    """Why the state was rebuilt (state.json missing or unreadable); None when it was fine."""

    @classmethod
    def of(cls, state: Mapping[str, Any]) -> RunStatus:
        def text(key: str) -> str | None:
            value = state.get(key)
            return value if isinstance(value, str) else None

        def whole(key: str) -> int | None:
            value = state.get(key)
            return value if isinstance(value, int) and not isinstance(value, bool) else None

        return cls(
            phase=text("phase"),
            pid=whole("pid"),
            step=whole("step") or 0,
            max_steps=whole("max_steps"),
            recorded_phase=text("recorded_phase"),
            verdict=text("verdict"),
            created=text("created"),
            updated=text("updated"),
            damaged=text("damaged"),
        )


def read_state(path: Path) -> dict[str, Any]:
    """state.json as a viewer should see it: an active phase with a dead worker is `crashed`.

    A missing or damaged state.json is rebuilt from the run's events, checkpoints and lock (see
    runs/rebuild.py); `damaged` then says what was wrong with it."""
    from tuner_tui.runs import rebuild

    damage = rebuild.state_damage(path)
    if damage is None:
        state = read_raw_state(path)
    else:
        state = rebuild.rebuild_state(Path(path).parent)
        state["damaged"] = f"state.json {damage}"
    if state.get("phase") in ACTIVE_PHASES and not (worker_alive(state) or ranks_alive(state)):
        state["recorded_phase"] = state["phase"]
        state["phase"] = CRASHED
    return state


# -- the run lock ---------------------------------------------------------------------------------
LOCK_NAME = "run.lock"
# The descriptor number of a lock handed to a child process (see RunLock).
LOCK_FD_ENV = "TUNER_RUN_LOCK_FD"
_HOLDER_BYTES = 256  # the lock file's content, padded: rewritten in place, it never needs new blocks


class RunBusy(TunerError):
    """Another process holds the run's lock: it is running (or being resumed) already."""


class RunLock:
    """The exclusive lock on a run directory: `flock` on `<run>/run.lock`.

    The one process holding it may write the run's state.json, events.jsonl and checkpoints:
    the launcher while it prepares a resume, then the worker (several ranks: node 0's supervisor,
    whose children they are; ranks do not lock) for its whole life. A flock belongs to the open
    file description, not to a process: the launcher takes it, passes the descriptor to the
    worker it starts (`pass_fds`, number in TUNER_RUN_LOCK_FD) and closes its own copy, so the
    lock is held without a gap from the launcher's first write to the worker's exit, and the
    kernel releases it however the worker ends (SIGKILL included). Never `LOCK_UN` a descriptor
    that was handed on: that would release the child's lock too; `close` only drops ours.

    Filesystems: local ones honour flock. On NFSv4, Linux emulates flock with a whole-file POSIX
    lock taken on the server, so it holds across clients (a `tuner run --resume` on a login node
    sees a worker on a compute node); on NFSv3 that needs the lock manager (lockd/statd) running
    on client and server. Mounted with `nolock` or `local_lock=flock|all`, the lock covers one
    machine only; `resume_run` then still refuses a run whose recorded worker is alive.
    """

    def __init__(self, fd: int, path: Path):
        self.fd, self.path = fd, path

    @classmethod
    def acquire(cls, root: Path, wait_s: float = 0.0) -> RunLock:
        """Take the lock without waiting for a holder that is working. A holder that is only
        finishing (see `holder_finishing`) is waited for, up to `wait_s` seconds.

        Raises:
            RunBusy: another process holds it; the message names its pid.
        """
        import time

        path = Path(root) / LOCK_NAME
        deadline = time.monotonic() + wait_s
        # O_RDWR: an NFS client can place an exclusive (emulated POSIX) lock only on a file open
        # for writing.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline or not holder_finishing(Path(root)):
                        raise RunBusy(_busy_message(Path(root), path)) from None
                    time.sleep(0.05)
        except BaseException:
            os.close(fd)
            raise
        lock = cls(fd, path)
        lock.record(os.getpid())
        return lock

    @classmethod
    def inherited(cls, root: Path) -> RunLock | None:
        """The lock a launcher handed to this process, if it did and it is `root`'s (the
        variable is removed, so this process's own children do not think they hold it)."""
        value = os.environ.pop(LOCK_FD_ENV, None)
        path = Path(root) / LOCK_NAME
        try:
            fd = int(value or "")
            if not os.path.samestat(os.fstat(fd), os.stat(path)):
                return None
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # ours already: granted at once
            os.set_inheritable(fd, False)  # this process's children (ranks) do not hold it
        except (ValueError, OSError):
            return None
        return cls(fd, path)

    @classmethod
    def take(cls, root: Path) -> RunLock:
        """The lock handed down by the launcher, else taken here (a worker started by hand).

        Raises:
            RunBusy: another process holds it.
        """
        lock = cls.inherited(root) or cls.acquire(root)
        lock.record(os.getpid())
        return lock

    def record(self, pid: int) -> None:
        """Write who holds the lock into the lock file, for the message of whoever is refused."""
        import socket

        holder = {"pid": pid, "host": socket.gethostname(), "since": now_iso()}
        data = json.dumps(holder).encode()[: _HOLDER_BYTES - 1].ljust(_HOLDER_BYTES - 1) + b"\n"
        try:
            os.pwrite(self.fd, data, 0)
        except OSError:  # a full disk: the lock holds all the same, the message says less
            pass

    def close(self) -> None:
        """Drop this process's descriptor: the lock ends once no process shares it any more."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_lock_holder(root: Path) -> dict[str, Any]:
    try:
        holder = json.loads((Path(root) / LOCK_NAME).read_text(encoding="utf-8").strip() or "{}")
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def holder_finishing(root: Path) -> bool:
    """The lock's holder has done its work and is on its way out: it is the worker that wrote a
    terminal phase into state.json, or it is already gone or a zombie (killed, its main thread
    dead while the others unwind, the kernel not yet done closing its files)."""
    holder = read_lock_holder(root)
    pid = holder.get("pid")
    if holder.get("host") not in (None, _this_host()) or not isinstance(pid, int):
        return False
    state = read_raw_state(Path(root) / "state.json")
    return (state.get("phase") in TERMINAL_PHASES and state.get("pid") == pid) or not _process_alive(
        pid, None
    )


def _busy_message(root: Path, path: Path) -> str:
    holder = read_lock_holder(root)
    pid = holder.get("pid") or read_raw_state(root / "state.json").get("pid")
    host = holder.get("host")
    where = f" on {host}" if host and host != _this_host() else ""
    return (
        f"The run {root} is in use by pid {pid}{where}, which holds its lock ({path}): one process "
        f"at a time may run it. Attach with `tuner attach {root}`, or stop it with `tuner stop "
        f"{root}` and resume once it has stopped."
    )


# -- a full disk ----------------------------------------------------------------------------------
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# Libraries that report a full disk in words: Rust's io::Error (safetensors), C++ (torch).
_DISK_FULL_WORDS = ("no space left on device", "disk quota exceeded", "os error 28", "storagefull")
# torch.save's PytorchStreamWriter drops the errno: "[enforce fail at inline_container.cc:...]
# . unexpected pos N vs M", "... failed writing file ...", or (closing the zip) "basic_ios::clear:
# iostream error". A full disk when the disk is nearly full.
_WRITE_FAILED_WORDS = ("unexpected pos", "failed writing file", "file write failed", "iostream error")
NEARLY_FULL_BYTES = 64 << 20
# Below this, any OSError or RuntimeError counts as the full disk: a library may word it otherwise.
FULL_BYTES = 1 << 20
# What a worker sets aside on its run's disk (`<run>/.disk-reserve`) and frees when the disk
# fills, so its last words (the error event, state.json, the traceback) still fit.
RESERVE_BYTES = 256 << 10
RESERVE_NAME = ".disk-reserve"


def make_reserve(root: Path) -> None:
    """Set RESERVE_BYTES aside on the run's disk (random bytes: a compressing filesystem would
    store zeros in nothing)."""
    with open(Path(root) / RESERVE_NAME, "wb") as f:
        f.write(os.urandom(RESERVE_BYTES))
        f.flush()
        os.fsync(f.fileno())


def release_reserve(root: Path) -> bool:
    """Give the reserve back to the disk; True when there was one."""
    try:
        (Path(root) / RESERVE_NAME).unlink()
    except FileNotFoundError:
        return False
    return True


def free_bytes(folder: Path) -> int | None:
    """Free space (for this user) on the filesystem holding `folder` or its nearest existing parent."""
    path = Path(folder)
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def format_bytes(count: int | None) -> str:
    if count is None:
        return "an unknown amount"
    size = float(count)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


@dataclass(frozen=True)
class DiskFull:
    """A write failed because the filesystem holding `folder` is full (or over quota)."""

    folder: Path
    free: int | None

    def describe(self) -> str:
        text = f"{format_bytes(self.free)} free on the disk holding {self.folder}"
        if self.free is not None and self.free >= NEARLY_FULL_BYTES:  # room, yet ENOSPC/EDQUOT
            text += " (space is left: it may be out of inodes, or over a quota)"
        return text


def _chain(exc: BaseException) -> list[BaseException]:
    found: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in found:
        found.append(current)
        current = current.__cause__ or current.__context__
    return found


def disk_full(exc: BaseException, folder: Path) -> DiskFull | None:
    """The full disk behind `exc`, if that is what it is: an OSError ENOSPC/EDQUOT anywhere in
    its chain (its folder, when it names a file), a library error quoting one, a failed
    torch.save while the disk under `folder` has less than NEARLY_FULL_BYTES left, or any
    OSError or RuntimeError while it has less than FULL_BYTES left."""
    for error in _chain(exc):
        if isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS:
            where = Path(os.fsdecode(error.filename)).parent if error.filename else Path(folder)
            return DiskFull(where, free_bytes(where))
        text = str(error).lower()
        if any(word in text for word in _DISK_FULL_WORDS):
            return DiskFull(Path(folder), free_bytes(folder))
        if any(word in text for word in _WRITE_FAILED_WORDS):
            free = free_bytes(folder)
            if free is not None and free < NEARLY_FULL_BYTES:
                return DiskFull(Path(folder), free)
    if any(isinstance(error, (OSError, RuntimeError)) for error in _chain(exc)):
        free = free_bytes(folder)
        if free is not None and free < FULL_BYTES:
            return DiskFull(Path(folder), free)
    return None


class DiskFullError(TunerError):
    """The run's disk has no room for what a command must write."""
