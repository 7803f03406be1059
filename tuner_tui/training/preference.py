"""Preference tuning ([model] task = 'preference') through TRL's trainers, in tuner's own loop.

TRL's DPOTrainer, KTOTrainer and the experimental ORPOTrainer and CPOTrainer (SimPO is CPO with
`loss_type='simpo'`) are subclasses of transformers' Trainer. They get the same TrainingArguments
as supervised runs (`training_values`), the same EventCallback (events, checkpoints committed
with COMPLETE.json, stop and save-now, pruning) and the same resume; TRL tokenizes the pairs with
the model's chat template and computes the loss and the reward figures, which the callback
writes into metric events as reward_accuracy, reward_margin, chosen_reward and rejected_reward.

The reference policy of the DPO-family losses is the starting policy itself. Given a PeftModel,
TRL keeps a frozen copy of its adapter as the reference (no second copy of the base weights), so
with `[preference] start_from` an SFT adapter is both where training starts and what it is held
to; a fresh LoRA starts as the identity, so there the reference is the base model (adapters
disabled, no copy). Full tuning gets TRL's copy of the whole model. ORPO and SimPO need no
reference.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuner_tui.errors import TunerError
from tuner_tui.recipe import Recipe
from tuner_tui.training.examples import PreparedData
from tuner_tui.training.start_from import reference_copied

DPO_LOSS_TYPES = {"dpo": "sigmoid", "ipo": "ipo"}
"""tuner's loss name -> DPOConfig.loss_type."""
# Keywords of tuner's TrainingArguments that TRL's preference trainers do not take as they are.
_SUPERVISED_ONLY = ("length_column_name", "label_names")


def prepare_preference_data(recipe: Recipe, tokenizer: Any, base_dir: Path | None = None) -> PreparedData:
    """Load, clean and split the data as every run does, then turn each split into the rows TRL
    takes: prompt/chosen/rejected (pairs), or prompt/completion/label (kto)."""
    from tuner_tui.data.pipeline import load_splits
    from tuner_tui.data.preference import to_trl_kto, to_trl_preference

    data = load_splits(recipe, base_dir, tokenizer)
    detection = data.detection
    parts: dict[str, Any] = {}
    for name, part in data.splits.items():
        if detection.format == "preference":  # unusable pairs went before the split (a recorded step)
            rows = to_trl_preference(part, detection)
            if recipe.preference.loss == "kto":
                from trl.data_utils import unpair_preference_dataset

                rows = unpair_preference_dataset(rows)
        else:
            if recipe.preference.loss != "kto":
                raise TunerError(
                    f"[preference] loss is '{recipe.preference.loss}', which needs a chosen and a "
                    f"rejected answer per prompt, but the data at {recipe.data.path} is 'kto' data "
                    "(single answers marked good or bad): set loss = 'kto'."
                )
            rows = to_trl_kto(part, detection)
        parts[name] = rows
    template = ""
    if isinstance(parts["train"][0]["prompt"] if len(parts["train"]) else "", list):
        # Conversational rows: TRL renders them with the tokenizer's chat template.
        from tuner_tui.modeling.loading import chat_template_origin, ensure_chat_template

        template = chat_template_origin(recipe.model, tokenizer)
        ensure_chat_template(tokenizer)
    return PreparedData(
        train=parts["train"],
        validation=parts.get("validation"),
        test=parts.get("test"),
        detection=detection,
        id2label=None,
        dropped_no_target=0,
        rows_loaded=data.rows_loaded,
        rows_cleaned=data.rows_cleaned,
        source=data,
        split_rows={name: len(part) for name, part in parts.items()},
        chat_template=template,
    )


def _drop_reference_copy(trainer: Any, recipe: Recipe) -> Any:
    adapters = getattr(trainer.model, "peft_config", None)
    if not reference_copied(recipe) and isinstance(adapters, dict) and "ref" in adapters:
        trainer.model.delete_adapter("ref")
        trainer.model.set_adapter("default")
    return trainer


def preference_trainer(
    recipe: Recipe,
    model: Any,
    tokenizer: Any,
    values: dict[str, Any],
    data: PreparedData,
    callbacks: list[Any],
) -> Any:
    """The TRL trainer for `[preference] loss`, on tuner's TrainingArguments `values`."""
    p = recipe.preference
    common = {k: v for k, v in values.items() if k not in _SUPERVISED_ONLY}
    common.update(
        beta=p.beta,
        max_length=recipe.training.max_length,
        # Bucketing by length reads tuner's own `length` column, which TRL's rows do not have.
        train_sampling_strategy="random",
    )
    datasets = {"train_dataset": data.train, "eval_dataset": data.validation}
    if p.loss in DPO_LOSS_TYPES:
        from trl import DPOConfig, DPOTrainer

        args = DPOConfig(**common, loss_type=[DPO_LOSS_TYPES[p.loss]], label_smoothing=p.label_smoothing)
        trainer = DPOTrainer(
            model=model, args=args, processing_class=tokenizer, callbacks=callbacks, **datasets
        )
        return _drop_reference_copy(trainer, recipe)
    if p.loss == "kto":
        from trl import KTOConfig, KTOTrainer

        # KTO's KL term pairs each example with its neighbours' completions in a fixed-order batch:
        # TRL requires the batches in data order (the split is shuffled, seeded, beforehand).
        kto_args = KTOConfig(
            **{**common, "train_sampling_strategy": "sequential"},
            desirable_weight=p.desirable_weight,
            undesirable_weight=p.undesirable_weight,
        )
        kto = KTOTrainer(
            model=model, args=kto_args, processing_class=tokenizer, callbacks=callbacks, **datasets
        )
        return _drop_reference_copy(kto, recipe)
    if p.loss == "orpo":
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

        orpo_args = ORPOConfig(**common)
        return ORPOTrainer(
            model=model, args=orpo_args, processing_class=tokenizer, callbacks=callbacks, **datasets
        )
    from trl.experimental.cpo import CPOConfig, CPOTrainer

    # SimPO: CPO's loss with length-normalised rewards and a target margin, and no SFT term.
    simpo_args = CPOConfig(**common, loss_type="simpo", cpo_alpha=0.0, simpo_gamma=p.simpo_gamma)
    return CPOTrainer(
        model=model, args=simpo_args, processing_class=tokenizer, callbacks=callbacks, **datasets
    )
