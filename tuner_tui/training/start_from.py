"""`[preference] start_from`: the adapter a preference run starts from (an SFT run's, say).

Standard library only: the wizard and the pre-flight checks read it without the ML stack.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tuner_tui.errors import TunerError

if TYPE_CHECKING:
    from tuner_tui.recipe import Recipe

# Adapters that start as the identity (the adapted model equals the base until trained): their
# frozen reference is the base model itself, so TRL's copy of the adapter ("ref") is dropped and
# the reference pass runs with adapters disabled, skipping the adapter's matmuls and memory.
# PiSSA/OLoRA/LoftQ rewrite the base weights at init: there the copy is the reference.
IDENTITY_START_METHODS = frozenset({"lora", "dora", "qlora"})
IDENTITY_START_INITS = frozenset({"default", "gaussian"})


def reference_copied(recipe: Recipe) -> bool:
    """Whether a DPO-family reference is a copy (of the starting adapter, or of the whole model
    for full tuning) rather than the base model with adapters disabled."""
    m = recipe.method
    identity = m.type in IDENTITY_START_METHODS and m.init in IDENTITY_START_INITS
    return bool(recipe.preference.start_from) or not identity


def adapter_folder(start_from: str, base_dir: Path | None = None) -> Path:
    """The adapter folder `start_from` names: a run directory's `adapter/`, or the folder itself
    when it holds adapter_config.json (relative paths start at `base_dir`).

    Raises:
        TunerError: neither, saying what to point it at.
    """
    path = Path(start_from).expanduser()
    if base_dir is not None and not path.is_absolute():
        path = Path(base_dir) / path
    for folder in (path / "adapter", path):
        if (folder / "adapter_config.json").is_file():
            return folder
    raise TunerError(
        f"is '{start_from}', which is neither a run directory with a trained adapter "
        "(adapter/adapter_config.json) nor an adapter folder: point it at a completed run (`tuner "
        "runs` lists them) or at a folder written by save_pretrained."
    )


def recipe_hash_of(folder: Path) -> str | None:
    """The recipe hash of the run an adapter folder belongs to, when it is a run's."""
    from tuner_tui.runs.rebuild import frozen_recipe_hash

    return frozen_recipe_hash(folder.parent / "recipe.toml")
