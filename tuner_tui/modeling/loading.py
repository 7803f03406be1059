"""Load the tokenizer and model a recipe names, and wrap the model for its tuning method."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner_tui.errors import TunerError
from tuner_tui.modeling.resolve import hub_kwargs, resolve_model
from tuner_tui.recipe import MethodConfig, ModelConfig

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

# Weight files `torch.load` unpickles: loading one can run arbitrary code.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")

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


def hub_offline() -> bool:
    """HF_HUB_OFFLINE (or the older TRANSFORMERS_OFFLINE) is set: only the local cache is read."""
    return any(
        os.environ.get(key, "").strip().lower() in ("1", "true", "yes", "on")
        for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def hub_cache_dir() -> str:
    """The Hugging Face hub cache folder this process reads (HF_HUB_CACHE / HF_HOME aware)."""
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except ImportError:  # pragma: no cover - transformers depends on huggingface_hub
        return os.path.join(os.environ.get("HF_HOME", "~/.cache/huggingface"), "hub")


def load_error(what: str, name: str, exc: Exception, path: str) -> TunerError:
    if Path(path).is_dir():
        return TunerError(
            f"Could not load the {what} of [model] name_or_path = '{name}' from the folder {path}: "
            f"{exc}. A local folder needs the files save_pretrained writes."
        )
    if hub_offline():
        return TunerError(
            f"Could not load the {what} of the hub model '{name}': HF_HUB_OFFLINE is set, so only "
            f"the local Hugging Face cache ({hub_cache_dir()}) is read, and it does not hold this "
            f"model{' at that revision' if 'revision' in str(exc) else ''} ({exc}). Download it once "
            f"while online (huggingface-cli download {name}), copy the cache here, or point "
            "name_or_path at a folder written by save_pretrained."
        )
    return TunerError(
        f"Could not load the {what} of the hub model '{name}': {exc}. A hub id needs the network "
        f"or the Hugging Face cache ({hub_cache_dir()}); offline, HF_HUB_OFFLINE=1 reads the cache only."
    )


def weight_files(folder: Path) -> tuple[list[str], list[str]]:
    """(safetensors files, pickle weight files) directly in `folder`, sorted by name."""
    names = sorted(p.name for p in folder.iterdir() if p.is_file())
    safe = [n for n in names if n.endswith(".safetensors")]
    pickled = [n for n in names if n.endswith(PICKLE_SUFFIXES) and n != "training_args.bin"]
    return safe, pickled


def weights_kwargs(model: ModelConfig, path: str) -> dict[str, Any]:
    """`from_pretrained` options that decide which weight format may load.

    Only safetensors load unless `[model] allow_pickle_weights = true` (a pickle file can run code
    when loaded); with it, pickle files are allowed and a warning is logged.

    Raises:
        TunerError: A local folder has only pickle weights and the flag is off, or no weights at all.
    """
    folder = Path(path)
    if not folder.is_dir():  # a hub id: transformers checks the repository's files
        if model.allow_pickle_weights:
            log.warning(
                "[model] allow_pickle_weights = true: if the hub model '%s' has no safetensors, its "
                ".bin (pickle) weights load, and unpickling can run code. Only for sources you trust.",
                model.name_or_path,
            )
            return {}
        return {"use_safetensors": True}
    safe, pickled = weight_files(folder)
    if safe:
        return {"use_safetensors": True}
    if not pickled:
        return {}  # let transformers name what is missing (e.g. a config-only folder)
    if not model.allow_pickle_weights:
        raise TunerError(
            f"The model folder {folder} has no .safetensors weights, only pickle files "
            f"({', '.join(pickled)}), and tuner loads only safetensors: unpickling a file can run "
            "code. Convert them (load once and save_pretrained(..., safe_serialization=True)), or, "
            "for a source you trust, set [model] allow_pickle_weights = true."
        )
    log.warning(
        "Loading pickle weights (%s) from %s because [model] allow_pickle_weights = true: "
        "unpickling can run code. Only for sources you trust.",
        ", ".join(pickled),
        folder,
    )
    return {"use_safetensors": False}


def load_tokenizer(model: ModelConfig, base_dir: Path | None = None) -> Any:
    from transformers import AutoTokenizer

    path = resolve_model(model.name_or_path, base_dir)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **hub_kwargs(model))
    except (OSError, ValueError) as exc:
        raise load_error("tokenizer", model.name_or_path, exc, path) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    if model.chat_template:
        tokenizer.chat_template = NAMED_CHAT_TEMPLATES.get(model.chat_template, model.chat_template)
    return tokenizer


@contextmanager
def backend_state_kept(tokenizer: Any) -> Iterator[None]:
    """Restore the fast tokenizer backend's truncation and padding settings on exit.

    transformers sets them on the backend for each call and leaves them there, and
    `save_pretrained` writes them into tokenizer.json: without this, what a saved tokenizer.json
    holds depends on which calls happened to run before the save.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:  # a slow (Python) tokenizer keeps no such state
        yield
        return
    truncation, padding = backend.truncation, backend.padding
    try:
        yield
    finally:
        if truncation is None:
            backend.no_truncation()
        else:
            backend.enable_truncation(**truncation)
        if padding is None:
            backend.no_padding()
        else:
            backend.enable_padding(**padding)


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
    kwargs: dict[str, Any] = {
        **hub_kwargs(model),
        **weights_kwargs(model, path),
        "dtype": torch_dtype(model.dtype, device),
    }
    if quantize_4bit:
        kwargs["quantization_config"] = qlora_quantization_config(device, kwargs["dtype"])
        import torch

        kwargs["device_map"] = {"": torch.cuda.current_device()}  # each rank's own GPU
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
        raise load_error("weights", model.name_or_path, exc, path) from None


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
    """(trainable, total) parameters of the model as it trains: a PEFT model's total includes the
    adapters and the trainable copies of `modules_to_save` (peft's `get_nb_trainable_parameters`).

    The worker logs these for the loaded model and `tuner estimate` reports them for the same
    model built on the meta device, so the two agree. bitsandbytes packs two 4-bit weights per
    byte of storage: those count as the weights they hold, as peft counts them.
    """
    trainable = total = 0
    for parameter in model.parameters():
        count = parameter.numel()
        if type(parameter).__name__ == "Params4bit":
            count *= 2 * parameter.element_size()
        total += count
        if parameter.requires_grad:
            trainable += count
    return trainable, total
