"""Estimate the training memory and time of a recipe before loading anything.

The model is built on the meta device (shapes only), wrapped by the recipe's method to count the
trainable parameters exactly: a classifier's head is sized for the labels in the data, and the
counts come from `loading.parameter_counts`, as the worker's do, so both report the same
numbers. Memory is the peak over the two moments of a step when most is alive, on top of what
lives for the whole run:

- always: weights in the training dtype (4-bit NF4 for qlora's linear layers), adapter weights
  (peft keeps them in float32), optimizer state (AdamW two moments per trainable parameter, 8-bit
  AdamW two bytes, SGD none);
- start of backward: every tensor saved for backward, per token per layer `ACT_PER_HIDDEN * hidden
  + ACT_PER_INTERMEDIATE * intermediate` elements plus adapter-dropout copies (attention scores
  only for the eager kernel: SDPA keeps none), plus the loss's float32 logits buffers
  (3 x tokens x vocab x 4 bytes). With gradient checkpointing only each layer's input is saved and
  the peak is the larger of the logits buffers and one recomputed layer (backward finishes the
  loss before it recomputes a layer). Gradients count here only with gradient accumulation
  (otherwise they are set to None after each step);
- optimizer step: all gradients plus the step's temporaries (foreach AdamW's sqrt(v)).

Overhead: CUDA context and allocator fragmentation on a GPU; allocator slack on the CPU.

Several processes (`world_size` = num_processes x nnodes, one device each): every process holds
its own `batch_size`, so activations stay as they are and the estimate is per device. What the
strategy shares out:

- ddp replicates weights and optimizer state, and its reducer keeps flat gradient buckets beside
  `param.grad` (the Trainer leaves `gradient_as_bucket_view` off): one more copy of the trainable
  gradients for the whole run;
- fsdp (FSDP2, full sharding, one unit per transformer block, as accelerate wraps it) divides
  weights, gradients and optimizer state by the world size and gathers one block's full weights at
  a time, while the unit holding the output head stays gathered from the end of forward into
  backward: at the start of backward one block plus the head are whole. With a 16-bit dtype,
  accelerate keeps trainable weights as float32 shards (master copies), so their weights,
  gradients and optimizer state count 4 bytes; qlora's 4-bit weights (uint8 storage) are left out
  of sharding;
- deepspeed (ZeRO stage 2) divides gradients and optimizer state, weights stay replicated; with a
  16-bit dtype its optimizer keeps a float32 master copy of the trainable weights (the ZeRO
  paper's 2 + 2/N + 12/N bytes per parameter for mixed-precision Adam).

Time is FLOPs per token (about 6N for full tuning, 4N for adapters on a frozen base, plus
attention and checkpointing's recompute) times the planned tokens, over a matmul throughput
measured on this device once per process, scaled by an assumed training efficiency, and divided
by the world size (linear scaling, an assumption: communication makes real runs slower).

`benchmarks/memory_estimate.py` measures real CPU training steps against this; the constants below
come from counting the tensors a Llama decoder layer saves for backward (see the comments).
"""

from __future__ import annotations

import copy
import functools
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tuner_tui.errors import TunerError
from tuner_tui.recipe import PAIR_LOSSES, REFERENCE_LOSSES, Recipe

# Elements saved for backward per token per decoder layer. Hidden-sized: each RMSNorm keeps its
# input, the normalised input and its output (the q/k/v or gate/up input) -> 6 for two; SDPA keeps
# q and k after RoPE, v and its output, whose transposed view is o_proj's input -> 4. Residual
# sums save nothing -> 10 (measured with saved_tensors_hooks on a Llama layer: 10.0).
# Intermediate-sized (SwiGLU MLP): gate and up projections, SiLU(gate) and the product fed
# to down_proj -> 4. Adapter dropout copies and eager attention scores are counted separately.
ACT_PER_HIDDEN = 10
ACT_PER_INTERMEDIATE = 4
# At the start of backward: cross-entropy's saved float32 log-softmax, the gradient arriving for it
# and the logits' gradient it produces (the logits themselves are freed with the model output).
LOGIT_COPIES = 3
# Parameter-sized temporaries an optimizer step allocates per trainable parameter: torch's foreach
# AdamW builds sqrt(v) for every parameter before the update; fused AdamW, SGD without momentum
# and bitsandbytes' 8-bit kernels update in place.
OPTIMIZER_STEP_TEMPORARIES = {"adamw_torch": 1.0, "adafactor": 0.1}
# NF4: half a byte per weight, plus double-quantized block constants (~0.127 bit per weight).
NF4_BYTES = 0.5 + 0.127 / 8
# Verdict thresholds as a share of device memory.
FITS_SHARE = 0.85
CUDA_CONTEXT_BYTES = 600 * 2**20
GPU_FRAGMENTATION = 0.10
CPU_SLACK = 0.05
# Share of the calibration matmul's FLOP/s that a training step sustains: the step also runs
# softmax, norms, the optimizer and Python between kernels, and its matmuls are smaller.
TRAINING_EFFICIENCY = {"cpu": 0.3, "cuda": 0.4}
# Square matmul size and minimum timed seconds for the device calibration.
CALIBRATION_SIZE = {"cpu": 1024, "cuda": 4096}
CALIBRATION_SECONDS = 0.2
# Rows sampled from the train split to measure the mean tokens per example.
TOKEN_SAMPLE_ROWS = 256
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
    # As the worker logs them (`loading.parameter_counts` of the wrapped model): the total holds
    # the base model plus the adapters and any trainable head copies.
    trainable_params: int
    total_params: int
    batch_size: int
    max_length: int
    max_batch_size: int  # largest per-device batch that fits (0: not even 1)
    dtype: str
    method: str
    notes: list[str]
    peak_phase: str = ""  # "start of backward" | "optimizer step": when the peak happens
    # Time estimate: seconds of training (None when the planned tokens are unknown), the tokens
    # and FLOPs it is based on, the calibrated device throughput, and the assumptions, in words.
    time_s: float | None = None
    planned_tokens: int = 0
    flops_per_token: float = 0.0
    device_flops: float = 0.0
    time_assumptions: list[str] = field(default_factory=list)
    # Training processes over all nodes (world size) and how they share the model: the sizes above
    # are for one of them (one device).
    processes: int = 1
    strategy: str = "ddp"

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


class _RecipeData:
    """The recipe's tokenizer and data splits, loaded once per estimate, on first use."""

    def __init__(self, recipe: Recipe, base_dir: Path | None):
        self.recipe, self.base_dir = recipe, base_dir
        self._loaded: tuple[Any, Any] | None = None
        self._error: TunerError | None = None

    def load(self) -> tuple[Any, Any]:
        """(tokenizer, `DataSplits`).

        Raises:
            TunerError: The tokenizer or the data cannot be loaded.
        """
        from tuner_tui.data.pipeline import load_splits
        from tuner_tui.modeling.loading import load_tokenizer

        if self._error is not None:
            raise self._error
        if self._loaded is None:
            try:
                tokenizer = load_tokenizer(self.recipe.model, self.base_dir)
                self._loaded = (tokenizer, load_splits(self.recipe, self.base_dir, tokenizer))
            except TunerError as exc:
                self._error = exc
                raise
        return self._loaded


def _size_classifier(config: Any, data: _RecipeData) -> str | None:
    """Give `config` as many labels as the data has (training sizes the head so); a note when
    the data cannot be read and the config's own label count is used instead."""
    from tuner_tui.data.pipeline import class_labels

    try:
        labels = class_labels(data.load()[1])
    except TunerError as exc:
        return (
            f"classifier head counted for the model config's {config.num_labels} labels: the data's "
            f"labels are unknown ({exc})"
        )
    if len(labels) >= 2:  # training refuses fewer; keep the config's head then
        config.num_labels = len(labels)
    return None


def _count_trainable(meta: Any, recipe: Recipe) -> tuple[int, int, int]:
    """(trainable parameters, all parameters, summed input widths of dropout-wrapped adapter
    layers) after the recipe's method wraps the meta model; the counts are the worker's."""
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
    trainable, total = parameter_counts(model)
    dropout_inputs = 0
    for module in model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        base = getattr(module, "base_layer", None)
        if isinstance(dropouts, torch.nn.ModuleDict) and isinstance(base, torch.nn.Linear):
            if any(isinstance(d, torch.nn.Dropout) for d in dropouts.values()):
                dropout_inputs += base.in_features
    return trainable, total, dropout_inputs


def _intermediate_copies(meta: Any, config: Any) -> int:
    """Intermediate-sized tensors a layer saves per token: two per linear that widens to the
    intermediate size (its output and the activation of it), so 4 for SwiGLU's gate and up, 2 for
    a GELU MLP."""
    import torch

    from tuner_tui.modeling.methods import layer_stack

    intermediate = _shape(config)[1]
    try:
        _, layers = layer_stack(meta)
    except Exception:  # no layer list found: assume the common gated MLP
        return ACT_PER_INTERMEDIATE
    widening = sum(
        1 for m in layers[0].modules() if isinstance(m, torch.nn.Linear) and m.out_features == intermediate
    )
    return 2 * widening if widening else ACT_PER_INTERMEDIATE


def _layer_linear_params(meta: Any) -> int:
    """Parameters in linear layers inside the repeated blocks (what 4-bit quantizes)."""
    import torch

    from tuner_tui.modeling.methods import layer_stack

    _, layers = layer_stack(meta)
    return sum(m.weight.numel() for m in layers.modules() if isinstance(m, torch.nn.Linear))


def _fsdp_unit_params(meta: Any, config: Any, total: int) -> tuple[int, int, int]:
    """(parameters of one transformer block, of which in linear layers, parameters of the output
    head): what FSDP gathers whole at the start of backward besides the shards.

    Without a layer list a block is (total - embeddings - head) / num_hidden_layers."""
    import torch

    from tuner_tui.modeling.methods import layer_stack

    head_module = meta.get_output_embeddings() if hasattr(meta, "get_output_embeddings") else None
    head_weight = getattr(head_module, "weight", None)
    head = int(head_weight.numel()) if head_weight is not None else 0
    try:
        _, layers = layer_stack(meta)
    except TunerError:
        hidden, _, layer_count, _, vocab = _shape(config)
        block = max(total - vocab * hidden - head, 0) // max(layer_count, 1)
        return block, block, head
    block_params = sum(p.numel() for p in layers[0].parameters())
    linear = sum(m.weight.numel() for m in layers[0].modules() if isinstance(m, torch.nn.Linear))
    return block_params, linear, head


def _shard(n: int | float, world: int) -> int:
    """One process's share of `n` bytes split over `world` processes (rounded up)."""
    return -(-int(n) // world)


def _shape(config: Any) -> tuple[int, int, int, int, int]:
    """(hidden, intermediate, layers, heads, vocab) of the text model, with common defaults."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    hidden = getattr(text, "hidden_size", 768)
    intermediate = getattr(text, "intermediate_size", None) or 4 * hidden
    layers = getattr(text, "num_hidden_layers", 12)
    heads = getattr(text, "num_attention_heads", max(hidden // 64, 1))
    vocab = getattr(text, "vocab_size", 32000)
    return hidden, intermediate, layers, heads, vocab


def logits_bytes_per_sequence(config: Any, max_length: int) -> int:
    """Peak bytes of the output head's buffers for one sequence: float32 logits x LOGIT_COPIES."""
    vocab = _shape(config)[4]
    return LOGIT_COPIES * max_length * vocab * 4


def activation_bytes_per_sequence(
    config: Any,
    max_length: int,
    act_bytes: int,
    checkpointing: bool,
    *,
    grad_layers: int | None = None,
    dropout_inputs: int = 0,
    quadratic_attention: bool = False,
    lm_head: bool = True,
    intermediate_copies: int = ACT_PER_INTERMEDIATE,
    attention_dropout: bool = False,
) -> int:
    """Peak bytes of activations (saved tensors plus the loss's logits buffers) for one sequence.

    Without checkpointing every layer's saved tensors are alive when backward starts at the loss,
    together with the logits buffers: the two add up. With checkpointing only each layer's input
    is saved; backward first runs through the loss (logits buffers alive), frees them, and only
    then recomputes one layer at a time, so the peak is the larger of the two, not their sum.

    Args:
        grad_layers: Layers that backward runs through (freeze: the trainable ones); None = all.
        dropout_inputs: Per layer, summed input widths of adapted linears with dropout: each keeps
            its dropped-out input (act_bytes) and a mask (1 byte).
        quadratic_attention: The attention kernel materialises scores and probabilities
            (2 x heads x length^2): true for the "eager" implementation, and for SDPA on the CPU
            with attention dropout (torch's CPU flash kernel has no dropout, so the math kernel
            runs); otherwise SDPA saves a log-sum-exp per row instead.
        attention_dropout: Attention dropout is on in training: its mask adds a byte per score.
        lm_head: The model ends in a vocabulary-sized head (causal LM); a classifier's logits are
            a few numbers per sequence.
        intermediate_copies: Intermediate-sized tensors saved per token per layer: 4 for a gated
            MLP (SwiGLU), 2 for a plain one (GELU: the up projection's output and the activation).
    """
    hidden, intermediate, layers, heads, _ = _shape(config)
    per_layer = max_length * (ACT_PER_HIDDEN * hidden + intermediate_copies * intermediate) * act_bytes
    per_layer += max_length * dropout_inputs // max(layers, 1) * (act_bytes + 1)
    if quadratic_attention:
        # Softmax output and the dropped-out probabilities (the same tensor without dropout, but
        # then the kernel is eager and saves the scores instead), plus dropout's 1-byte mask.
        per_layer += heads * max_length * max_length * (2 * act_bytes + (1 if attention_dropout else 0))
    saved_layers = layers if grad_layers is None else grad_layers
    logits = logits_bytes_per_sequence(config, max_length) if lm_head else 0
    if checkpointing:
        # The recomputed layer's backward also holds gradients of its widest outputs for a moment.
        recompute = per_layer + max_length * (2 * hidden + 2 * intermediate) * act_bytes
        return saved_layers * max_length * hidden * act_bytes + max(logits, recompute)
    return saved_layers * per_layer + logits


@functools.lru_cache(maxsize=8)
def measure_throughput(device: str, dtype: str) -> float:
    """FLOP/s of a square matmul on `device` ('cpu' | 'cuda') in `dtype`, measured once per process.

    A short calibration (about CALIBRATION_SECONDS): one warm-up, then repeated matmuls.
    """
    import torch

    n = CALIBRATION_SIZE.get(device, 1024)
    torch_dtype = getattr(torch, dtype)
    a = torch.randn(n, n, device=device).to(torch_dtype)
    b = torch.randn(n, n, device=device).to(torch_dtype)

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    torch.matmul(a, b)
    sync()
    reps, start = 0, time.perf_counter()
    while True:
        torch.matmul(a, b)
        reps += 1
        sync()
        elapsed = time.perf_counter() - start
        if elapsed >= CALIBRATION_SECONDS:
            return 2 * n**3 * reps / elapsed


def flops_per_token(
    config: Any,
    total_params: int,
    trainable_params: int,
    method: str,
    tokens_per_sequence: float,
    *,
    checkpointing: bool = False,
    trainable_layers: int = 0,
) -> float:
    """Training FLOPs (forward + backward) per token.

    A matmul with N weights costs 2N FLOPs per token forward. Backward costs 2N for the input
    gradients of every layer it runs through, plus 2N for the weight gradients of trainable
    weights: 6N for full tuning, about 4N plus the adapters' 6N_adapter for LoRA on a frozen
    base. Causal attention adds 2 x layers x hidden x length forward (QK^T and AV, half masked)
    and twice that backward. Checkpointing adds one more forward. Input embeddings are lookups.
    """
    hidden, _, layers, _, _ = _shape(config)
    forward = forward_flops_per_token(config, total_params, tokens_per_sequence)
    if method == "full":
        backward = 2 * forward
    elif method == "freeze":
        share = min(trainable_layers / max(layers, 1), 1.0)
        backward = share * forward + 2 * trainable_params
    else:  # adapters: input gradients through the whole frozen base, weight gradients for adapters
        forward += 2 * trainable_params
        backward = forward + 2 * trainable_params
    return forward * (2 if checkpointing else 1) + backward


def sequences_per_example(recipe: Recipe) -> int:
    """Sequences through the model per example: 2 for preference pairs (TRL passes chosen and
    rejected together: twice the activations and the tokens), else 1."""
    if recipe.model.task == "preference" and recipe.preference.loss in PAIR_LOSSES:
        return 2
    return 1


def forward_flops_per_token(config: Any, total_params: int, tokens_per_sequence: float) -> float:
    """One forward pass per token: 2 FLOPs per matmul weight (embeddings are lookups) plus causal
    attention. Also what a frozen preference reference costs, as it runs forward only."""
    hidden, _, layers, _, vocab = _shape(config)
    matmul = max(total_params - vocab * hidden, 1)
    return 2 * matmul + 2 * layers * hidden * tokens_per_sequence


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _train_rows_and_mean_tokens(recipe: Recipe, data: _RecipeData) -> tuple[int, float]:
    """Train-split rows and the mean tokens per example over a sample (text fields tokenized,
    chat-template tokens ignored, capped at max_length)."""
    tokenizer, splits = data.load()
    train = splits.splits["train"]
    sample = train.select(range(min(len(train), TOKEN_SAMPLE_ROWS)))
    lengths = [
        min(len(tokenizer(" ".join(_strings(row)))["input_ids"]), recipe.training.max_length)
        for row in sample
    ]
    return len(train), sum(lengths) / max(len(lengths), 1)


def planned_tokens(
    recipe: Recipe, base_dir: Path | None = None, data: _RecipeData | None = None
) -> tuple[int, float, str]:
    """(tokens the run processes, tokens per sequence, how that was counted).

    max_steps > 0: steps x sequences per step x max_length (an upper bound: full-length rows).
    Otherwise epochs x train rows x mean tokens per example, the mean from a sample of the data.

    Raises:
        TunerError: The data or tokenizer cannot be loaded (epochs-based recipes only).
    """
    t = recipe.training
    per_step = t.batch_size * t.gradient_accumulation * t.world_size
    if t.max_steps > 0:
        tokens = t.max_steps * per_step * t.max_length
        across = (
            f" ({per_step // t.world_size} on each of {t.world_size} processes)" if t.world_size > 1 else ""
        )
        return (
            tokens,
            float(t.max_length),
            (
                f"{t.max_steps} steps x {per_step} sequences{across} x max_length {t.max_length} "
                "(upper bound: every row full length)"
            ),
        )
    rows, mean = _train_rows_and_mean_tokens(recipe, data or _RecipeData(recipe, base_dir))
    how = f"{t.epochs:g} epochs x {rows} train rows x {mean:.0f} mean tokens (sampled)"
    if not t.packing:
        how += "; padding to each batch's longest row adds compute not counted here"
    return int(t.epochs * rows * mean), mean, how


def estimate_time(
    recipe: Recipe,
    config: Any,
    total_params: int,
    trainable_params: int,
    dtype: str,
    on_gpu: bool,
    base_dir: Path | None = None,
    data: _RecipeData | None = None,
) -> tuple[float | None, int, float, float, list[str]]:
    """(seconds or None, planned tokens, FLOPs per token, device FLOP/s, assumptions in words).

    `total_params` is the base model's (what the matmuls run through), `trainable_params` the
    adapters' or the trained weights'."""
    device = "cuda" if on_gpu and _cuda_available() else "cpu"
    assumptions: list[str] = []
    if on_gpu and device == "cpu":
        assumptions.append("no CUDA GPU here: calibrated on this CPU, a GPU run will be faster")
    try:
        tokens, per_sequence, how = planned_tokens(recipe, base_dir, data)
    except TunerError as exc:
        return None, 0, 0.0, 0.0, [f"planned tokens unknown ({exc}); set max_steps for an estimate"]
    assumptions.append(f"tokens: {how}")
    t, m = recipe.training, recipe.method
    per_token = flops_per_token(
        config,
        total_params,
        trainable_params,
        m.type,
        per_sequence,
        checkpointing=t.gradient_checkpointing,
        trainable_layers=m.trainable_layers,
    )
    if recipe.model.task == "preference":
        loss = recipe.preference.loss
        sequences = sequences_per_example(recipe)
        if sequences > 1:
            tokens *= sequences
            assumptions.append("preference pairs: the chosen and the rejected answer both train (x2 tokens)")
        if loss in REFERENCE_LOSSES:
            reference = forward_flops_per_token(config, total_params, per_sequence)
            per_token += reference
            assumptions.append(
                f"the frozen reference runs a forward pass too (+{reference / 1e9:.2f} GFLOP per token)"
            )
    calibrated = measure_throughput(device, dtype if device == "cuda" else "float32")
    efficiency = TRAINING_EFFICIENCY[device]
    assumptions.append(
        f"{per_token / 1e9:.2f} GFLOP per token ({'6N' if m.type == 'full' else 'about 4N + adapters'}"
        f"{' + recompute' if t.gradient_checkpointing else ''}, N = {total_params:,}, plus attention)"
    )
    assumptions.append(
        f"{device} sustains {efficiency:.0%} of a measured {calibrated / 1e9:.0f} GFLOP/s {dtype} matmul"
    )
    world = max(t.world_size, 1)
    if world > 1:
        exchange = {"ddp": "gradient all-reduce", "fsdp": "weight gathers and gradient reduce-scatter"}
        assumptions.append(
            f"{world} processes ({t.strategy}) share the tokens with linear scaling, an assumption: "
            f"{exchange.get(t.strategy, 'gradient exchange')} and waiting for the slowest process "
            "make real runs slower, most across nodes"
        )
    seconds = tokens * per_token / (calibrated * efficiency * world)
    return seconds, tokens, per_token, calibrated, assumptions


def _cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # a broken driver reads as no GPU
        return False


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
    data = _RecipeData(recipe, base_dir)
    notes: list[str] = []
    if recipe.model.task == "sequence_classification":
        note = _size_classifier(config, data)
        if note:
            notes.append(note)
    meta = meta_model(config, recipe.model.task, recipe.model.trust_remote_code)
    # The base model's parameters size the weights and the FLOPs; the wrapped model's count
    # (adapters and trainable head copies included) is what the estimate reports, as training does.
    total = count_parameters(meta)
    t, m = recipe.training, recipe.method

    quantized = 0
    if m.type == "qlora":
        quantized = _layer_linear_params(meta)
        weights = int(quantized * NF4_BYTES + (total - quantized) * act_bytes)
        notes.append("qlora: linear layers counted as 4-bit NF4 with double quantization")
    else:
        weights = total * act_bytes
    trainable, wrapped_total, dropout_inputs = _count_trainable(copy.deepcopy(meta), recipe)
    adapter = m.type not in ("full", "freeze")
    param_bytes = 4 if adapter else act_bytes  # peft keeps adapter weights in float32
    states, state_bytes = OPTIMIZER_STATES.get(t.optimizer, (2, None))
    attention_kernel = getattr(meta.config, "_attn_implementation", None)
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    attention_dropout = bool(
        getattr(text_config, "attention_dropout", None)
        or getattr(text_config, "attention_probs_dropout_prob", 0)
    )
    per_sequence = activation_bytes_per_sequence(
        config,
        t.max_length,
        act_bytes,
        t.gradient_checkpointing,
        # Backward stops at the first trainable layer: frozen layers below it save nothing.
        grad_layers=m.trainable_layers if m.type == "freeze" else None,
        dropout_inputs=dropout_inputs,
        quadratic_attention=attention_kernel == "eager" or (not on_gpu and attention_dropout),
        attention_dropout=attention_dropout,
        lm_head=recipe.model.task in ("causal_lm", "preference"),
        intermediate_copies=_intermediate_copies(meta, config),
    )
    if m.type in ("prompt_tuning", "prefix_tuning"):
        per_sequence = int(per_sequence * (t.max_length + m.num_virtual_tokens) / t.max_length)
    sequences = sequences_per_example(recipe)
    reference = 0
    if recipe.model.task == "preference":
        loss = recipe.preference.loss
        if loss in REFERENCE_LOSSES:
            # The frozen reference: the base model itself for a fresh identity-start adapter (no
            # copy), else TRL's copy of the adapter, or of the whole model for full tuning; its
            # forward pass runs without gradients, so it saves no activations.
            from tuner_tui.training.start_from import reference_copied

            if reference_copied(recipe):
                reference = trainable * param_bytes if adapter else weights
        said = ["chosen and rejected pass together (2 sequences per example)"] if sequences == 2 else []
        if reference:
            said.append(f"the frozen reference ({_size(reference)}) adds a forward pass per batch")
        elif loss in REFERENCE_LOSSES:
            said.append("the reference is the base model (adapters off): a forward pass per batch, no copy")
        notes.append(f"preference ({loss}): " + "; ".join(said or ["no reference model"]))
    per_sequence *= sequences
    gradients = trainable * param_bytes
    step_temporaries = int(trainable * OPTIMIZER_STEP_TEMPORARIES.get(t.optimizer, 0) * param_bytes)
    # Alive for the whole run: weights, adapter weights, optimizer moments.
    persistent = {
        "weights": weights,
        "trainable_params": trainable * param_bytes if adapter else 0,
        "optimizer_state": int(trainable * states * (state_bytes or param_bytes)),
    }
    if reference:
        persistent["reference"] = reference
    world = t.world_size
    if world > 1 and t.strategy == "ddp":
        # The reducer's flat buckets (parameter dtype) exist from wrapping to the end of the run.
        persistent["ddp_buckets"] = gradients
        notes.append(
            f"ddp: each of the {world} processes holds the whole model; DDP's gradient buckets add one "
            f"more copy of the trainable gradients ({_size(gradients)})"
        )
    elif world > 1 and t.strategy == "fsdp":
        # accelerate upcasts 16-bit trainable weights to float32 shards under mixed precision.
        master = 4 if not adapter and act_bytes == 2 else param_bytes
        block, block_linear, head = _fsdp_unit_params(meta, config, total)
        replicated = 0
        if m.type == "qlora":  # uint8-stored 4-bit weights are ignored by fully_shard
            replicated = int(quantized * NF4_BYTES)
            block -= block_linear
        full_weights = weights - replicated + (trainable * (master - act_bytes) if not adapter else 0)
        persistent = {
            "weights": replicated + _shard(full_weights, world),
            "trainable_params": _shard(persistent["trainable_params"], world),
            "optimizer_state": _shard(trainable * states * (state_bytes or master), world),
            # Gathered in the compute dtype: one block, plus the head's unit kept from forward.
            "fsdp_gathered": (block + head) * act_bytes,
        }
        gradients = _shard(trainable * master, world)
        step_temporaries = _shard(trainable * OPTIMIZER_STEP_TEMPORARIES.get(t.optimizer, 0) * master, world)
        notes.append(
            f"fsdp: weights, gradients and optimizer state are 1/{world} shards; fsdp gathered is one "
            f"transformer block ({block:,} parameters) plus the output head ({head:,}), whole at the "
            "start of backward (prefetching the next block can add one more)"
        )
        if master != param_bytes:
            notes.append("fsdp with a 16-bit dtype keeps trainable weights as float32 shards (master copy)")
        if replicated:
            notes.append("fsdp leaves qlora's 4-bit weights (uint8 storage) unsharded on every device")
    elif world > 1:  # deepspeed: ZeRO stage 2
        # 16-bit: the optimizer works on float32 master partitions (moments in float32 too).
        mixed = act_bytes == 2
        optimizer = trainable * (
            states * (state_bytes or (4 if mixed else param_bytes)) + (4 if mixed else 0)
        )
        persistent["optimizer_state"] = _shard(optimizer, world)
        gradients = _shard(gradients, world)
        step_temporaries = _shard(step_temporaries, world)
        notes.append(
            f"deepspeed ZeRO-2: gradients and optimizer state are 1/{world} shards, weights are "
            "replicated; its communication buckets are not counted"
            + ("; the optimizer state holds float32 master weights and moments" if mixed else "")
        )
    # Gradients are set to None after each optimizer step, so with one forward per step they do not
    # coexist with the activations; with accumulation they carry over into the next forward.
    grads_in_backward = gradients if t.gradient_accumulation > 1 else 0

    def phases(batch: int) -> tuple[str, dict[str, int]]:
        backward = {"gradients": grads_in_backward, "activations": per_sequence * batch}
        step = {"gradients": gradients, "activations": 0, "optimizer_step": step_temporaries}
        if sum(step.values()) > sum(backward.values()):
            return "optimizer step", {**persistent, **step}
        return "start of backward", {**persistent, **backward, "optimizer_step": 0}

    def with_overhead(subtotal: int) -> int:
        if on_gpu:
            return int(subtotal * (1 + GPU_FRAGMENTATION)) + CUDA_CONTEXT_BYTES
        return int(subtotal * (1 + CPU_SLACK))

    peak_phase, breakdown = phases(t.batch_size)
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
        with_overhead(sum(phases(max_batch + 1)[1].values())) <= FITS_SHARE * device_bytes
        and max_batch < 4096
    ):
        max_batch += 1
    notes.append(
        f"peak at the {peak_phase}: "
        + (
            (
                "all saved activations and the loss's logits buffers"
                if recipe.model.task in ("causal_lm", "preference")
                else "all saved activations"
            )
            if peak_phase == "start of backward"
            else "gradients, optimizer state and the step's temporaries"
        )
    )
    if t.gradient_accumulation > 1:
        notes.append(f"gradient_accumulation = {t.gradient_accumulation} adds no memory")
    if verdict != "fits" and not t.gradient_checkpointing:
        notes.append("gradient_checkpointing = true would cut activations to about one layer's worth")
    time_s, tokens, per_token, device_flops, assumptions = estimate_time(
        recipe, config, total, trainable, dtype, on_gpu, base_dir, data
    )
    return Estimate(
        total_bytes=total_bytes,
        device_bytes=int(device_bytes),
        device_label=label,
        verdict=verdict,
        breakdown=breakdown,
        trainable_params=trainable,
        total_params=wrapped_total,
        batch_size=t.batch_size,
        max_length=t.max_length,
        max_batch_size=max_batch,
        dtype=dtype,
        method=m.type,
        notes=notes,
        peak_phase=peak_phase,
        time_s=time_s,
        planned_tokens=tokens,
        flops_per_token=per_token,
        device_flops=device_flops,
        time_assumptions=assumptions,
        processes=world,
        strategy=t.strategy,
    )


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"
