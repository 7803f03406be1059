"""Atomic checkpoints: a checkpoint counts only once its `COMPLETE.json` exists.

transformers writes a checkpoint folder file by file; a process killed half-way leaves a folder
that looks usable and is not (transformers issue #35782). We write `COMPLETE.json` last (file
list, sizes and sha256, via temp file + os.replace) and resume only from folders that have it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tuner_tui.errors import TunerError
from tuner_tui.runs.state import atomic_write_json

MARKER = "COMPLETE.json"
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


def is_complete(checkpoint: Path, verify: bool = False) -> bool:
    """A checkpoint is complete when its marker exists and (optionally) every hash matches."""
    try:
        marker = json.loads((Path(checkpoint) / MARKER).read_text())
    except (FileNotFoundError, ValueError):
        return False
    if not verify:
        return True
    for rel, info in marker["files"].items():
        path = Path(checkpoint) / rel
        if not path.is_file() or path.stat().st_size != info["bytes"] or _sha256(path) != info["sha256"]:
            return False
    return True


def all_checkpoints(checkpoints_dir: Path) -> list[Path]:
    """Checkpoint folders sorted by step, complete or not."""
    if not Path(checkpoints_dir).is_dir():
        return []
    found = [p for p in Path(checkpoints_dir).iterdir() if p.is_dir() and checkpoint_step(p) is not None]
    return sorted(found, key=lambda p: checkpoint_step(p) or 0)


def complete_checkpoints(checkpoints_dir: Path) -> list[Path]:
    return [p for p in all_checkpoints(checkpoints_dir) if is_complete(p)]


def latest_complete(checkpoints_dir: Path, verify: bool = True) -> Path | None:
    """The newest checkpoint that is complete (and, with verify, whose files hash correctly)."""
    for path in reversed(complete_checkpoints(checkpoints_dir)):
        if not verify or is_complete(path, verify=True):
            return path
    return None


def remove_incomplete(checkpoints_dir: Path) -> list[Path]:
    """Delete checkpoint folders without a marker (left by a killed save)."""
    removed = []
    for path in all_checkpoints(checkpoints_dir):
        if not is_complete(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def prune(checkpoints_dir: Path, keep: int) -> list[Path]:
    """Keep the newest `keep` complete checkpoints; delete older ones and incomplete ones."""
    removed = remove_incomplete(checkpoints_dir)
    complete = complete_checkpoints(checkpoints_dir)
    for path in complete[: max(0, len(complete) - keep)]:
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed
