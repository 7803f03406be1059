"""Estimate the training memory of a recipe before loading anything, and compare it with the device.

The model is built on the meta device (shapes only), wrapped by the recipe's method to count the
trainable parameters exactly, and the memory is the sum of:

- weights: every base parameter in the training dtype (4-bit NF4 for qlora's linear layers);
- trainable params: adapter weights (peft keeps them in float32); 0 for full/freeze, whose
  trainable weights are already part of `weights`;
- gradients: one per trainable parameter, in its dtype;
- optimizer state: AdamW keeps two moments per trainable parameter, 8-bit AdamW two bytes, SGD none;
- activations: tensors saved for backward, per token per layer `ACT_PER_HIDDEN * hidden +
  ACT_PER_INTERMEDIATE * intermediate` elements, plus the float32 logits, their log-softmax and
  gradient (3 x tokens x vocab x 4 bytes). With gradient checkpointing only each layer's input is
  kept, plus one layer recomputed during backward;
- overhead: CUDA context and allocator fragmentation on a GPU; allocator slack on the CPU.

`benchmarks/memory_estimate.py` measures real CPU training steps against this; the constants below
come from counting the tensors a Llama decoder layer saves for backward (see the comments).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tuner_tui.recipe import Recipe

# Elements saved for backward per token per decoder layer. Hidden-sized: the two RMSNorms (input,
# rsqrt'd input and output, 3 each), q/k/v after RoPE (3), attention output (1), residual sums (2)
# -> 12. Intermediate-sized (SwiGLU MLP): gate and up projections, SiLU(gate) and the product fed
# to down_proj -> 4. Adapter dropout copies and attention scores are counted separately.
ACT_PER_HIDDEN = 12
ACT_PER_INTERMEDIATE = 4
# logits, their float32 log-softmax kept by cross-entropy, and the logits' gradient.
LOGIT_COPIES = 3
# Verdict thresholds as a share of device memory.
FITS_SHARE = 0.85
CUDA_CONTEXT_BYTES = 600 * 2**20
GPU_FRAGMENTATION = 0.10
CPU_SLACK = 0.05
OPTIMIZER_STATES = {  # (states per trainable parameter, bytes per state or None = parameter dtype)
    "adamw_torch": (2, None),
    "adamw_torch_fused": (2, None),
    "adamw_8bit": (2, 1),
    "paged_adamw_8bit": (2, 1),
    "sgd": (0, None),
    "adafactor": (0.1, 4),  # factored second moment: row + column sums, a few % of Adam's
}


@dataclass
class Estimate:
    """Memory estimate for a recipe on a device; all sizes in bytes."""

    total_bytes: int
    device_bytes: int
    device_label: str
    verdict: str  # "fits" | "tight" | "won't-fit"
    breakdown: dict[str, int]
    trainable_params: int
    total_params: int
    batch_size: int
    max_length: int
    max_batch_size: int  # largest per-device batch that fits (0: not even 1)
    dtype: str
    method: str
    notes: list[str]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (`tuner estimate --json`)."""
        return asdict(self)


def detect_device_memory(device: str = "auto") -> tuple[int, str]:
    """(bytes, label): CUDA GPU 0's total memory, else the system's available RAM."""
    import psutil

    if device in ("auto", "cuda"):
        try:
            import torch

            if torch.cuda.is_available():
                _, total = torch.cuda.mem_get_info(0)
                return int(total), f"GPU 0 ({torch.cuda.get_device_name(0)})"
        except Exception:  # a broken driver reads as no GPU here; doctor explains it
            pass
    return int(psutil.virtual_memory().available), "system RAM (available; no CUDA GPU)"


def _dtype_bytes(recipe: Recipe, on_gpu: bool) -> tuple[int, str]:
    dtype = recipe.model.dtype
    if dtype == "auto":
        dtype = "bfloat16" if on_gpu else "float32"
    return (4 if dtype == "float32" else 2), dtype


def _count_trainable(meta: Any, recipe: Recipe) -> tuple[int, int]:
    """(trainable parameters, summed input widths of dropout-wrapped adapter layers) after the
    recipe's method wraps the meta model."""
    import torch

    from tuner_tui.modeling.loading import parameter_counts
    from tuner_tui.modeling.methods import build_method

    method = copy.copy(recipe.method)
    # Data-dependent inits (SVD, quantization) cannot run on meta tensors; counts are the same.
    method.init = "default"
    if method.type == "qlora":
        method.type = "lora"
    model = build_method(
        meta, method, recipe.model.task, total_steps=max(recipe.training.max_steps, 100)
    ).model
    trainable, _ = parameter_counts(model)
    dropout_inputs = 0
    for module in model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        base = getattr(module, "base_layer", None)
        if isinstance(dropouts, torch.nn.ModuleDict) and isinstance(base, torch.nn.Linear):
            if any(isinstance(d, torch.nn.Dropout) for d in dropouts.values()):
                dropout_inputs += base.in_features
    return trainable, dropout_inputs


def _layer_linear_params(meta: Any) -> int:
    """Parameters in linear layers inside the repeated blocks (what 4-bit quantizes)."""
    import torch

    from tuner_tui.modeling.methods import layer_stack

    _, layers = layer_stack(meta)
    return sum(m.weight.numel() for m in layers.modules() if isinstance(m, torch.nn.Linear))


def activation_bytes_per_sequence(
    config: Any,
    max_length: int,
    act_bytes: int,
    checkpointing: bool,
    *,
    grad_layers: int | None = None,
    dropout_inputs: int = 0,
    quadratic_attention: bool = False,
) -> int:
    """Bytes of saved activations for one sequence of `max_length` tokens.

    Args:
        grad_layers: Layers that backward runs through (freeze: the trainable ones); None = all.
        dropout_inputs: Per layer, summed input widths of adapted linears with dropout: each keeps
            its dropped-out input (act_bytes) and a mask (1 byte).
        quadratic_attention: The attention kernel materialises scores and probabilities
            (2 x heads x length^2): true for torch's CPU path, false for flash/memory-efficient
            SDPA on a GPU.
    """
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    hidden = getattr(text, "hidden_size", 768)
    intermediate = getattr(text, "intermediate_size", None) or 4 * hidden
    layers = getattr(text, "num_hidden_layers", 12)
    heads = getattr(text, "num_attention_heads", max(hidden // 64, 1))
    vocab = getattr(text, "vocab_size", 32000)
    per_layer = max_length * (ACT_PER_HIDDEN * hidden + ACT_PER_INTERMEDIATE * intermediate) * act_bytes
    per_layer += max_length * dropout_inputs // max(layers, 1) * (act_bytes + 1)
    if quadratic_attention:
        per_layer += 2 * heads * max_length * max_length * act_bytes
    saved_layers = layers if grad_layers is None else grad_layers
    if checkpointing:
        # Each layer keeps its input; one layer at a time is recomputed with everything saved.
        layer_total = saved_layers * max_length * hidden * act_bytes + per_layer
    else:
        layer_total = saved_layers * per_layer
    return layer_total + LOGIT_COPIES * max_length * vocab * 4


def estimate_memory(
    recipe: Recipe, device_bytes: int | None = None, base_dir: Path | None = None
) -> Estimate:
    """Estimate peak training memory for `recipe` and judge it against the device.

    Args:
        recipe: The recipe (model, method, training settings).
        device_bytes: Memory to judge against; None detects it (CUDA GPU 0, else available RAM).
        base_dir: Folder that relative model paths are relative to.
    """
    from tuner_tui.modeling.describe import count_parameters, load_config, meta_model

    if device_bytes is None:
        device_bytes, label = detect_device_memory(recipe.training.device)
    else:
        label = "given"
    on_gpu = label.startswith("GPU") or recipe.method.type == "qlora"
    act_bytes, dtype = _dtype_bytes(recipe, on_gpu)
    config = load_config(recipe.model, base_dir)
    meta = meta_model(config, recipe.model.task, recipe.model.trust_remote_code)
    total = count_parameters(meta)
    t, m = recipe.training, recipe.method
    notes: list[str] = []

    if m.type == "qlora":
        quantized = _layer_linear_params(meta)
        # NF4: half a byte per weight, plus double-quantized block constants (~0.127 bit/weight).
        weights = int(quantized * (0.5 + 0.127 / 8) + (total - quantized) * act_bytes)
        notes.append("qlora: linear layers counted as 4-bit NF4 with double quantization")
    else:
        weights = total * act_bytes
    trainable, dropout_inputs = _count_trainable(copy.deepcopy(meta), recipe)
    adapter = m.type not in ("full", "freeze")
    param_bytes = 4 if adapter else act_bytes  # peft keeps adapter weights in float32
    states, state_bytes = OPTIMIZER_STATES.get(t.optimizer, (2, None))
    per_sequence = activation_bytes_per_sequence(
        config,
        t.max_length,
        act_bytes,
        t.gradient_checkpointing,
        # Backward stops at the first trainable layer: frozen layers below it save nothing.
        grad_layers=m.trainable_layers if m.type == "freeze" else None,
        dropout_inputs=dropout_inputs,
        quadratic_attention=not on_gpu,
    )
    if m.type in ("prompt_tuning", "prefix_tuning"):
        per_sequence = int(per_sequence * (t.max_length + m.num_virtual_tokens) / t.max_length)
    breakdown = {
        "weights": weights,
        "trainable_params": trainable * param_bytes if adapter else 0,
        "gradients": trainable * param_bytes,
        "optimizer_state": int(trainable * states * (state_bytes or param_bytes)),
        "activations": per_sequence * t.batch_size,
    }
    fixed = sum(v for k, v in breakdown.items() if k != "activations")

    def with_overhead(subtotal: int) -> int:
        if on_gpu:
            return int(subtotal * (1 + GPU_FRAGMENTATION)) + CUDA_CONTEXT_BYTES
        return int(subtotal * (1 + CPU_SLACK))

    subtotal = sum(breakdown.values())
    total_bytes = with_overhead(subtotal)
    breakdown["overhead"] = total_bytes - subtotal
    if total_bytes <= FITS_SHARE * device_bytes:
        verdict = "fits"
    elif total_bytes <= device_bytes:
        verdict = "tight"
    else:
        verdict = "won't-fit"
    max_batch = 0
    while (
        with_overhead(fixed + per_sequence * (max_batch + 1)) <= FITS_SHARE * device_bytes
        and max_batch < 4096
    ):
        max_batch += 1
    if t.gradient_accumulation > 1:
        notes.append(f"gradient_accumulation = {t.gradient_accumulation} adds no memory")
    if verdict != "fits" and not t.gradient_checkpointing:
        notes.append("gradient_checkpointing = true would cut activations to about one layer's worth")
    return Estimate(
        total_bytes=total_bytes,
        device_bytes=int(device_bytes),
        device_label=label,
        verdict=verdict,
        breakdown=breakdown,
        trainable_params=trainable,
        total_params=total,
        batch_size=t.batch_size,
        max_length=t.max_length,
        max_batch_size=max_batch,
        dtype=dtype,
        method=m.type,
        notes=notes,
    )


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"


def render_estimate(estimate: Estimate, console: Any) -> None:
    """Print the estimate as a table that fits 80 columns (rich)."""
    from rich.table import Table

    colour = {"fits": "green", "tight": "yellow"}.get(estimate.verdict, "red")
    table = Table(title=f"Memory estimate: {estimate.method}, {estimate.dtype}", width=min(console.width, 80))
    table.add_column("part")
    table.add_column("size", justify="right")
    table.add_column("share", justify="right")
    for part, size in estimate.breakdown.items():
        share = size / estimate.total_bytes if estimate.total_bytes else 0.0
        table.add_row(part.replace("_", " "), _size(size), f"{share:.0%}")
    table.add_row("[bold]total[/]", f"[bold]{_size(estimate.total_bytes)}[/]", "")
    console.print(table)
    pct = 100 * estimate.trainable_params / max(estimate.total_params, 1)
    console.print(
        f"Trainable: {estimate.trainable_params:,} of {estimate.total_params:,} parameters ({pct:.3f}%)"
    )
    console.print(
        f"Device: {estimate.device_label}, {_size(estimate.device_bytes)} -> "
        f"[{colour}]{estimate.verdict}[/] at batch_size {estimate.batch_size}, "
        f"max_length {estimate.max_length}; largest batch that fits: {estimate.max_batch_size}",
        highlight=False,
    )
    for note in estimate.notes:
        console.print(f"  note: {note}", highlight=False)
