"""Map `[method]` to a trainable model: PEFT adapters, full tuning, or freezing all but the last layers.

Every builder takes the base model and returns a `MethodSetup`: the model to train and any
`TrainerCallback`s the method needs (AdaLoRA reallocates ranks between optimizer steps). Parameters
the recipe cannot express yet use fixed, documented defaults here (`ADALORA_*`, prompt-tuning init).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tuner_tui.errors import TunerError
from tuner_tui.recipe import MethodConfig

# The [method] parameters each method's builder below actually reads; the wizard shows these.
_LORA_PARAMS = ("r", "alpha", "dropout", "target_modules", "rslora", "init")
METHOD_PARAMS: dict[str, tuple[str, ...]] = {
    "lora": _LORA_PARAMS,
    "dora": _LORA_PARAMS,
    "qlora": _LORA_PARAMS,
    "adalora": ("r", "alpha", "dropout", "target_modules"),
    "loha": ("r", "alpha", "dropout", "target_modules"),
    "lokr": ("r", "alpha", "dropout", "target_modules"),
    "ia3": ("target_modules",),
    "prompt_tuning": ("num_virtual_tokens",),
    "prefix_tuning": ("num_virtual_tokens",),
    "full": (),
    "freeze": ("trainable_layers",),
}
# Methods whose trainable part is a PEFT adapter saved as adapter_model.safetensors.
PEFT_METHODS = ("lora", "dora", "qlora", "ia3", "loha", "lokr", "adalora", "prompt_tuning", "prefix_tuning")

# AdaLoRA's schedule as shares of the total steps: warm up at full rank for the first 10 %,
# prune ranks until 80 %, then train the final ranks. `ADALORA_TARGET_R` is the average final rank
# as a share of `r` (peft: init_r -> target_r).
ADALORA_TINIT_SHARE = 0.1
ADALORA_TFINAL_SHARE = 0.2
ADALORA_TARGET_R_SHARE = 0.5


@dataclass
class MethodSetup:
    """The model to train and the callbacks its method needs."""

    model: Any
    callbacks: list[Any] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _task_type(task: str) -> Any:
    from peft import TaskType

    return TaskType.SEQ_CLS if task == "sequence_classification" else TaskType.CAUSAL_LM


def linear_module_names(model: Any) -> list[str]:
    """Short names of the linear layers a LoRA-style adapter can target (heads excluded).

    Mirrors peft's "all-linear" rule: every `nn.Linear` (or GPT-2 `Conv1D`) except the output
    head, named by the last component of its path (`q_proj`, `dense`, ...).
    """
    import torch

    head_names = _head_names(model)
    names: set[str] = set()
    for path, module in model.named_modules():
        if type(module).__name__ in ("Linear", "Conv1D", "Linear4bit", "Linear8bitLt") or isinstance(
            module, torch.nn.Linear
        ):
            short = path.rsplit(".", 1)[-1]
            if path and short not in head_names and path not in head_names:
                names.add(short)
    return sorted(names)


def _head_names(model: Any) -> set[str]:
    names = {"lm_head", "score", "classifier"}
    get_output = getattr(model, "get_output_embeddings", None)
    output = get_output() if callable(get_output) else None
    for path, module in model.named_modules():
        if output is not None and module is output:
            names.add(path)
            names.add(path.rsplit(".", 1)[-1])
    return names


def _linear_paths(model: Any) -> list[tuple[str, Any]]:
    import torch

    head_names = _head_names(model)
    return [
        (path, module)
        for path, module in model.named_modules()
        if isinstance(module, torch.nn.Linear)
        and path not in head_names
        and path.rsplit(".", 1)[-1] not in head_names
        and not path.startswith(("classifier", "score", "pooler"))
        and ".pooler." not in f".{path}"
    ]


def _target(method: MethodConfig) -> str | list[str]:
    target = method.target_modules
    if isinstance(target, str) and target.lower() == "all-linear":
        return "all-linear"
    return target


def _wrap_peft(base_model: Any, config: Any, method: MethodConfig) -> Any:
    from peft import get_peft_model

    try:
        model = get_peft_model(base_model, config)
    except ValueError as exc:
        raise TunerError(
            f"[method] type = '{method.type}' with target_modules = {method.target_modules!r} does not fit "
            f"this model: {exc}. Use 'all-linear' or names of its linear layers "
            f"(this model has: {', '.join(linear_module_names(base_model))})."
        ) from None
    sort_config_sets(model)
    return model


def sort_config_sets(model: Any) -> None:
    """Turn the sets in the model's peft configs (target_modules, IA3's feedforward_modules, ...)
    into sorted lists.

    peft writes a set into adapter_config.json in iteration order, which follows Python's string
    hashing and so changes from one process to the next: two identical runs would write different
    files. The layers are already adapted, so only what gets saved changes; peft reads lists back.
    """
    for peft_config in getattr(model, "peft_config", {}).values():
        for key, value in vars(peft_config).items():
            if isinstance(value, (set, frozenset)):
                setattr(peft_config, key, sorted(value, key=str))


def _lora_init(method: MethodConfig) -> tuple[Any, dict[str, Any]]:
    """peft's `init_lora_weights` value and extra LoraConfig kwargs for `[method] init`."""
    if method.init == "default":
        return True, {}
    if method.init == "loftq":
        import importlib.util

        if importlib.util.find_spec("bitsandbytes") is None:
            raise TunerError(
                "[method] init = 'loftq' needs the bitsandbytes package (peft quantizes the base weights "
                "with it to initialise the adapter), and bitsandbytes is not installed. Use init = 'pissa' "
                "or 'olora' (no extra package), or pip install bitsandbytes on a CUDA machine."
            )
        from peft import LoftQConfig

        return "loftq", {"loftq_config": LoftQConfig(loftq_bits=4)}
    return method.init, {}


def build_lora(base_model: Any, method: MethodConfig, task: str, **_: Any) -> MethodSetup:
    """LoRA, DoRA (`use_dora`) and the LoRA half of QLoRA."""
    from peft import LoraConfig

    init, extra = _lora_init(method)
    config = LoraConfig(
        r=method.r,
        lora_alpha=method.alpha,  # type: ignore[arg-type]  # peft accepts float alpha
        lora_dropout=method.dropout,
        target_modules=_target(method),
        use_rslora=method.rslora,
        use_dora=method.type == "dora",
        init_lora_weights=init,
        task_type=_task_type(task),
        **extra,
    )
    return MethodSetup(_wrap_peft(base_model, config, method))


def build_qlora(base_model: Any, method: MethodConfig, task: str, **kwargs: Any) -> MethodSetup:
    """LoRA on a 4-bit base (the base must have been loaded with `quantization_config`)."""
    from peft import prepare_model_for_kbit_training

    if not getattr(base_model, "is_loaded_in_4bit", False):
        raise TunerError(
            "[method] type = 'qlora' needs the base model loaded in 4-bit (load_model does that on CUDA); "
            "this one is not. Use type = 'lora'."
        )
    gradient_checkpointing = bool(kwargs.get("gradient_checkpointing", False))
    model = prepare_model_for_kbit_training(base_model, use_gradient_checkpointing=gradient_checkpointing)
    return build_lora(model, method, task)


def _feedforward_paths(model: Any) -> list[str]:
    """Linear layers that read the MLP's hidden activations (down projections).

    IA3 scales the *input* of feed-forward layers and the *output* of attention layers, so peft must
    be told which are which. A linear layer whose input width is the model's intermediate size is
    the MLP's down projection in every common architecture (down_proj, fc2, output.dense, w2).
    """
    intermediate = getattr(model.config, "intermediate_size", None) or getattr(model.config, "n_inner", None)
    hidden = getattr(model.config, "hidden_size", None)
    if intermediate is None and hidden is not None:
        intermediate = 4 * hidden
    return [path for path, module in _linear_paths(model) if module.in_features == intermediate]


def build_ia3(base_model: Any, method: MethodConfig, task: str, **_: Any) -> MethodSetup:
    """(IA)^3: learned scaling vectors on keys, values and feed-forward inputs."""
    from peft import IA3Config

    target = _target(method)
    if target == "all-linear":
        target_paths = [path for path, _ in _linear_paths(base_model)]
        feedforward = _feedforward_paths(base_model)
    else:
        wanted = [target] if isinstance(target, str) else list(target)
        target_paths = [
            path for path, _ in _linear_paths(base_model) if any(path.endswith(t) for t in wanted)
        ]
        feedforward = [p for p in _feedforward_paths(base_model) if p in target_paths]
    if not target_paths:
        raise TunerError(
            f"[method] target_modules = {method.target_modules!r} matches no linear layer of this model: "
            f"use 'all-linear' or some of {', '.join(linear_module_names(base_model))}."
        )
    # Full paths (not short names): peft matches by suffix, and short names such as BERT's
    # 'dense' would mark attention outputs as feed-forward too.
    config = IA3Config(
        target_modules=target_paths,
        feedforward_modules=feedforward,
        task_type=_task_type(task),
    )
    return MethodSetup(_wrap_peft(base_model, config, method))


def _build_lycoris(config_name: str, base_model: Any, method: MethodConfig, task: str) -> MethodSetup:
    """LoHa and LoKr share their parameters; only the factorisation differs."""
    import peft

    config = getattr(peft, config_name)(
        r=method.r,
        alpha=method.alpha,
        module_dropout=method.dropout,
        target_modules=_target(method),
        task_type=_task_type(task),
    )
    return MethodSetup(_wrap_peft(base_model, config, method))


def build_loha(base_model: Any, method: MethodConfig, task: str, **_: Any) -> MethodSetup:
    """LoHa: low-rank Hadamard product adapters."""
    return _build_lycoris("LoHaConfig", base_model, method, task)


def build_lokr(base_model: Any, method: MethodConfig, task: str, **_: Any) -> MethodSetup:
    """LoKr: low-rank Kronecker product adapters."""
    return _build_lycoris("LoKrConfig", base_model, method, task)


def build_adalora(base_model: Any, method: MethodConfig, task: str, **kwargs: Any) -> MethodSetup:
    """AdaLoRA: LoRA whose ranks are pruned by importance during training; needs the total steps."""
    from peft import AdaLoraConfig

    total_steps = int(kwargs.get("total_steps") or 0)
    if total_steps < 3:
        raise TunerError(
            "[method] type = 'adalora' reallocates ranks over the training schedule and needs at least "
            f"3 optimizer steps; this recipe has {total_steps}. Raise [training] max_steps or epochs."
        )
    tinit = int(total_steps * ADALORA_TINIT_SHARE)
    tfinal = int(total_steps * ADALORA_TFINAL_SHARE)
    config = AdaLoraConfig(
        init_r=method.r,
        target_r=max(1, int(method.r * ADALORA_TARGET_R_SHARE)),
        lora_alpha=method.alpha,  # type: ignore[arg-type]
        lora_dropout=method.dropout,
        target_modules=_target(method),
        total_step=total_steps,
        tinit=tinit,
        tfinal=tfinal,
        deltaT=1,
        task_type=_task_type(task),
    )
    model = _wrap_peft(base_model, config, method)
    return MethodSetup(model, callbacks=[_adalora_callback(model)])


def _adalora_callback(model: Any) -> Any:
    from transformers import TrainerCallback

    class AdaLoraRankCallback(TrainerCallback):
        """Calls AdaLoRA's rank allocator after each optimizer step, while gradients still exist
        (Trainer zeroes them after `on_optimizer_step`); without it AdaLoRA is a plain LoRA."""

        def on_optimizer_step(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            model.base_model.update_and_allocate(state.global_step)

    return AdaLoraRankCallback()


def build_prompt_tuning(base_model: Any, method: MethodConfig, task: str, **_: Any) -> MethodSetup:
    """Prompt tuning: `num_virtual_tokens` trainable input embeddings, randomly initialised."""
    from peft import PromptTuningConfig, PromptTuningInit

    config = PromptTuningConfig(
        num_virtual_tokens=method.num_virtual_tokens,
        prompt_tuning_init=PromptTuningInit.RANDOM,
        task_type=_task_type(task),
    )
    return MethodSetup(_wrap_peft(base_model, config, method))


def build_prefix_tuning(base_model: Any, method: MethodConfig, task: str, **kwargs: Any) -> MethodSetup:
    """Prefix tuning: trainable key/value prefixes in every attention layer."""
    from peft import PrefixTuningConfig

    # gradient_checkpointing is refused with prefix tuning by Recipe.problems().
    config = PrefixTuningConfig(
        num_virtual_tokens=method.num_virtual_tokens,
        task_type=_task_type(task),
    )
    return MethodSetup(_wrap_peft(base_model, config, method))


def build_full(base_model: Any, method: MethodConfig, task: str, **_: Any) -> MethodSetup:
    """Every parameter trains."""
    for parameter in base_model.parameters():
        parameter.requires_grad_(True)
    return MethodSetup(base_model)


def layer_stack(model: Any) -> tuple[str, Any]:
    """The model's repeated block list (decoder or encoder layers): the longest `nn.ModuleList`."""
    import torch

    stacks = [(path, m) for path, m in model.named_modules() if isinstance(m, torch.nn.ModuleList) and len(m)]
    if not stacks:
        raise TunerError("[method] type = 'freeze' found no layer list in this model: use 'lora' or 'full'.")
    return max(stacks, key=lambda item: len(item[1]))


def build_freeze(base_model: Any, method: MethodConfig, task: str, **_: Any) -> MethodSetup:
    """Train only the last `trainable_layers` blocks (plus the final norm and a classifier head)."""
    path, layers = layer_stack(base_model)
    n = method.trainable_layers
    if n > len(layers):
        raise TunerError(
            f"[method] trainable_layers = {n}, but this model has {len(layers)} layers: "
            f"use at most {len(layers)} (or type = 'full')."
        )
    for parameter in base_model.parameters():
        parameter.requires_grad_(False)
    for layer in list(layers)[len(layers) - n :]:
        for parameter in layer.parameters():
            parameter.requires_grad_(True)
    # The final norm sits after the last layer, and a new classification head starts random:
    # both must train or the last layers' changes cannot be used.
    after = re.compile(r"(^|\.)(norm|final_layer_norm|ln_f|score|classifier)(\.|$)")
    for name, parameter in base_model.named_parameters():
        if after.search(name) and not name.startswith(f"{path}."):
            parameter.requires_grad_(True)
    return MethodSetup(base_model, notes=[f"freeze: training the last {n} of {len(layers)} layers in {path}"])


BUILDERS: dict[str, Callable[..., MethodSetup]] = {
    "lora": build_lora,
    "dora": build_lora,
    "qlora": build_qlora,
    "ia3": build_ia3,
    "loha": build_loha,
    "lokr": build_lokr,
    "adalora": build_adalora,
    "prompt_tuning": build_prompt_tuning,
    "prefix_tuning": build_prefix_tuning,
    "full": build_full,
    "freeze": build_freeze,
}


def build_method(
    base_model: Any,
    method: MethodConfig,
    task: str,
    *,
    total_steps: int = 0,
    gradient_checkpointing: bool = False,
) -> MethodSetup:
    """Wrap `base_model` for `method.type`.

    Args:
        base_model: A loaded transformers model (4-bit for qlora).
        method: The recipe's `[method]` table.
        task: "causal_lm" or "sequence_classification".
        total_steps: Optimizer steps the run will take (AdaLoRA's schedule needs it).
        gradient_checkpointing: Whether activations are recomputed (prefix tuning refuses it).

    Raises:
        TunerError: The method does not fit the model, settings or machine.
    """
    builder = BUILDERS.get(method.type)
    if builder is None:
        raise TunerError(f"[method] type = '{method.type}' is unknown: choose one of {', '.join(BUILDERS)}.")
    # Training never reuses a key/value cache; leaving it on also hides packed-sequence boundaries
    # from transformers' mask builder.
    if hasattr(base_model, "config"):
        base_model.config.use_cache = False
    return builder(
        base_model,
        method,
        task,
        total_steps=total_steps,
        gradient_checkpointing=gradient_checkpointing,
    )
