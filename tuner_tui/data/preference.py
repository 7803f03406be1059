"""Preference data in the row shapes TRL's trainers take: pairs (DPO, IPO, ORPO, SimPO) and KTO's
unpaired completions with a true/false label.

TRL wants every row of a dataset in one shape: all standard (prompt, chosen, rejected are text) or
all conversational (prompt is a list of {role, content} messages, chosen and rejected one assistant
message each). The layouts found in the wild (TRL's own, with the prompt in its own column or
inside both answers; LLaMA-Factory's sharegpt pairs; KTO conversations) are turned into that one
shape here, so the trainers never guess. Rows that cannot teach a preference (a side missing, an
empty prompt, chosen == rejected) are counted, and left out of what TRL gets.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from tuner_tui.data.formats import Detection, turn_message
from tuner_tui.data.text import arrow_batches
from tuner_tui.errors import TunerError

if TYPE_CHECKING:
    from datasets import Dataset

Message = dict[str, str]
# What a prompt, chosen or rejected is in TRL's rows: text, or a list of messages.
Side = str | list[Message]

_PAIR_PROBLEMS = ("missing_chosen", "missing_rejected", "empty_prompt", "identical", "different_prompts")
_KTO_PROBLEMS = ("missing_completion", "empty_prompt", "unlabeled")
_TRUE = frozenset({"true", "1", "yes", "desirable"})
_FALSE = frozenset({"false", "0", "no", "undesirable"})


@dataclass(frozen=True)
class Pair:
    """One row as TRL's pair, with what keeps it from training (empty when usable)."""

    prompt: Side
    chosen: Side
    rejected: Side
    problems: frozenset[str]


@dataclass(frozen=True)
class Unpaired:
    """One KTO row as TRL's (prompt, completion, label), with what keeps it from training."""

    prompt: Side
    completion: Side
    label: bool | None
    problems: frozenset[str]


@dataclass(frozen=True)
class PairCheck:
    """How many pairs can train, and why the others cannot (a row may have several problems)."""

    rows: int
    missing_chosen: int
    missing_rejected: int
    empty_prompt: int
    identical: int
    usable: int
    different_prompts: int = 0
    """Conversational pairs whose chosen and rejected continue different conversations."""

    def summary(self) -> str:
        """'2 of 10 pairs cannot train: 1 without a chosen answer, ...' (empty when all can)."""
        return _summary(self.rows, self.usable, "pairs", _pair_reasons(self))


@dataclass(frozen=True)
class KtoCheck:
    """How many KTO rows can train, and the balance of desirable and undesirable ones."""

    rows: int
    missing_completion: int
    empty_prompt: int
    unlabeled: int
    usable: int
    desirable: int
    undesirable: int

    def summary(self) -> str:
        """'1 of 8 rows cannot train: ...' (empty when all can)."""
        reasons = {
            "without a completion": self.missing_completion,
            "with an empty prompt": self.empty_prompt,
            "without a true/false label": self.unlabeled,
        }
        return _summary(self.rows, self.usable, "rows", reasons)


def _summary(rows: int, usable: int, noun: str, reasons: dict[str, int]) -> str:
    if usable == rows:
        return ""
    because = ", ".join(f"{n:,} {why}" for why, n in reasons.items() if n)
    return f"{rows - usable:,} of {rows:,} {noun} cannot train: {because}"


def _pair_reasons(check: PairCheck) -> dict[str, int]:
    return {
        "without a chosen answer": check.missing_chosen,
        "without a rejected answer": check.missing_rejected,
        "with an empty prompt": check.empty_prompt,
        "with chosen identical to rejected": check.identical,
        "whose chosen and rejected continue different conversations": check.different_prompts,
    }


# ---- reading rows ---------------------------------------------------------------------------


def is_conversational(dataset: Dataset, detection: Detection, roles: tuple[str, ...]) -> bool:
    """Whether any of the roles' columns holds turns (lists or structs) rather than text: then
    every row is made conversational, since TRL takes one shape per dataset."""
    schema = dataset.data.schema
    for role in roles:
        column = detection.fields.get(role)
        if column in schema.names:
            kind = schema.field(column).type
            if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_struct(kind):
                return True
    return False


def _messages(value: Any, text_role: str) -> list[Message]:
    """A cell as messages: a list of turns, one turn object, or text said by `text_role`."""
    if value is None:
        return []
    if isinstance(value, str):
        return [{"role": text_role, "content": value}]
    if isinstance(value, Mapping):
        return [turn_message(value)]
    return [turn_message(turn) for turn in value if isinstance(turn, Mapping)]


def side_text(side: Side) -> str:
    """What a side says: its text, or its messages' contents joined by newlines."""
    return side if isinstance(side, str) else "\n".join(m["content"] for m in side)


def _blank(side: Side) -> bool:
    return not side_text(side).strip()


def _answer(messages: list[Message]) -> list[Message]:
    """The last message when it is the assistant's (an answer), else nothing."""
    return messages[-1:] if messages and messages[-1]["role"] == "assistant" else []


def _split_text(chosen: str, rejected: str) -> tuple[str, str, str]:
    """TRL's implicit prompt for text: the shared beginning, cut back to a whitespace so both
    answers start with whole words (and keep the space, as TRL's own examples do)."""
    shared = 0
    for a, b in zip(chosen, rejected, strict=False):
        if a != b:
            break
        shared += 1
    if shared < len(chosen) or shared < len(rejected):  # not a word boundary unless the next is a space
        nxt = [s[shared] for s in (chosen, rejected) if shared < len(s)]
        if not all(c.isspace() for c in nxt):
            shared = max((i for i in range(shared) if chosen[i].isspace()), default=0)
    return chosen[:shared], chosen[shared:], rejected[shared:]


def _standard_pair(row: Mapping[str, Any], fields: Mapping[str, str]) -> Pair:
    chosen, rejected = (str(row.get(fields[r]) or "") for r in ("chosen", "rejected"))
    if "prompt" in fields:
        prompt = str(row.get(fields["prompt"]) or "")
    elif chosen.strip() == rejected.strip():
        return Pair("", chosen, rejected, _pair_problems("", chosen, rejected) - {"empty_prompt"})
    else:
        prompt, chosen, rejected = _split_text(chosen, rejected)
    return Pair(prompt, chosen, rejected, _pair_problems(prompt, chosen, rejected))


def _conversational_pair(row: Mapping[str, Any], fields: Mapping[str, str]) -> Pair:
    """The prompt is the prompt column's turns and whatever chosen and rejected share before their
    last message (TRL's implicit prompt); their last messages are the answers."""
    prompt_value = row.get(fields["prompt"]) if "prompt" in fields else None
    given = _messages(prompt_value, "user")
    chosen_all = _messages(row.get(fields["chosen"]), "assistant")
    rejected_all = _messages(row.get(fields["rejected"]), "assistant")
    context, other = chosen_all[:-1], rejected_all[:-1]
    extra: set[str] = set()
    if chosen_all and rejected_all and context != other:  # a missing side is counted as missing
        extra.add("different_prompts")
    if context[: len(given)] == given or isinstance(prompt_value, str):
        prompt = context or given  # chosen repeats the prompt (a text prompt: TRL keeps chosen's)
    else:
        prompt = given + context
    chosen, rejected = _answer(chosen_all), _answer(rejected_all)
    return Pair(prompt, chosen, rejected, _pair_problems(prompt, chosen, rejected) | extra)


def _pair_problems(prompt: Side, chosen: Side, rejected: Side) -> frozenset[str]:
    problems = {
        name
        for name, side in (
            ("missing_chosen", chosen),
            ("missing_rejected", rejected),
            ("empty_prompt", prompt),
        )
        if _blank(side)
    }
    if (
        not problems & {"missing_chosen", "missing_rejected"}
        and side_text(chosen).strip() == side_text(rejected).strip()
    ):
        problems.add("identical")
    return frozenset(problems)


def iter_pairs(dataset: Dataset, detection: Detection) -> Iterator[list[Pair]]:
    """The rows as TRL pairs, a batch at a time (conversational when any side holds turns)."""
    _expect(detection, "preference")
    conversational = is_conversational(dataset, detection, ("prompt", "chosen", "rejected"))
    build = _conversational_pair if conversational else _standard_pair
    fields = {r: c for r, c in detection.fields.items() if c in dataset.column_names}
    for table in arrow_batches(dataset):
        yield [build(row, fields) for row in table.to_pylist()]


def _label(value: Any) -> bool | None:
    """A KTO label as a bool: booleans, 0/1, or the words true/false (anything else: None)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    word = str(value).strip().lower() if isinstance(value, str) else None
    return True if word in _TRUE else False if word in _FALSE else None


def _unpaired(row: Mapping[str, Any], fields: Mapping[str, str], conversational: bool) -> Unpaired:
    label = _label(row.get(fields["label"]))
    if "messages" in fields:
        messages = _messages(row.get(fields["messages"]), "user")
        prompt: Side = messages[:-1]
        completion: Side = _answer(messages)
    elif conversational:
        turns = _messages(row.get(fields.get("completion", "")), "assistant")
        prompt = _messages(row.get(fields.get("prompt", "")), "user") + turns[:-1]
        completion = _answer(turns)
    else:
        prompt = str(row.get(fields.get("prompt", "")) or "")
        completion = str(row.get(fields.get("completion", "")) or "")
    problems = {
        name
        for name, bad in (
            ("missing_completion", _blank(completion)),
            ("empty_prompt", _blank(prompt)),
            ("unlabeled", label is None),
        )
        if bad
    }
    return Unpaired(prompt, completion, label, frozenset(problems))


def iter_unpaired(dataset: Dataset, detection: Detection) -> Iterator[list[Unpaired]]:
    """The KTO rows as TRL's (prompt, completion, label), a batch at a time."""
    _expect(detection, "kto")
    fields = {r: c for r, c in detection.fields.items() if c in dataset.column_names}
    if "messages" in fields:  # the conversation holds prompt and completion: nothing else is read
        fields = {r: c for r, c in fields.items() if r in ("messages", "label")}
    conversational = "messages" in fields or is_conversational(dataset, detection, ("prompt", "completion"))
    for table in arrow_batches(dataset):
        yield [_unpaired(row, fields, conversational) for row in table.to_pylist()]


def _expect(detection: Detection, fmt: str) -> None:
    if detection.format != fmt:
        raise ValueError(f"{detection.format} data is not {fmt} data")


# ---- checks -----------------------------------------------------------------------------------


def preference_problems(dataset: Dataset, detection: Detection, *, refuse: bool = True) -> PairCheck:
    """Count the pairs that cannot train, by reason, so the caller can drop them with a recorded
    step (see `drop_bad_pairs`) or refuse.

    Args:
        dataset: Preference data.
        detection: Its format ('preference') and fields.
        refuse: Raise when no pair at all can train (`tuner inspect` passes False to report).

    Raises:
        TunerError: When `refuse` and no pair is usable: the message names the column and the fix.
    """
    check = tally_pairs(pair.problems for batch in iter_pairs(dataset, detection) for pair in batch)
    if refuse and check.usable == 0:
        raise TunerError(_no_usable_pairs(check, detection))
    return check


def tally_pairs(problems: Iterable[frozenset[str]]) -> PairCheck:
    """The PairCheck of pairs with these problems (one set per pair, empty when it can train)."""
    counts = dict.fromkeys(_PAIR_PROBLEMS, 0)
    rows = usable = 0
    for found in problems:
        rows += 1
        usable += not found
        for problem in found:
            counts[problem] += 1
    return PairCheck(rows=rows, usable=usable, **counts)


def _no_usable_pairs(check: PairCheck, detection: Detection) -> str:
    f = detection.fields
    if not check.rows:
        return "The preference data has no rows."
    worst = max(_pair_reasons(check).items(), key=lambda item: item[1])[0]
    if worst == "without a chosen answer" or worst == "without a rejected answer":
        role = "chosen" if "chosen" in worst else "rejected"
        fix = (
            f"the column '{f.get(role)}' ({role}) holds no answer (an empty text, or a conversation "
            f"whose last turn is not the assistant's). Map the right column: fields = {{{role} = '<column>'}}"
        )
    elif worst == "with an empty prompt":
        where = (
            f"the prompt column '{f['prompt']}' is empty" if "prompt" in f else "there is no prompt column"
        )
        fix = (
            f"{where}, and chosen and rejected share no beginning to take it from. Map the prompt: "
            "fields = {prompt = '<column>'}"
        )
    elif worst == "with chosen identical to rejected":
        fix = (
            f"the columns '{f.get('chosen')}' and '{f.get('rejected')}' hold the same answer, which "
            "teaches no preference. Check that they are mapped to different columns"
        )
    else:
        fix = (
            f"the conversations in '{f.get('chosen')}' and '{f.get('rejected')}' differ before their "
            "last turn, so they do not answer the same prompt. Put the shared turns in a prompt column"
        )
    return (
        f"None of the {check.rows:,} preference pairs can be trained on ({check.summary()}): {fix}, "
        "or set [data] format and fields to what the data holds."
    )


def kto_problems(dataset: Dataset, detection: Detection, *, refuse: bool = True) -> KtoCheck:
    """Count the KTO rows that cannot train, and the desirable/undesirable balance.

    Raises:
        TunerError: When `refuse` and no row is usable.
    """
    counts = dict.fromkeys(_KTO_PROBLEMS, 0)
    rows = usable = desirable = undesirable = 0
    for batch in iter_unpaired(dataset, detection):
        for row in batch:
            rows += 1
            usable += not row.problems
            desirable += row.label is True
            undesirable += row.label is False
            for problem in row.problems:
                counts[problem] += 1
    check = KtoCheck(rows=rows, usable=usable, desirable=desirable, undesirable=undesirable, **counts)
    if refuse and usable == 0:
        label = detection.fields.get("label")
        raise TunerError(
            f"None of the {check.rows:,} KTO rows can be trained on ({check.summary() or 'no rows'}). "
            f"Each needs a prompt, an assistant completion and a true/false label in '{label}': map them "
            "with [data] fields = {messages = '<column>', label = '<column>'} or {prompt = '<column>', "
            "completion = '<column>', label = '<column>'}."
        )
    return check


def drop_bad_pairs(dataset: Dataset, detection: Detection) -> tuple[Dataset, PairCheck]:
    """`dataset` (its own columns) without the pairs that cannot train, and the check that says why
    they went: run it before splitting, and record it as a step.

    Raises:
        TunerError: When no pair is usable.
    """
    check = preference_problems(dataset, detection)
    if check.usable == check.rows:
        return dataset, check
    keep = [
        i
        for i, pair in enumerate(p for batch in iter_pairs(dataset, detection) for p in batch)
        if not pair.problems
    ]
    return dataset.select(keep), check


def drop_bad_kto(dataset: Dataset, detection: Detection) -> tuple[Dataset, KtoCheck]:
    """`dataset` without the KTO rows that cannot train, and the check that says why.

    Raises:
        TunerError: When no row is usable.
    """
    check = kto_problems(dataset, detection)
    if check.usable == check.rows:
        return dataset, check
    rows = (r for batch in iter_unpaired(dataset, detection) for r in batch)
    return dataset.select([i for i, row in enumerate(rows) if not row.problems]), check


# ---- TRL rows ---------------------------------------------------------------------------------


def to_trl_preference(dataset: Dataset, detection: Detection) -> Dataset:
    """The pairs as TRL's preference rows: exactly the columns prompt, chosen, rejected, all text
    or all conversational; pairs that cannot train are left out (`preference_problems` counts them).

    Raises:
        TunerError: When no pair is usable.
    """
    preference_problems(dataset, detection)  # refuses data with nothing to train on
    return _usable(iter_pairs(dataset, detection), ("prompt", "chosen", "rejected"))


def to_trl_kto(dataset: Dataset, detection: Detection) -> Dataset:
    """The KTO rows as TRL's unpaired rows: the columns prompt, completion, label (bool), all text or
    all conversational; rows that cannot train are left out (`kto_problems` counts them).

    Raises:
        TunerError: When no row is usable.
    """
    kto_problems(dataset, detection)
    return _usable(iter_unpaired(dataset, detection), ("prompt", "completion", "label"))


def _usable(batches: Iterable[list[Any]], fields: tuple[str, ...]) -> Dataset:
    """A dataset of `fields` from the rows (pairs or unpaired answers) without problems."""
    import datasets

    columns: dict[str, list[Any]] = {name: [] for name in fields}
    for batch in batches:
        for row in batch:
            if not row.problems:
                for name in fields:
                    columns[name].append(getattr(row, name))
    return datasets.Dataset.from_dict(columns)
