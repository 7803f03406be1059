"""Paths in a recipe are relative to the recipe's folder; hub ids are not paths. And the mode
files tuner writes should get: what the user's umask gives."""

from __future__ import annotations

import os
from pathlib import Path


def absolute_if_local(path: str, base_dir: Path | None = None) -> str:
    """`path` made absolute when it names an existing local file or folder (tried relative to
    `base_dir` first, then to the current folder); anything else (a hub id) is returned as is."""
    candidate = Path(path).expanduser()
    if not candidate.is_absolute() and base_dir is not None:
        relative = (Path(base_dir) / candidate).resolve()
        if relative.exists():
            return str(relative)
    if candidate.exists():
        return str(candidate.resolve())
    return path


def current_umask() -> int:
    """This process's umask, read without changing it (os.umask sets it, and other threads may be
    creating files meanwhile); with no /proc, the usual set-and-restore."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
