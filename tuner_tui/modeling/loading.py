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


# ChatML written as plain text: a base model's tokenizer has no <|im_start|> token, and adding one
# would mean resizing (and training) the embeddings. The eos after each assistant turn teaches the
# model to stop.
CHATML_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>"
    "{% if m['role'] == 'assistant' %}{{ eos_token }}{% endif %}\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Templates a recipe can name in [model] chat_template instead of writing Jinja.
NAMED_CHAT_TEMPLATES = {"alpaca": FALLBACK_CHAT_TEMPLATE, "chatml": CHATML_CHAT_TEMPLATE}
# The template used when neither the tokenizer nor the recipe has one.
DEFAULT_FALLBACK = "alpaca"


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
        tokenizer.chat_template = NAMED_CHAT_TEMPLATES.get(model.chat_template, model.chat_template)
    return tokenizer


def chat_template_origin(model: ModelConfig, tokenizer: Any) -> str:
    """Where the chat template in use comes from, for the run's log: 'recipe:chatml',
    'recipe:custom', 'tokenizer', or 'fallback:alpaca' (call before `ensure_chat_template`)."""
    if model.chat_template:
        return f"recipe:{model.chat_template if model.chat_template in NAMED_CHAT_TEMPLATES else 'custom'}"
    if getattr(tokenizer, "chat_template", None):
        return "tokenizer"
    return f"fallback:{DEFAULT_FALLBACK}"


def ensure_chat_template(tokenizer: Any, fallback: str = DEFAULT_FALLBACK) -> bool:
    """Give the tokenizer the named fallback template if it has none; True when it was used."""
    if getattr(tokenizer, "chat_template", None):
        return False
    tokenizer.chat_template = NAMED_CHAT_TEMPLATES[fallback]
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
    quantize_4bit: bool = False,
) -> Any:
    """The base model for the recipe's task, in the dtype the recipe and device call for.

    Args:
        quantize_4bit: Load the weights as 4-bit NF4 through bitsandbytes (QLoRA); CUDA only.
    """
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    path = resolve_model(model.name_or_path, base_dir)
    kwargs: dict[str, Any] = {**_hub_kwargs(model), "dtype": torch_dtype(model.dtype, device)}
    if quantize_4bit:
        kwargs["quantization_config"] = qlora_quantization_config(device, kwargs["dtype"])
        kwargs["device_map"] = {"": 0}
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


def qlora_quantization_config(device: str, compute_dtype: Any) -> Any:
    """bitsandbytes 4-bit NF4 with double quantization (the QLoRA paper's settings).

    Raises:
        TunerError: Not on CUDA, or bitsandbytes is missing: both are needed for 4-bit weights.
    """
    import importlib.util

    if device != "cuda":
        raise TunerError(
            f"[method] type = 'qlora' needs a CUDA GPU: its 4-bit weights come from bitsandbytes, which "
            f"only quantizes on CUDA, and this run is on '{device}'. Use type = 'lora' (same adapter, "
            "full-precision base) on this machine, or run on a machine with an NVIDIA GPU."
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise TunerError(
            "[method] type = 'qlora' needs the bitsandbytes package for 4-bit weights: pip install "
            "bitsandbytes, or use type = 'lora'."
        )
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        # fp32 compute would undo the memory saving on activations; bf16 where the GPU has it.
        bnb_4bit_compute_dtype=compute_dtype if compute_dtype != torch.float32 else torch.float16,
    )


def apply_method(base_model: Any, method: MethodConfig, task: str, **options: Any) -> Any:
    """Wrap the model for the tuning method (a PEFT model, or the model itself for full/freeze).

    Kept for callers that only need the model; `methods.build_method` also returns callbacks.
    """
    from tuner_tui.modeling.methods import build_method

    return build_method(base_model, method, task, **options).model


def parameter_counts(model: Any) -> tuple[int, int]:
    """(trainable, total) parameters."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total
