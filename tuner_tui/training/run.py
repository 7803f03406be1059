"""Training glue: recipe -> TrainingArguments + Trainer (+ PEFT) -> adapter in the run directory.

We use transformers' Trainer rather than TRL's SFTTrainer: Trainer already gives checkpoint
resume with optimizer, scheduler, RNG and data-order state, and the one thing SFTTrainer would add
(completion-only masking) is done in `examples.py` so it also covers sharegpt/alpaca layouts and
sequence classification with the same loop. One fewer dependency, one code path.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuner_tui.errors import TunerError
from tuner_tui.modeling.loading import load_model, load_tokenizer, parameter_counts
from tuner_tui.modeling.methods import build_method
from tuner_tui.recipe import Recipe
from tuner_tui.runs.events import EventWriter
from tuner_tui.runs.layout import RunDir
from tuner_tui.runs.ranks import SINGLE, Rank, check_strategy, local_main_first
from tuner_tui.training.callback import EventCallback
from tuner_tui.training.examples import (
    LENGTH_COLUMN,
    PreparedData,
    make_collator,
    prepare_data,
)
from tuner_tui.training.preference import preference_trainer, prepare_preference_data
from tuner_tui.training.trackers import check_trackers, tracker_arguments, tracker_environment


def resolve_device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise TunerError(
            "[training] device = 'cuda' but no CUDA GPU is visible (torch.cuda.is_available() is "
            "False; CPU-only torch build or no driver). Set device = 'auto' or 'cpu'."
        )
    if requested == "mps" and not torch.backends.mps.is_available():
        raise TunerError("[training] device = 'mps' but Apple MPS is not available. Use 'auto'.")
    return requested


def strategy_arguments(recipe: Recipe, no_split_modules: list[str] | None = None) -> dict[str, Any]:
    """TrainingArguments for the recipe's multi-process strategy (none for one process or DDP,
    which the Trainer sets up by itself under torchrun).

    Raises:
        TunerError: strategy = 'deepspeed' without the deepspeed package.
    """
    t = recipe.training
    if t.world_size == 1:
        return {}
    if t.strategy == "ddp":
        # Every method here uses all of its trainable weights in each forward pass, so DDP's search
        # for unused ones (the Trainer's default for PEFT models) would only cost a graph traversal
        # per step, and it does not mix with reentrant activation checkpointing.
        return {"ddp_find_unused_parameters": False}
    if t.strategy == "fsdp":
        config: dict[str, Any] = {
            "version": 2,
            "reshard_after_forward": True,  # full sharding: gathered per layer, freed after use
            "state_dict_type": "FULL_STATE_DICT",
            "cpu_ram_efficient_loading": False,
        }
        if no_split_modules:
            config["auto_wrap_policy"] = "TRANSFORMER_BASED_WRAP"
            config["transformer_layer_cls_to_wrap"] = list(no_split_modules)
        return {"fsdp": True, "fsdp_config": config}
    check_strategy(t.strategy)
    return {
        "deepspeed": {
            "zero_optimization": {
                "stage": 2,
                "overlap_comm": True,
                "contiguous_gradients": True,
                # DeepSpeed's default buckets hold 5e8 elements each; "auto" sizes them to the model.
                "reduce_bucket_size": "auto",
                "allgather_bucket_size": 2e8,
            },
            "train_micro_batch_size_per_gpu": "auto",
            "gradient_accumulation_steps": "auto",
            "gradient_clipping": "auto",
            "bf16": {"enabled": "auto"},
            "fp16": {"enabled": "auto"},
        }
    }


def check_strategy_device(recipe: Recipe, device: str) -> None:
    """accelerate shards with FSDP on accelerators only; on CPU it would quietly run DDP instead.

    Raises:
        TunerError: strategy 'fsdp' or 'deepspeed' with several processes on CPU.
    """
    t = recipe.training
    if t.world_size > 1 and t.strategy != "ddp" and device == "cpu":
        raise TunerError(
            f"[training] strategy = '{t.strategy}' needs GPUs: accelerate shards weights only on "
            "accelerators, and on CPU it would silently fall back to replicating them (DDP). Set "
            "strategy = 'ddp' for several CPU processes, or run on a machine with GPUs."
        )


def training_arguments(
    recipe: Recipe,
    run: RunDir,
    device: str,
    has_validation: bool,
    no_split_modules: list[str] | None = None,
) -> Any:
    from transformers import TrainingArguments

    return TrainingArguments(**training_values(recipe, run, device, has_validation, no_split_modules))


def _checkpointing_keyword() -> str:
    """transformers 5.23 renamed TrainingArguments' gradient_checkpointing to
    activation_checkpointing (the old name warns); older 5.x (e.g. 5.17 on GPU images) knows only
    the old one."""
    from transformers import TrainingArguments

    fields = TrainingArguments.__dataclass_fields__
    return "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"


def training_values(
    recipe: Recipe,
    run: RunDir,
    device: str,
    has_validation: bool,
    no_split_modules: list[str] | None = None,
    primary: bool = True,
) -> dict[str, Any]:
    """The TrainingArguments of a run, as keywords: TRL's preference configs (subclasses of
    TrainingArguments) are built from the same ones, so every trainer runs the same loop.

    `primary`: this process is global rank 0, the only one that reports to the trackers."""
    t = recipe.training
    dtype = recipe.model.dtype
    if dtype == "auto":
        from tuner_tui.modeling.loading import torch_dtype

        dtype = str(torch_dtype("auto", device)).removeprefix("torch.")
    if has_validation:
        eval_kwargs = (
            {"eval_strategy": "steps", "eval_steps": t.eval_every_steps}
            if t.eval_every_steps
            else {"eval_strategy": "epoch"}
        )
    else:
        eval_kwargs = {"eval_strategy": "no"}
    return dict(
        output_dir=str(run.checkpoints),
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.gradient_accumulation,
        num_train_epochs=t.epochs,
        max_steps=t.max_steps if t.max_steps > 0 else -1,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler,
        warmup_steps=t.warmup_ratio,  # a float below 1 is a ratio of the total steps
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        optim=t.optimizer,
        # Bucketing: batches of similar length (shuffled in mega-batches), lengths from our column.
        train_sampling_strategy="group_by_length" if t.bucket_by_length else "random",
        length_column_name=LENGTH_COLUMN,
        **{_checkpointing_keyword(): t.gradient_checkpointing},
        logging_strategy="steps",
        logging_steps=t.log_every_steps,
        logging_nan_inf_filter=False,
        save_strategy="steps",
        save_steps=t.save_every_steps,
        save_total_limit=None,  # pruning is ours: only complete checkpoints count
        seed=recipe.project.seed,
        data_seed=recipe.project.seed,
        # On CPU, transformers' full determinism (torch's deterministic algorithms) makes re-runs
        # bit-identical; CUDA runs stay seeded but use the fast kernels (not checked on a GPU yet).
        full_determinism=device == "cpu" and t.deterministic,
        use_cpu=device == "cpu",
        bf16=dtype == "bfloat16",
        fp16=dtype == "float16",
        **tracker_arguments(t.report_to, recipe.project.name, run.run_id, primary),
        disable_tqdm=True,
        include_num_input_tokens_seen="non_padding",
        remove_unused_columns=False,
        label_names=["labels"],
        dataloader_num_workers=0,
        **eval_kwargs,
        **strategy_arguments(recipe, no_split_modules),
    )


@dataclass
class TrainingOutcome:
    model: Any
    tokenizer: Any
    data: PreparedData
    global_step: int
    stopped: bool


def train(
    recipe: Recipe,
    run: RunDir,
    events: EventWriter,
    stop: threading.Event,
    resume_from: Path | None = None,
    on_data: Callable[[PreparedData], None] | None = None,
    rank: Rank = SINGLE,
) -> TrainingOutcome:
    """Train per the recipe; writes checkpoints, and the adapter unless stopped early.

    `on_data` sees the prepared data before the model loads (the worker records or checks the
    data fingerprint there)."""
    from transformers import PrinterCallback, set_seed

    device = resolve_device(recipe.training.device)
    check_strategy_device(recipe, device)
    if rank.primary:  # before any model loads: a missing tracker package is named at once
        check_trackers(recipe.training.report_to)
    set_seed(recipe.project.seed, deterministic=device == "cpu" and recipe.training.deterministic)
    # One rank per node fills the caches (datasets' Arrow files, transcoded copies) before the rest.
    with local_main_first(rank):
        tokenizer = load_tokenizer(recipe.model)
        preference = recipe.model.task == "preference"
        data = prepare_preference_data(recipe, tokenizer) if preference else prepare_data(recipe, tokenizer)
    if data.source is not None:
        for step in data.source.cleaning:
            events.emit(
                "log",
                level="warning" if step.details.get("automatic") else "info",
                message=step.message(),
                cleaning=step.to_json(),
            )
    if on_data is not None:
        on_data(data)
    events.emit(
        "log",
        level="info",
        message=data.summary(),
        rows_loaded=data.rows_loaded,
        rows_cleaned=data.rows_cleaned,
        splits=data.split_rows,
        dropped=data.dropped,
    )
    if data.chat_template:
        events.emit(
            "log",
            level="info",
            message=f"Chat template: {data.chat_template}.",
            chat_template=data.chat_template,
        )
    base = load_model(
        recipe.model,
        device=device,
        num_labels=len(data.id2label) if data.id2label else None,
        id2label=data.id2label,
        quantize_4bit=recipe.method.type == "qlora",
    )
    if recipe.model.task == "sequence_classification":
        # Classification heads average their loss over the batch, and several (BERT's among them)
        # ignore `num_items_in_batch`. A model that "accepts loss kwargs" would have the Trainer
        # skip dividing by gradient_accumulation and multiply by the process count, assuming the
        # model did both: BERT gradients came out 2x with 2 processes. Said plainly, it does not.
        base.accepts_loss_kwargs = False
    if recipe.training.gradient_checkpointing:
        base.enable_input_require_grads()
    values = training_values(
        recipe,
        run,
        device,
        data.validation is not None,
        getattr(base, "_no_split_modules", None),
        primary=rank.primary,
    )
    if preference and recipe.preference.start_from:
        setup = start_from_adapter(base, recipe)
    else:
        setup = build_method(
            base,
            recipe.method,
            recipe.model.task,
            total_steps=planned_steps(recipe, len(data.train)),
            gradient_checkpointing=recipe.training.gradient_checkpointing,
        )
    model = setup.model
    trainable, total = parameter_counts(model)
    events.emit(
        "log",
        level="info",
        message=f"Model: {trainable:,} of {total:,} parameters train ({100 * trainable / total:.3f}%) "
        f"with {recipe.method.type} on {device}." + "".join(f" {note}." for note in setup.notes),
        trainable_params=trainable,
        total_params=total,
        device=device,
        method=recipe.method.type,
    )
    callback = EventCallback(
        run,
        events,
        stop,
        recipe.training.keep_checkpoints,
        rank,
        verified=[resume_from] if resume_from else [],
    )
    with tracker_environment(recipe.training.report_to, run.root, rank.primary):
        trainer = _trainer(recipe, model, tokenizer, values, data, [callback, *setup.callbacks])
        trainer.remove_callback(PrinterCallback)
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    if not callback.stop_requested:
        if recipe.training.world_size > 1 and recipe.training.strategy != "ddp":
            # Sharded weights: the Trainer gathers them (every rank takes part), rank 0 writes.
            trainer.save_model(str(run.adapter))
            if rank.primary:
                save_labels(data, run.adapter)
        elif rank.primary:
            save_adapter(model, tokenizer, data, run.adapter)
    return TrainingOutcome(model, tokenizer, data, trainer.state.global_step, callback.stop_requested)


def _trainer(
    recipe: Recipe,
    model: Any,
    tokenizer: Any,
    values: dict[str, Any],
    data: PreparedData,
    callbacks: list[Any],
) -> Any:
    """The Trainer for the recipe's task (TRL's for preference), built from `values`. Built inside
    `tracker_environment`: the trackers' callbacks read where to write when they are created."""
    if recipe.model.task == "preference":
        return preference_trainer(recipe, model, tokenizer, values, data, callbacks)
    from transformers import Trainer, TrainingArguments

    return Trainer(
        model=model,
        args=TrainingArguments(**values),
        train_dataset=data.train,
        eval_dataset=data.validation,
        data_collator=make_collator(recipe, tokenizer),
        processing_class=tokenizer,
        callbacks=callbacks,
        compute_metrics=classification_accuracy if data.id2label else None,
    )


def start_from_adapter(base: Any, recipe: Recipe) -> Any:
    """The adapter of `[preference] start_from` (a run directory, or an adapter folder) on the
    base model, trainable: preference tuning continues from it."""
    from peft import PeftModel

    from tuner_tui.modeling.methods import MethodSetup
    from tuner_tui.training.start_from import adapter_folder

    folder = adapter_folder(recipe.preference.start_from)
    model = PeftModel.from_pretrained(base, str(folder), is_trainable=True)
    return MethodSetup(model=model, notes=[f"starting from the adapter in {folder}"])


def planned_steps(recipe: Recipe, train_rows: int) -> int:
    """Optimizer steps the Trainer will run (max_steps, or epochs over the batches), as it counts them."""
    import math

    t = recipe.training
    if t.max_steps > 0:
        return t.max_steps
    batches = math.ceil(train_rows / (t.batch_size * t.world_size))
    per_epoch = max(batches // t.gradient_accumulation, 1)
    return math.ceil(t.epochs * per_epoch)


def classification_accuracy(prediction: Any) -> dict[str, float]:
    """Validation accuracy during training (the full metric set runs in the evaluation phase)."""
    import numpy as np

    logits = (
        prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    )
    return {"accuracy": float((np.argmax(logits, axis=-1) == prediction.label_ids).mean())}


def save_adapter(model: Any, tokenizer: Any, data: PreparedData, path: Path) -> None:
    """Adapter (or full model) weights as safetensors, the tokenizer, and the label mapping."""
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "use_cache"):
        config.use_cache = True  # build_method turned it off for training; inference wants it
    adapters = getattr(model, "peft_config", None)
    if isinstance(adapters, dict) and len(adapters) > 1:
        # DPO's frozen reference is a second adapter ("ref", TRL's copy of the starting one):
        # the run's adapter is the trained one alone.
        model.save_pretrained(str(path), safe_serialization=True, selected_adapters=["default"])
    else:
        model.save_pretrained(str(path), safe_serialization=True)
    tokenizer.save_pretrained(str(path))
    save_labels(data, path)


def save_labels(data: PreparedData, path: Path) -> None:
    if data.id2label:
        labels = {"id2label": {str(k): v for k, v in data.id2label.items()}}
        (path / "labels.json").write_text(json.dumps(labels, indent=2) + "\n", encoding="utf-8")
