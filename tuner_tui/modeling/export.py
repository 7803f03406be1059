"""Reload a finished run's model, and export it: the adapter as is, or merged into the base.

A merged export folds the adapter's update into the base weights (peft `merge_and_unload`), so
the result loads with plain `from_pretrained` and runs at base-model speed. Prompt-learning
adapters (prompt/prefix tuning) have no weights to fold in and cannot be merged.

Every export holds the model card (README.md, `tuner_tui.ship.card`), written from the run's own
files in place of PEFT's placeholder, and the run's frozen recipe (tuner_recipe.toml). Every file
gets the mode the user's umask gives (0644 with the usual 022): safetensors >= 0.8 writes through
a temporary file created 0600 and renames it into place (safetensors PR #764, issue #782), so
merged and adapter weights came out 0600 among 0644 files.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from tuner_tui.errors import TunerError
from tuner_tui.paths import current_umask
from tuner_tui.recipe import Recipe, load_recipe

# Merged logits are compared with base+adapter logits in the tests at this absolute tolerance
# (float32): merging changes the order of floating-point additions, nothing else.
MERGE_TOLERANCE = 1e-4


def honour_umask(folder: Path) -> None:
    """Give every file under `folder` mode 0666 & ~umask and every folder 0777 & ~umask: what a
    plain `open()` or `mkdir` by this user would give, whichever library wrote them."""
    mask = current_umask()
    for path in [Path(folder), *Path(folder).rglob("*")]:
        if path.is_symlink():
            continue
        wanted = (0o777 if path.is_dir() else 0o666) & ~mask
        if path.stat().st_mode & 0o777 != wanted:
            path.chmod(wanted)


def is_peft_adapter(adapter_dir: Path) -> bool:
    """True when the folder holds a PEFT adapter (not a whole model from full/freeze tuning)."""
    return (Path(adapter_dir) / "adapter_config.json").exists()


def read_id2label(adapter_dir: Path) -> dict[int, str] | None:
    """A classifier's labels by output index (labels.json beside its adapter); None for a causal LM."""
    labels = Path(adapter_dir) / "labels.json"
    if not labels.exists():
        return None
    return {int(k): v for k, v in json.loads(labels.read_text(encoding="utf-8"))["id2label"].items()}


def load_tuned_model(recipe: Recipe, adapter_dir: Path, device: str = "cpu") -> Any:
    """The tuned model of a run, from disk: base + PEFT adapter, or the saved whole model.

    Args:
        recipe: The run's frozen recipe (names the base model and task).
        adapter_dir: The run's `adapter/` folder (or a checkpoint folder).
        device: Where to put the model.
    """
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from tuner_tui.modeling.loading import load_model

    adapter_dir = Path(adapter_dir)
    id2label = read_id2label(adapter_dir)
    if is_peft_adapter(adapter_dir):
        from peft import PeftModel

        base = load_model(
            recipe.model, device=device, num_labels=len(id2label) if id2label else None, id2label=id2label
        )
        return PeftModel.from_pretrained(base, str(adapter_dir)).to(device).eval()
    if not (adapter_dir / "config.json").exists():
        raise TunerError(
            f"{adapter_dir} holds neither a PEFT adapter (adapter_config.json) nor a model (config.json): "
            "was the run completed? `tuner status` shows its phase."
        )
    auto: Any = AutoModelForSequenceClassification if id2label else AutoModelForCausalLM
    return auto.from_pretrained(str(adapter_dir)).to(device).eval()


def merge_and_export(run_dir: Path, out: Path, merge: bool, card: bool = True) -> Path:
    """Export a run's tuned model to `out` and return the folder written.

    Args:
        run_dir: A completed run directory (with `recipe.toml` and `adapter/`).
        out: Destination folder; must not exist yet, or be empty.
        merge: Fold the adapter into the base weights and write a standalone safetensors model.
            When False, copy the adapter folder (adapter weights, config, tokenizer, labels).
        card: Write the model card (README.md); False only for an intermediate folder whose
            caller writes the card itself (the GGUF export).

    Raises:
        TunerError: The run has no adapter or has not completed, `out` is not empty, or the
            adapter cannot be merged.
    """
    run_dir, out = Path(run_dir), Path(out)
    adapter_dir = run_dir / "adapter"
    if not adapter_dir.is_dir():
        raise TunerError(
            f"{run_dir} has no adapter/ folder: only a completed run can be exported "
            f"(`tuner status {run_dir}` shows its phase; resume it with `tuner resume {run_dir}`)."
        )
    if out.exists() and any(out.iterdir()):
        raise TunerError(f"The export folder {out} is not empty: choose a new folder or empty it.")
    recipe = load_recipe(run_dir / "recipe.toml")
    if card:
        from tuner_tui.ship.card import read_run

        read_run(run_dir)  # a run that has not completed is refused before anything is written
    if not merge or not is_peft_adapter(adapter_dir):
        # Full/freeze runs saved a whole model already: "merging" is a copy.
        shutil.copytree(adapter_dir, out, dirs_exist_ok=True)
        return _finish(run_dir, out, merged=False, card=card)
    config = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    if config.get("peft_type") in ("PROMPT_TUNING", "PREFIX_TUNING", "P_TUNING"):
        raise TunerError(
            f"The run's {config['peft_type'].lower()} adapter adds virtual tokens, not weight updates, so it "
            "cannot be merged into the base model. Export without --merge and load it with peft."
        )
    model = load_tuned_model(recipe, adapter_dir)
    merged = model.merge_and_unload()
    merged.config.use_cache = True
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(str(out), safe_serialization=True)
    from tuner_tui.modeling.loading import load_tokenizer

    # The tokenizer saved with the adapter carries the chat template the run trained with.
    tokenizer_source = adapter_dir if (adapter_dir / "tokenizer_config.json").exists() else None
    if tokenizer_source is not None:
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(str(tokenizer_source)).save_pretrained(str(out))
    else:
        load_tokenizer(recipe.model).save_pretrained(str(out))
    if (adapter_dir / "labels.json").exists():
        shutil.copy2(adapter_dir / "labels.json", out / "labels.json")
    return _finish(run_dir, out, merged=True, card=card)


def _finish(run_dir: Path, out: Path, merged: bool, card: bool) -> Path:
    """The recipe and the card beside the weights, and the umask's modes on everything."""
    shutil.copyfile(run_dir / "recipe.toml", out / "tuner_recipe.toml")
    if card:
        from tuner_tui.ship.card import write_card

        write_card(run_dir, out, merged=merged)
    else:
        (out / "README.md").unlink(missing_ok=True)  # PEFT's placeholder card
    honour_umask(out)
    return out
