"""Load the tokenizer and model a recipe names, and wrap the model for its tuning method."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner_tui.errors import TunerError
from tuner_tui.modeling.resolve import resolve_model
from tuner_tui.recipe import MethodConfig, ModelConfig

if TYPE_CHECKING:
    import torch

# Used when the tokenizer has no chat template and the recipe gives none: a plain
# instruction/response layout that any base model can learn.
FALLBACK_CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ m['content'] }}\n\n"
    "{% elif m['role'] == 'user' %}### Instruction:\n{{ m['content'] }}\n\n"
    "{% else %}### Response:\n{{ m['content'] }}{{ eos_token }}\n\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}### Response:\n{% endif %}"
)


def _hub_kwargs(model: ModelConfig) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"trust_remote_code": model.trust_remote_code}
    if model.revision:
        kwargs["revision"] = model.revision
    return kwargs


def _load_error(what: str, name: str, exc: Exception) -> TunerError:
    return TunerError(
        f"Could not load the {what} of [model] name_or_path = '{name}': {exc}. A hub id needs the "
        "network or the Hugging Face cache (offline: HF_HUB_OFFLINE=1 uses the cache only); a "
        "local folder needs the files save_pretrained writes."
    )


def load_tokenizer(model: ModelConfig, base_dir: Path | None = None) -> Any:
    from transformers import AutoTokenizer

    path = resolve_model(model.name_or_path, base_dir)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **_hub_kwargs(model))
    except (OSError, ValueError) as exc:
        raise _load_error("tokenizer", model.name_or_path, exc) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    if model.chat_template:
        tokenizer.chat_template = model.chat_template
    return tokenizer


def ensure_chat_template(tokenizer: Any) -> bool:
    """Give the tokenizer a chat template if it has none; True when the fallback was used."""
    if getattr(tokenizer, "chat_template", None):
        return False
    tokenizer.chat_template = FALLBACK_CHAT_TEMPLATE
    return True


def torch_dtype(name: str, device: str) -> torch.dtype:
    import torch

    if name == "auto":
        if device == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    dtype = getattr(torch, name)
    if device == "cpu" and dtype == torch.float16:
        raise TunerError("[model] dtype = 'float16' does not train on the CPU: use 'float32' (or 'auto').")
    if device == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise TunerError("[model] dtype = 'bfloat16' is not supported by this GPU: use 'float16' or 'auto'.")
    return dtype


def load_model(
    model: ModelConfig,
    *,
    device: str,
    base_dir: Path | None = None,
    num_labels: int | None = None,
    id2label: dict[int, str] | None = None,
) -> Any:
    """The base model for the recipe's task, in the dtype the recipe and device call for."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    path = resolve_model(model.name_or_path, base_dir)
    kwargs: dict[str, Any] = {**_hub_kwargs(model), "dtype": torch_dtype(model.dtype, device)}
    try:
        if model.task == "sequence_classification":
            assert id2label is not None
            return AutoModelForSequenceClassification.from_pretrained(
                path,
                num_labels=num_labels,
                id2label=id2label,
                label2id={label: i for i, label in id2label.items()},
                **kwargs,
            )
        return AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as exc:
        raise _load_error("weights", model.name_or_path, exc) from None


def apply_method(base_model: Any, method: MethodConfig, task: str) -> Any:
    """Wrap the model for the tuning method (a PEFT model, or the model itself for full tuning)."""
    if method.type == "full":
        return base_model
    if method.type in ("lora", "dora"):
        from peft import LoraConfig, TaskType, get_peft_model

        target: str | list[str] = method.target_modules
        init: Any = True if method.init == "default" else method.init
        config = LoraConfig(
            r=method.r,
            lora_alpha=method.alpha,  # type: ignore[arg-type]  # peft accepts float alpha
            lora_dropout=method.dropout,
            target_modules=target,
            use_rslora=method.rslora,
            use_dora=method.type == "dora",
            init_lora_weights=init,
            task_type=TaskType.SEQ_CLS if task == "sequence_classification" else TaskType.CAUSAL_LM,
        )
        try:
            return get_peft_model(base_model, config)
        except ValueError as exc:
            raise TunerError(
                f"[method] target_modules = {target!r} does not fit this model: {exc}. Use "
                "'all-linear' or names of its linear layers (e.g. ['q_proj', 'v_proj'])."
            ) from None
    raise TunerError(
        f"[method] type = '{method.type}' is not available in this version yet: use 'lora', 'dora' or 'full'."
    )


def parameter_counts(model: Any) -> tuple[int, int]:
    """(trainable, total) parameters."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total
