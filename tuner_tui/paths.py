"""Paths in a recipe are relative to the recipe's folder; hub ids are not paths."""

from __future__ import annotations

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
