"""Dataset formats: detect them from columns, and turn rows into conversations."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tuner_tui.errors import TunerError

# Default role -> column mapping per format.
DEFAULT_FIELDS: dict[str, dict[str, str]] = {
    "alpaca": {
        "instruction": "instruction",
        "input": "input",
        "output": "output",
        "system": "system",
    },
    "sharegpt": {"conversations": "conversations"},
    "messages": {"messages": "messages"},
    "prompt_completion": {"prompt": "prompt", "completion": "completion"},
    "text": {"text": "text"},
    "classification": {"text": "text", "label": "label"},
    "preference": {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected"},
}
# Roles a row cannot do without, per format (resolve_format checks them; drop_empty uses them).
REQUIRED_ROLES: dict[str, tuple[str, ...]] = {
    "alpaca": ("instruction", "output"),
    "sharegpt": ("conversations",),
    "messages": ("messages",),
    "prompt_completion": ("prompt", "completion"),
    "text": ("text",),
    "classification": ("text", "label"),
    "preference": ("prompt", "chosen", "rejected"),
}
TRAINABLE_FORMATS = (
    "alpaca",
    "sharegpt",
    "messages",
    "prompt_completion",
    "text",
    "classification",
)
# Columns commonly used for a class label, in order of preference.
_LABEL_COLUMNS = ("label", "labels", "category", "class", "intent", "target")
_TEXT_COLUMNS = ("text", "sentence", "content", "document", "body")
_SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
    "model": "assistant",
    "bot": "assistant",
}


@dataclass
class Detection:
    format: str
    fields: dict[str, str]
    evidence: list[str] = field(default_factory=list)


def _first_list_item(rows: Sequence[Mapping[str, Any]], column: str) -> Any:
    for row in rows:
        value = row.get(column)
        if isinstance(value, list) and value:
            return value[0]
    return None


def detect_format(columns: Sequence[str], sample_rows: Sequence[Mapping[str, Any]]) -> Detection:
    """Guess the format from column names and a few rows, with the evidence for the guess."""
    cols = set(columns)
    if {"instruction", "output"} <= cols:
        fields = {k: v for k, v in DEFAULT_FIELDS["alpaca"].items() if v in cols}
        return Detection("alpaca", fields, [f"columns {sorted(fields.values())} match alpaca"])
    if "conversations" in cols:
        item = _first_list_item(sample_rows, "conversations")
        if isinstance(item, Mapping) and {"from", "value"} <= set(item):
            return Detection(
                "sharegpt",
                dict(DEFAULT_FIELDS["sharegpt"]),
                ["column 'conversations' holds {from, value} turns"],
            )
    if "messages" in cols:
        item = _first_list_item(sample_rows, "messages")
        if isinstance(item, Mapping) and {"role", "content"} <= set(item):
            return Detection(
                "messages",
                dict(DEFAULT_FIELDS["messages"]),
                ["column 'messages' holds {role, content} turns"],
            )
    if {"prompt", "chosen", "rejected"} <= cols:
        return Detection(
            "preference",
            dict(DEFAULT_FIELDS["preference"]),
            ["columns prompt/chosen/rejected: preference pairs"],
        )
    if {"prompt", "completion"} <= cols:
        return Detection(
            "prompt_completion",
            dict(DEFAULT_FIELDS["prompt_completion"]),
            ["columns prompt and completion"],
        )
    text_col = next((c for c in _TEXT_COLUMNS if c in cols), None)
    label_col = next((c for c in _LABEL_COLUMNS if c in cols), None)
    if text_col and label_col:
        return Detection(
            "classification",
            {"text": text_col, "label": label_col},
            [f"text column '{text_col}' with label column '{label_col}'"],
        )
    if text_col:
        return Detection("text", {"text": text_col}, [f"a single text column '{text_col}'"])
    raise TunerError(
        f"Cannot detect the data format from the columns {sorted(cols)}. Set [data] format "
        f"(one of {', '.join(TRAINABLE_FORMATS)}) and [data] fields to map roles to columns, "
        "e.g. fields = {text = 'body', label = 'category'}."
    )


def resolve_format(
    fmt: str,
    fields: Mapping[str, str],
    columns: Sequence[str],
    sample_rows: Sequence[Mapping[str, Any]],
    *,
    allow_untrainable: bool = False,
) -> Detection:
    """The recipe's format and fields, with 'auto' detected and missing roles defaulted;
    checks that mapped columns exist.

    Args:
        fmt: The recipe's [data] format ('auto' detects it).
        fields: The recipe's role -> column overrides.
        columns: The dataset's columns.
        sample_rows: A few rows, to look inside list columns.
        allow_untrainable: Accept preference pairs (inspection reports them; training cannot).
    """
    if fmt == "auto":
        # a mapped column counts as a column named for its role: {text = 'abstract'} reads as 'text'
        role_of = {column: role for role, column in fields.items()}
        named = [role_of.get(c, c) for c in columns]
        rows = [{role_of.get(k, k): v for k, v in row.items()} for row in sample_rows]
        detection = detect_format(named, rows)
        for real, role in role_of.items():  # the evidence names the real columns
            if real in columns and real != role:
                detection.evidence = [e.replace(f"'{role}'", f"'{real}'") for e in detection.evidence]
        detection.fields.update(fields)
    else:
        mapped = {k: v for k, v in DEFAULT_FIELDS[fmt].items() if v in columns}
        detection = Detection(fmt, {**mapped, **fields}, ["format set in the recipe"])
    if detection.format == "preference" and not allow_untrainable:
        raise TunerError(
            "The data holds preference pairs (prompt/chosen/rejected): tuner recognises them but "
            "cannot train on them yet (that needs DPO/KTO). Use SFT data, or keep only 'chosen' "
            "as the completion: set format = 'prompt_completion' and fields = "
            "{prompt = 'prompt', completion = 'chosen'}."
        )
    for role in REQUIRED_ROLES[detection.format]:
        column = detection.fields.get(role)
        if column is None or column not in columns:
            raise TunerError(
                f"[data] fields: the {detection.format} format needs a column for '{role}', but "
                f"{'none is mapped' if column is None else repr(column) + ' is not a column'}. "
                f"Columns: {', '.join(columns)}. Set fields = {{{role} = '<column>'}}."
            )
    return detection


def to_messages(row: Mapping[str, Any], detection: Detection) -> list[dict[str, str]]:
    """A chat-style row (alpaca, sharegpt, messages) as [{role, content}, ...]."""
    f = detection.fields
    if detection.format == "alpaca":
        prompt = str(row[f["instruction"]] or "")
        extra = row.get(f.get("input", "input")) if f.get("input") else None
        if extra:
            prompt = f"{prompt}\n\n{extra}"
        messages = []
        system = row.get(f["system"]) if f.get("system") else None
        if system:
            messages.append({"role": "system", "content": str(system)})
        messages.append({"role": "user", "content": prompt})
        messages.append({"role": "assistant", "content": str(row[f["output"]] or "")})
        return messages
    if detection.format == "sharegpt":
        return [
            {
                "role": _SHAREGPT_ROLES.get(str(turn.get("from")), str(turn.get("from"))),
                "content": str(turn.get("value") or ""),
            }
            for turn in row[f["conversations"]] or []
        ]
    if detection.format == "messages":
        return [
            {"role": str(turn.get("role")), "content": _content_text(turn.get("content"))}
            for turn in row[f["messages"]] or []
        ]
    raise ValueError(f"{detection.format} rows are not conversations")


def _content_text(content: Any) -> str:
    """Message content as text; multi-part content keeps its text parts."""
    if isinstance(content, list):
        return "".join(
            str(part.get("text") or part.get("value") or "") for part in content if isinstance(part, Mapping)
        )
    return "" if content is None else str(content)
