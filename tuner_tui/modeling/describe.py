"""Describe a model from its config alone: the model is built on the meta device, no weights load.

Meta tensors have shapes but no storage, so counting parameters and listing linear layers of an
8B model takes a fraction of a second and no memory.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tuner_tui.modeling.loading import load_error
from tuner_tui.modeling.resolve import hub_kwargs, resolve_model
from tuner_tui.recipe import ModelConfig


@dataclass
class ModelFacts:
    """What the wizard shows about a model before anything heavy loads."""

    name_or_path: str
    architecture: str
    model_type: str
    parameters: int
    layers: int | None
    hidden_size: int | None
    attention_heads: int | None
    kv_heads: int | None
    vocab_size: int | None
    context_length: int | None
    dtype: str
    intermediate_size: int | None
    lora_targets: list[str] = field(default_factory=list)
    # None when it cannot be known without the network (a hub id not in the local cache).
    has_chat_template: bool | None = None
    tied_embeddings: bool = False

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (for `--json` output and the TUI)."""
        return asdict(self)


def _first(config: Any, *names: str) -> Any:
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return value
    return None


def load_config(model: ModelConfig, base_dir: Path | None = None) -> Any:
    """The model's transformers config (local folder, packaged model, or hub/cache)."""
    from transformers import AutoConfig

    path = resolve_model(model.name_or_path, base_dir)
    try:
        return AutoConfig.from_pretrained(path, **hub_kwargs(model))
    except (OSError, ValueError) as exc:
        raise load_error("config", model.name_or_path, exc, path) from None


def meta_model(config: Any, task: str, trust_remote_code: bool = False) -> Any:
    """The model built from `config` on the meta device (shapes only, no memory)."""
    import torch
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification

    with torch.device("meta"):
        if task == "sequence_classification":
            return AutoModelForSequenceClassification.from_config(config, trust_remote_code=trust_remote_code)
        try:
            return AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
        except ValueError:  # an encoder-only config (BERT) has no causal-LM class
            return AutoModel.from_config(config, trust_remote_code=trust_remote_code)


def _has_chat_template(path: str, model: ModelConfig) -> bool | None:
    if model.chat_template:
        return True
    folder = Path(path)
    if folder.is_dir():
        files = [
            folder / "tokenizer_config.json",
            folder / "chat_template.jinja",
            folder / "chat_template.json",
        ]
    else:
        from huggingface_hub import try_to_load_from_cache

        files = []
        for name in ("tokenizer_config.json", "chat_template.jinja", "chat_template.json"):
            cached = try_to_load_from_cache(path, name, revision=model.revision or None)
            if isinstance(cached, str):
                files.append(Path(cached))
        if not files:
            return None
    for file in files:
        if not file.exists():
            continue
        if file.suffix != ".json" or file.name == "chat_template.json":
            return True
        try:
            if json.loads(file.read_text(encoding="utf-8")).get("chat_template"):
                return True
        except (OSError, ValueError):
            continue
    return False


def count_parameters(model: Any) -> int:
    """Unique parameters (tied input/output embeddings count once)."""
    return sum(p.numel() for p in model.parameters())


def describe_model(model_config: ModelConfig, base_dir: Path | None = None) -> ModelFacts:
    """Facts about the recipe's model from its config only.

    Args:
        model_config: The recipe's `[model]` table.
        base_dir: Folder that relative model paths are relative to (the recipe's folder).

    Raises:
        TunerError: The config cannot be found or read.
    """
    from tuner_tui.modeling.methods import linear_module_names

    config = load_config(model_config, base_dir)
    model = meta_model(config, model_config.task, model_config.trust_remote_code)
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = _first(text_config, "num_attention_heads", "n_head")
    dtype = getattr(config, "dtype", None)
    return ModelFacts(
        name_or_path=model_config.name_or_path,
        architecture=(config.architectures or [type(model).__name__])[0],
        model_type=config.model_type,
        parameters=count_parameters(model),
        layers=_first(text_config, "num_hidden_layers", "n_layer", "num_layers"),
        hidden_size=_first(text_config, "hidden_size", "n_embd", "d_model"),
        attention_heads=heads,
        kv_heads=_first(text_config, "num_key_value_heads") or heads,
        vocab_size=_first(text_config, "vocab_size"),
        context_length=_first(text_config, "max_position_embeddings", "n_positions", "max_sequence_length"),
        dtype=str(dtype).removeprefix("torch.") if dtype is not None else "float32",
        intermediate_size=_first(text_config, "intermediate_size", "n_inner"),
        lora_targets=linear_module_names(model),
        has_chat_template=_has_chat_template(
            resolve_model(model_config.name_or_path, base_dir), model_config
        ),
        tied_embeddings=bool(getattr(text_config, "tie_word_embeddings", False)),
    )
