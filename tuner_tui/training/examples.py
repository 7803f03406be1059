"""Turn the recipe's data into tokenized train/validation/test splits.

Instruction and chat formats learn only the assistant's tokens when `completion_only_loss` is on:
the conversation is rendered with the chat template once, the character span of each assistant
turn is found by rendering the conversation up to that turn, and tokens whose offsets fall inside
a span keep their labels; every other label is -100.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner_tui.data.formats import Detection, to_messages
from tuner_tui.data.pipeline import DataSplits, class_labels, load_splits
from tuner_tui.errors import TunerError
from tuner_tui.modeling.loading import backend_state_kept
from tuner_tui.recipe import Recipe

if TYPE_CHECKING:
    from datasets import Dataset

IGNORE = -100
# Token count per example, stored when `[training] bucket_by_length` so transformers'
# LengthGroupedSampler reads lengths instead of walking every row's input_ids.
LENGTH_COLUMN = "length"


@dataclass
class PreparedData:
    train: Dataset
    validation: Dataset | None
    test: Dataset | None
    detection: Detection
    id2label: dict[int, str] | None
    dropped_no_target: int  # train examples dropped: no target token left within max_length
    rows_loaded: int  # rows in the data file(s)
    rows_cleaned: int  # rows left after [[data.cleaning]]: what the splits share out
    # Where the chat template came from ('tokenizer', 'recipe:chatml', 'fallback:alpaca'); empty
    # when the data format renders no conversation (text, prompt_completion, classification).
    chat_template: str = ""
    source: DataSplits | None = None  # how the rows were loaded, cleaned and split
    # Rows per split before tokenization (they sum to rows_cleaned), and per split the examples
    # tokenization dropped (causal LM: no target token within max_length).
    split_rows: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        """One line for the run's log: rows loaded, rows after cleaning, the split sizes (which sum
        to the cleaned rows) and what tokenization dropped."""
        rows = f"{self.rows_loaded} rows"
        if self.source is not None and self.source.cleaning:
            rows += f" loaded, {self.rows_cleaned} after cleaning,"
        splits = ", ".join(
            f"{name} {self.split_rows.get(name, 0)}" for name in ("train", "validation", "test")
        )
        line = f"Data: {rows} as '{self.detection.format}' -> {splits}"
        dropped = [
            f"{self.dropped[name]} {name}"
            for name in ("train", "validation", "test")
            if self.dropped.get(name)
        ]
        if dropped:
            plural = "s" if sum(self.dropped.values()) > 1 else ""
            line += f"; {' and '.join(dropped)} example{plural} dropped (response beyond max_length)"
        return line


def _assistant_spans(
    tokenizer: Any, messages: list[dict[str, str]], full: str
) -> list[tuple[int, int]] | None:
    """Character spans of assistant turns in `full`; None if the template is not prefix-stable."""
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = (
            tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True)
            if i
            else ""
        )
        through = tokenizer.apply_chat_template(messages[: i + 1], tokenize=False)
        if not (full.startswith(before) and full.startswith(through)):
            return None
        spans.append((len(before), len(through)))
    return spans


def encode_text_with_spans(
    tokenizer: Any,
    text: str,
    spans: list[tuple[int, int]] | None,
    max_length: int,
    add_special_tokens: bool,
) -> dict[str, list[int]]:
    """Tokenize `text`; labels are kept only for tokens inside `spans` (all tokens when None)."""
    encoded = tokenizer(
        text,
        add_special_tokens=add_special_tokens,
        truncation=True,
        max_length=max_length,
        return_offsets_mapping=spans is not None,
    )
    input_ids = encoded["input_ids"]
    if spans is None:
        labels = list(input_ids)
    else:
        labels = [
            token if end > start and any(s <= start < e for s, e in spans) else IGNORE
            for token, (start, end) in zip(input_ids, encoded["offset_mapping"], strict=True)
        ]
    return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": labels}


def encode_causal(
    row: Mapping[str, Any],
    detection: Detection,
    tokenizer: Any,
    recipe: Recipe,
    fallback_template: bool,
) -> dict[str, list[int]]:
    max_length = recipe.training.max_length
    completion_only = recipe.training.completion_only_loss
    eos = tokenizer.eos_token or ""
    f = detection.fields
    if detection.format == "text":
        return encode_text_with_spans(tokenizer, str(row[f["text"]] or "") + eos, None, max_length, True)
    if detection.format == "prompt_completion":
        prompt, completion = str(row[f["prompt"]] or ""), str(row[f["completion"]] or "")
        full = prompt + completion + eos
        spans = [(len(prompt), len(full))] if completion_only else None
        return encode_text_with_spans(tokenizer, full, spans, max_length, True)
    messages = to_messages(row, detection)
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    spans = _assistant_spans(tokenizer, messages, full) if completion_only else None
    if completion_only and spans is None:
        raise TunerError(
            "The chat template renders a conversation differently from its prefixes, so the "
            "assistant turns cannot be located for completion-only loss. Set [training] "
            "completion_only_loss = false, or give [model] chat_template."
        )
    return encode_text_with_spans(tokenizer, full, spans, max_length, fallback_template)


def prepare_data(recipe: Recipe, tokenizer: Any, base_dir: Path | None = None) -> PreparedData:
    """Load, split and tokenize the recipe's data for its task.

    With `[training] bucket_by_length`, every split gets a `length` column (tokens per example).
    """
    data = load_splits(recipe, base_dir, tokenizer)
    detection, parts = data.detection, data.splits
    task = recipe.model.task
    id2label = None
    template_origin = ""
    if task == "sequence_classification":
        label_col, text_col = detection.fields["label"], detection.fields["text"]
        labels = class_labels(data)
        if len(labels) < 2:
            raise TunerError(f"The label column '{label_col}' has {len(labels)} distinct value(s); need 2+.")
        id2label = dict(enumerate(labels))
        label2id = {label: i for i, label in id2label.items()}

        def encode(row: Mapping[str, Any]) -> dict[str, Any]:
            enc = tokenizer(str(row[text_col] or ""), truncation=True, max_length=recipe.training.max_length)
            return {
                "input_ids": enc["input_ids"],
                "attention_mask": enc["attention_mask"],
                "labels": label2id[str(row[label_col])],
            }
    else:
        from tuner_tui.modeling.loading import chat_template_origin, ensure_chat_template

        fallback = False
        if detection.format not in ("text", "prompt_completion"):
            template_origin = chat_template_origin(recipe.model, tokenizer)
            fallback = ensure_chat_template(tokenizer)

        def encode(row: Mapping[str, Any]) -> dict[str, Any]:
            return encode_causal(row, detection, tokenizer, recipe, fallback)

    encoded: dict[str, Any] = {}
    dropped: dict[str, int] = {}
    # Calling the tokenizer leaves its truncation settings in the fast backend, and those are
    # written to the tokenizer.json of every checkpoint and of the adapter. Whether it is called
    # here depends on the datasets cache (a repeated run reads the tokenized rows from it), so
    # the settings are put back as they were: identical runs write identical files.
    with backend_state_kept(tokenizer):
        for name, part in parts.items():
            ds = part.map(encode, remove_columns=part.column_names, desc=f"tokenizing {name}")
            if task == "causal_lm":
                before = len(ds)
                ds = ds.filter(lambda row: any(t != IGNORE for t in row["labels"]))
                dropped[name] = before - len(ds)
            if recipe.training.bucket_by_length:
                ds = ds.add_column(LENGTH_COLUMN, [len(ids) for ids in ds["input_ids"]])
            encoded[name] = ds
    if len(encoded["train"]) == 0:
        raise TunerError(
            "No training example is left after tokenization: every response was cut off by "
            f"[training] max_length = {recipe.training.max_length}. Raise max_length."
        )
    return PreparedData(
        train=encoded["train"],
        validation=encoded.get("validation"),
        test=encoded.get("test"),
        detection=detection,
        id2label=id2label,
        dropped_no_target=dropped.get("train", 0),
        rows_loaded=data.rows_loaded,
        rows_cleaned=data.rows_cleaned,
        chat_template=template_origin,
        source=data,
        split_rows={name: len(part) for name, part in parts.items()},
        dropped=dropped,
    )


class PadCollator:
    """Pads input_ids with the pad token, attention_mask with 0 and labels (when lists) with -100."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        longest = max(len(f["input_ids"]) for f in features)

        def padded(key: str, value: int) -> Any:
            return torch.tensor([list(f[key]) + [value] * (longest - len(f[key])) for f in features])

        batch = {
            "input_ids": padded("input_ids", self.pad_token_id),
            "attention_mask": padded("attention_mask", 0),
        }
        if isinstance(features[0]["labels"], list):
            batch["labels"] = padded("labels", IGNORE)
        else:
            batch["labels"] = torch.tensor([f["labels"] for f in features])
        return batch


def make_collator(recipe: Recipe, tokenizer: Any) -> Any:
    """The batch collator: padding-free flattening when `[training] packing`, else padding.

    Packing concatenates a batch's examples into one row with restarting `position_ids` and no
    attention mask; transformers turns those positions into a block-diagonal causal mask, so no
    example attends to another and no compute is spent on pad tokens. The first label of each
    example becomes -100, so the loss never predicts across a boundary and equals the padded loss.
    """
    if recipe.training.packing and recipe.model.task == "causal_lm":
        from transformers import DataCollatorWithFlattening

        return DataCollatorWithFlattening(return_position_ids=True, separator_id=IGNORE)
    return PadCollator(tokenizer.pad_token_id)
