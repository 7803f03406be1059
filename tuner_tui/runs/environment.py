"""The `[environment]` lock written into a run's frozen recipe: what produced this model."""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
import sys
from pathlib import Path
from typing import Any

LIBRARIES = (
    "tuner-tui",
    "torch",
    "transformers",
    "peft",
    "datasets",
    "accelerate",
    "tokenizers",
    "safetensors",
)


def library_versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name.replace("-", "_")] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name.replace("-", "_")] = "not installed"
    return versions


def fingerprint_path(path: str) -> str:
    """sha256 over a file, or over every file of a folder (names and contents), streamed."""
    local = Path(path)
    if not local.exists():
        return f"hub:{path}"
    digest = hashlib.sha256()
    files = [local] if local.is_file() else sorted(p for p in local.rglob("*") if p.is_file())
    for file in files:
        digest.update(file.relative_to(local.parent if local.is_file() else local).as_posix().encode())
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return "sha256:" + digest.hexdigest()


def model_fingerprint(path: str) -> str:
    """A local model: sha256 of config.json plus weight file names and sizes (hashing many GB
    of weights at every run start would cost minutes); a hub id stays as it is."""
    local = Path(path)
    if not local.is_dir():
        return f"hub:{path}"
    digest = hashlib.sha256((local / "config.json").read_bytes())
    for weights in sorted(local.glob("*.safetensors")):
        digest.update(f"{weights.name}:{weights.stat().st_size}".encode())
    return "sha256:" + digest.hexdigest()


def device_description(device: str) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"device": device, "torch_threads": torch.get_num_threads()}
    if device == "cuda":
        info["cuda"] = torch.version.cuda or ""
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    else:
        info["cpu"] = platform.processor() or platform.machine()
    return info


def environment_lock(data_path: str, model_path: str, device: str) -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "libraries": library_versions(),
        **device_description(device),
        "data_fingerprint": fingerprint_path(data_path),
        "model_fingerprint": model_fingerprint(model_path),
    }
