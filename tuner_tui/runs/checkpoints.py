"""Atomic checkpoints: a checkpoint counts only once its `COMPLETE.json` exists and its files verify.

transformers writes a checkpoint folder file by file; a process killed half-way leaves a folder
that looks usable and is not (transformers issue #35782). We write `COMPLETE.json` last (file
list, sizes and sha256, via temp file + os.replace) and resume only from folders that have it.

A committed checkpoint whose files no longer match their hashes (a flipped bit, a truncated file)
is damaged: it is moved aside to `corrupt-<step>/` (kept for a person to look at, never resumed
from and never counted among the `keep` that pruning leaves), so pruning can never delete a good
checkpoint to make room for a damaged one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuner_tui.errors import TunerError
from tuner_tui.runs.state import atomic_write_json

MARKER = "COMPLETE.json"
CORRUPT_PREFIX = "corrupt-"
_NAME = re.compile(r"^checkpoint-(\d+)$")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_step(path: Path) -> int | None:
    match = _NAME.match(Path(path).name)
    return int(match.group(1)) if match else None


def commit(checkpoint: Path, step: int, required: Iterable[str] = ()) -> dict[str, Any]:
    """Fsync every file of a written checkpoint, then write its COMPLETE.json.

    `required` names files other processes wrote (each rank's RNG state): they are looked up by
    name, since a network filesystem may serve a directory listing that does not show them yet.

    Raises:
        TunerError: a required file is missing (a rank did not write its part).
    """
    found = {p for p in Path(checkpoint).rglob("*") if p.is_file()}
    for name in required:
        path = Path(checkpoint) / name
        if not path.is_file():
            raise TunerError(
                f"Checkpoint {checkpoint} lacks {name}: a rank did not write its part, so it is not "
                "committed. The previous complete checkpoint stays the one to resume from."
            )
        found.add(path)
    files = {}
    for path in sorted(found):
        if path.name == MARKER:
            continue
        with open(path, "rb") as f:
            os.fsync(f.fileno())
        rel = path.relative_to(checkpoint).as_posix()
        files[rel] = {"bytes": path.stat().st_size, "sha256": _sha256(path)}
    marker = {"step": step, "files": files}
    atomic_write_json(Path(checkpoint) / MARKER, marker)
    return marker


def problem(checkpoint: Path) -> str | None:
    """What is wrong with a checkpoint, or None when its COMPLETE.json lists files that are all
    there with their recorded sizes and sha256 (reads every file)."""
    checkpoint = Path(checkpoint)
    try:
        files = json.loads((checkpoint / MARKER).read_text(encoding="utf-8"))["files"]
        listed = [(str(rel), int(info["bytes"]), str(info["sha256"])) for rel, info in files.items()]
    except FileNotFoundError:
        return f"it has no {MARKER} (never committed)"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return f"its {MARKER} is unreadable"
    for rel, size, sha256 in listed:
        path = checkpoint / rel
        if not path.is_file():
            return f"{rel} is missing"
        if path.stat().st_size != size:
            return f"{rel} has {path.stat().st_size} bytes, {MARKER} says {size}"
        if _sha256(path) != sha256:
            return f"{rel} does not match its sha256 in {MARKER}"
    return None


def is_complete(checkpoint: Path, verify: bool = False) -> bool:
    """A checkpoint is complete when its marker exists and (optionally) every hash matches."""
    if verify:
        return problem(checkpoint) is None
    try:
        json.loads((Path(checkpoint) / MARKER).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return False
    return True


def _committed(checkpoint: Path) -> bool:
    """Has a marker, readable or not (an unreadable one is damage, not an unfinished save)."""
    return (Path(checkpoint) / MARKER).exists()


@dataclass(frozen=True)
class SetAside:
    """A committed checkpoint that failed verification, moved out of the way."""

    name: str  # checkpoint-<step>
    path: Path  # where it is now: checkpoints/corrupt-<step>[-N]
    problem: str

    def describe(self) -> str:
        return (
            f"Checkpoint {self.name} failed verification ({self.problem}): moved aside to "
            f"{self.path.name}, never resumed from nor counted as one to keep. Delete it once looked at."
        )


def set_aside(checkpoint: Path, why: str) -> SetAside:
    """Rename a damaged checkpoint to `corrupt-<step>` (or `corrupt-<step>-N`) beside it."""
    checkpoint = Path(checkpoint)
    step = checkpoint_step(checkpoint)
    base = f"{CORRUPT_PREFIX}{step if step is not None else checkpoint.name}"
    target = checkpoint.with_name(base)
    attempt = 1
    while target.exists():
        attempt += 1
        target = checkpoint.with_name(f"{base}-{attempt}")
    os.rename(checkpoint, target)
    return SetAside(checkpoint.name, target, why)


def all_checkpoints(checkpoints_dir: Path) -> list[Path]:
    """Checkpoint folders sorted by step, complete or not."""
    if not Path(checkpoints_dir).is_dir():
        return []
    found = [p for p in Path(checkpoints_dir).iterdir() if p.is_dir() and checkpoint_step(p) is not None]
    return sorted(found, key=lambda p: checkpoint_step(p) or 0)


def complete_checkpoints(checkpoints_dir: Path) -> list[Path]:
    return [p for p in all_checkpoints(checkpoints_dir) if is_complete(p)]


def latest_complete(checkpoints_dir: Path, verify: bool = True) -> Path | None:
    """The newest checkpoint that is complete (and, with verify, whose files hash correctly).
    Changes nothing; `select_resume` is what a resuming worker uses."""
    for path in reversed(complete_checkpoints(checkpoints_dir)):
        if not verify or is_complete(path, verify=True):
            return path
    return None


def select_resume(checkpoints_dir: Path) -> tuple[Path | None, list[SetAside]]:
    """The checkpoint to resume from: the newest committed one whose files verify. Every newer
    committed one failed verification and is set aside (so a fresh save of its step cannot clash
    with it, and pruning never counts it). Returns (checkpoint or None, what was set aside)."""
    moved: list[SetAside] = []
    for path in reversed(all_checkpoints(checkpoints_dir)):
        if not _committed(path):
            continue  # unfinished: remove_incomplete's business
        why = problem(path)
        if why is None:
            return path, moved
        moved.append(set_aside(path, why))
    return None, moved


def remove_incomplete(checkpoints_dir: Path) -> list[Path]:
    """Delete checkpoint folders without a marker (left by a killed save)."""
    removed = []
    for path in all_checkpoints(checkpoints_dir):
        if not _committed(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


@dataclass
class Pruned:
    """What `prune` did."""

    removed: list[Path] = field(default_factory=list)  # unfinished, or older than the kept ones
    set_aside: list[SetAside] = field(default_factory=list)  # damaged, moved to corrupt-<step>
    kept: list[Path] = field(default_factory=list)  # verified, newest first


def prune(checkpoints_dir: Path, keep: int, verified: Collection[Path] = ()) -> Pruned:
    """Keep the newest `keep` checkpoints whose files verify; delete unfinished ones and the
    verified ones older than those kept; set aside damaged ones met on the way.

    Walks from the newest down and hashes each candidate until `keep` have verified; `verified`
    names checkpoints already checked by this process (the one just committed, those kept last
    time), which are not hashed again. Checkpoints older than the kept ones are deleted unhashed.
    """
    result = Pruned()
    trusted = {Path(p) for p in verified}
    for path in reversed(all_checkpoints(checkpoints_dir)):
        if not _committed(path) or len(result.kept) >= keep:
            shutil.rmtree(path, ignore_errors=True)
            result.removed.append(path)
            continue
        why = None if path in trusted else problem(path)
        if why is None:
            result.kept.append(path)
        else:
            result.set_aside.append(set_aside(path, why))
    return result
