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
    # unpaired: either a conversation whose last turn is the completion (messages), or prompt and
    # completion; `label` is True for a desirable completion, False for an undesirable one
    "kto": {"prompt": "prompt", "completion": "completion", "messages": "messages", "label": "label"},
}
# Roles a row cannot do without, per format (resolve_format checks them; drop_empty uses them).
REQUIRED_ROLES: dict[str, tuple[str, ...]] = {
    "alpaca": ("instruction", "output"),
    "sharegpt": ("conversations",),
    "messages": ("messages",),
    "prompt_completion": ("prompt", "completion"),
    "text": ("text",),
    "classification": ("text", "label"),
    # the prompt may live inside chosen/rejected (TRL's implicit prompt), so only the pair is required
    "preference": ("chosen", "rejected"),
    # and either messages or prompt + completion (resolve_format checks which)
    "kto": ("label",),
}
TRAINABLE_FORMATS = (
    "alpaca",
    "sharegpt",
    "messages",
    "prompt_completion",
    "text",
    "classification",
    "preference",
    "kto",
)
# Formats only a preference method (DPO, IPO, ORPO, SimPO: paired; KTO: unpaired) trains on.
PREFERENCE_FORMATS = ("preference", "kto")
# Columns that hold the conversation before a chosen/rejected reply, or a KTO conversation.
_CONVERSATION_COLUMNS = ("messages", "conversations")
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


def _values(rows: Sequence[Mapping[str, Any]], column: str) -> list[Any]:
    return [row[column] for row in rows if row.get(column) is not None]


def _shape(rows: Sequence[Mapping[str, Any]], column: str) -> str | None:
    """What the sampled rows hold in `column`: 'text', 'turns' (a list of turns), 'turn' (one
    turn object), or None when no row says (no values, or something else)."""
    for value in _values(rows, column):
        if isinstance(value, str):
            return "text"
        if isinstance(value, list) and value and _turn_keys(value[0]):
            return "turns"
        if _turn_keys(value):
            return "turn"
    return None


def _turn_keys(value: Any) -> str | None:
    """'{from, value}' or '{role, content}' when `value` is a turn of that kind."""
    if not isinstance(value, Mapping):
        return None
    if {"from", "value"} <= set(value) and value.get("from") is not None:
        return "{from, value}"
    if {"role", "content"} <= set(value):
        return "{role, content}"
    return None


def _holds_booleans(rows: Sequence[Mapping[str, Any]], column: str) -> bool:
    values = _values(rows, column)
    return bool(values) and all(isinstance(v, bool) for v in values)


def _detect_preference(cols: set[str], rows: Sequence[Mapping[str, Any]]) -> Detection | None:
    """Pairs: TRL standard (prompt/chosen/rejected text), TRL conversational (chosen/rejected
    conversations, the prompt in its own column or inside both), or LLaMA-Factory's sharegpt
    pairs (the prompt turns in 'conversations', chosen/rejected one {from, value} reply each)."""
    if not {"chosen", "rejected"} <= cols:
        return None
    prompt = "prompt" if "prompt" in cols else next((c for c in _CONVERSATION_COLUMNS if c in cols), None)
    fields = {"prompt": prompt} if prompt else {}
    fields.update(chosen="chosen", rejected="rejected")
    shape = _shape(rows, "chosen")
    pair = "columns 'chosen' and 'rejected'"
    if shape == "turn":
        keys = _turn_keys(_values(rows, "chosen")[0])
        where = f"the prompt turns in '{prompt}'" if prompt else "no prompt column"
        source = "LLaMA-Factory sharegpt" if keys == "{from, value}" else "single-reply"
        evidence = f"{pair} hold one {keys} reply each, {where}: {source} preference pairs"
    elif shape == "turns":
        keys = _turn_keys(_values(rows, "chosen")[0][0])
        if prompt:
            evidence = f"{pair} hold {keys} conversations, the prompt in '{prompt}': TRL conversational pairs"
        else:
            evidence = (
                f"{pair} hold {keys} conversations and there is no prompt column: the prompt is "
                "their shared beginning (TRL conversational pairs, implicit prompt)"
            )
    elif shape == "text" and not prompt:
        evidence = (
            f"{pair} hold text and there is no prompt column: the prompt is their shared "
            "beginning (TRL standard pairs, implicit prompt)"
        )
    elif prompt:
        evidence = f"columns '{prompt}', 'chosen' and 'rejected': TRL standard preference pairs"
    else:
        evidence = f"{pair}, no prompt column: preference pairs with the prompt inside them"
    return Detection("preference", fields, [evidence])


def _detect_kto(cols: set[str], rows: Sequence[Mapping[str, Any]]) -> Detection | None:
    """Unpaired completions with a true/false label (booleans, not label strings: that is what
    tells KTO data from classification): a conversation, or prompt + completion."""
    if "label" not in cols or not _holds_booleans(rows, "label"):
        return None
    label = "'label' holds true/false (desirable or not)"
    conversation = next((c for c in _CONVERSATION_COLUMNS if c in cols), None)
    if conversation and _shape(rows, conversation) == "turns":
        return Detection(
            "kto",
            {"messages": conversation, "label": "label"},
            [f"column '{conversation}' holds conversations (the last turn is the completion), {label}: KTO"],
        )
    if {"prompt", "completion"} <= cols:
        return Detection(
            "kto",
            {"prompt": "prompt", "completion": "completion", "label": "label"},
            [f"columns 'prompt' and 'completion', and {label}: KTO"],
        )
    return None


def detect_format(columns: Sequence[str], sample_rows: Sequence[Mapping[str, Any]]) -> Detection:
    """Guess the format from column names and a few rows, with the evidence for the guess."""
    cols = set(columns)
    if {"instruction", "output"} <= cols:
        fields = {k: v for k, v in DEFAULT_FIELDS["alpaca"].items() if v in cols}
        return Detection("alpaca", fields, [f"columns {sorted(fields.values())} match alpaca"])
    # before sharegpt and messages: LLaMA-Factory's pairs keep the prompt in 'conversations', and
    # its KTO rows are 'messages' plus a true/false label
    for detect in (_detect_preference, _detect_kto):
        found = detect(cols, sample_rows)
        if found is not None:
            return found
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
) -> Detection:
    """The recipe's format and fields, with 'auto' detected and missing roles defaulted;
    checks that mapped columns exist.

    Args:
        fmt: The recipe's [data] format ('auto' detects it).
        fields: The recipe's role -> column overrides.
        columns: The dataset's columns.
        sample_rows: A few rows, to look inside list columns.
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
        mapped = _default_fields(fmt, columns, sample_rows)
        detection = Detection(fmt, {**mapped, **fields}, ["format set in the recipe"])
    if detection.format == "kto":
        _check_kto_layout(detection, columns)
    for role in REQUIRED_ROLES[detection.format]:
        column = detection.fields.get(role)
        if column is None or column not in columns:
            raise TunerError(
                f"[data] fields: the {detection.format} format needs a column for '{role}', but "
                f"{'none is mapped' if column is None else repr(column) + ' is not a column'}. "
                f"Columns: {', '.join(columns)}. Set fields = {{{role} = '<column>'}}."
            )
    return detection


def _default_fields(
    fmt: str, columns: Sequence[str], sample_rows: Sequence[Mapping[str, Any]]
) -> dict[str, str]:
    """The default columns of `fmt` that exist. For the preference formats, the columns detection
    finds when it agrees on the format: their prompt may sit in 'conversations', and a KTO row is
    either a conversation or prompt + completion, not both."""
    if fmt in PREFERENCE_FORMATS:
        try:
            detected = detect_format(columns, sample_rows)
        except TunerError:
            detected = None
        if detected is not None and detected.format == fmt:
            return detected.fields
    return {k: v for k, v in DEFAULT_FIELDS[fmt].items() if v in columns}


def _check_kto_layout(detection: Detection, columns: Sequence[str]) -> None:
    """A KTO row needs its completion: a conversation (messages), or prompt and completion."""
    present = {role for role, column in detection.fields.items() if column in columns}
    if "messages" in present or {"prompt", "completion"} <= present:
        return
    raise TunerError(
        "[data] fields: the kto format needs a conversation whose last turn is the completion "
        "(fields = {messages = '<column>'}) or a prompt and a completion column (fields = {prompt = "
        f"'<column>', completion = '<column>'}}), besides the true/false label. "
        f"Columns: {', '.join(columns)}."
    )


def turn_message(turn: Mapping[str, Any]) -> dict[str, str]:
    """One turn, {from, value} (sharegpt) or {role, content}, as {role, content}."""
    if turn.get("from") is not None or ("value" in turn and turn.get("role") is None):
        speaker = str(turn.get("from"))
        return {"role": _SHAREGPT_ROLES.get(speaker, speaker), "content": str(turn.get("value") or "")}
    return {"role": str(turn.get("role")), "content": _content_text(turn.get("content"))}


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
