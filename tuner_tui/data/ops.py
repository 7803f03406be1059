"""The cleaning ops of [[data.cleaning]]: names, parameters with their defaults, and what each does.

The one list of them. Standard library only (the PII kinds come from `pii`, which needs nothing
else at import), so the recipe and the wizard's cleaning list read the engine's ops at start-up
instead of restating them: `recipe.CLEANING_OPS` is these names plus the ops that are refused with
an explanation (`UNAVAILABLE_OPS`); the cleaning list builds its add menu, parameter widgets and
parsing from `OPS`; `clean.py` implements each op and reads `STEP_PARAMS`. A new op added here
(and implemented there) appears in the recipe and the wizard with no other change.
"""

from __future__ import annotations

import copy
import difflib
from dataclasses import dataclass
from typing import Any

from tuner_tui.data.pii import PII_KINDS
from tuner_tui.errors import TunerError

LABEL_CONFLICT_KEEP = ("majority", "none")
NORMAL_FORMS = ("NFC", "NFKC", "NFD", "NFKD")

PARAM_KINDS = ("bool", "choice", "int", "float", "subset")
"""How a parameter's value is written: true/false, one of `choices`, a whole number, a number,
or a non-empty list drawn from `choices`."""

_SAME: Any = object()


@dataclass(frozen=True)
class Param:
    """One parameter of a cleaning op."""

    name: str
    """The key in the recipe's step table (the TOML contract: never rename)."""
    kind: str
    """One of PARAM_KINDS."""
    default: Any
    """What the step uses when the key is absent (None: no value, e.g. no upper bound)."""
    help: str
    """One line for tooltips."""
    choices: tuple[str, ...] = ()
    """The allowed values of a 'choice', or the pool of a 'subset'."""
    start: Any = _SAME
    """The value a step added in the wizard starts with (default: `default`); written out, so the
    recipe says what runs. None leaves the key out."""

    @property
    def optional(self) -> bool:
        """Whether the key may be left out to mean 'none' (its default is None)."""
        return self.default is None

    def initial(self) -> Any:
        """A fresh copy of the value a new step starts with."""
        return copy.deepcopy(self.default if self.start is _SAME else self.start)


@dataclass(frozen=True)
class Op:
    """One cleaning op: its recipe name, what it does, its parameters."""

    name: str
    description: str
    params: tuple[Param, ...] = ()

    def new_step(self) -> dict[str, Any]:
        """The step table a newly added step starts as: {op, ...starting parameters}."""
        values = {p.name: p.initial() for p in self.params}
        return {"op": self.name, **{k: v for k, v in values.items() if v is not None}}

    def param(self, name: str) -> Param:
        return next(p for p in self.params if p.name == name)


_KINDS_HELP = f"Comma-separated, from: {', '.join(PII_KINDS)}"

OPS: tuple[Op, ...] = (
    Op("drop_empty", "Drop rows whose required fields are blank"),
    Op(
        "normalize",
        "Unicode-normalise text and collapse whitespace",
        (
            Param("form", "choice", "NFC", "Unicode normal form", NORMAL_FORMS),
            Param("whitespace", "bool", True, "Collapse runs of spaces and blank lines; trim the ends"),
        ),
    ),
    Op(
        "length_filter",
        "Keep rows whose length (tokens, or words without a tokenizer) is in range",
        (
            Param("min_tokens", "int", 0, "Shortest kept length", start=1),
            Param("max_tokens", "int", None, "Longest kept length; blank: no upper bound", start=2048),
        ),
    ),
    Op("dedup_exact", "Drop exact duplicates (keeps the first)"),
    Op(
        "dedup_near",
        "Drop near duplicates (MinHash Jaccard of word 3-shingles)",
        (Param("threshold", "float", 0.8, "Jaccard similarity in (0, 1]"),),
    ),
    Op(
        "redact_pii",
        "Replace PII with placeholders like <EMAIL>",
        (Param("kinds", "subset", list(PII_KINDS), _KINDS_HELP, PII_KINDS),),
    ),
    Op(
        "drop_pii_rows",
        "Drop rows that contain PII",
        (Param("kinds", "subset", list(PII_KINDS), _KINDS_HELP, PII_KINDS),),
    ),
    Op(
        "resolve_label_conflicts",
        "Texts seen with different labels: keep the majority label, or drop them",
        (
            Param(
                "keep",
                "choice",
                "majority",
                "majority: keep each text's most common label; none: drop every row of such a text",
                LABEL_CONFLICT_KEEP,
            ),
        ),
    ),
)
"""Every op the engine runs, in the order the wizard offers them."""

UNLABELED_OP = "drop_unlabeled"
"""Not an op a recipe names: the step the pipeline records when it drops classification rows
without a label (an empty label would otherwise become a class named "None" or "")."""

UNUSABLE_PAIRS_OP = "drop_unusable_pairs"
"""Not an op a recipe names: the step the pipeline records when it drops preference pairs (or KTO
rows) that cannot train: a side missing or blank, chosen == rejected (data/preference.py)."""

OPS_BY_NAME: dict[str, Op] = {op.name: op for op in OPS}

UNAVAILABLE_OPS: dict[str, str] = {
    "filter_language": "no well-kept language identifier that works offline ships with tuner. Remove "
    "the step, or filter the file beforehand.",
}
"""Ops a recipe may name that are refused, with why: the recipe accepts the name, a run explains."""

STEP_PARAMS: dict[str, dict[str, Any]] = {op.name: {p.name: p.default for p in op.params} for op in OPS}
"""op -> {parameter: default}."""

PARAM_CHOICES: dict[str, dict[str, tuple[str, ...]]] = {
    op.name: {p.name: p.choices for p in op.params if p.kind == "choice"}
    for op in OPS
    if any(p.kind == "choice" for p in op.params)
}
"""Parameters that take one of a few values (a form offers them as a choice)."""

DESCRIPTIONS: dict[str, str] = {op.name: op.description for op in OPS}
"""op -> one line for tooltips and lists."""


def _fail(index: int, param: str, message: str) -> TunerError:
    return TunerError(f"data.cleaning[{index}].{param} {message}")


def _check_kinds(index: int, value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise _fail(index, "kinds", f"must be a list of PII kinds, e.g. ['email', 'phone'] (got {value!r}).")
    for kind in value:
        if kind not in PII_KINDS:
            close = difflib.get_close_matches(str(kind), PII_KINDS, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise _fail(
                index, "kinds", f"has unknown kind {kind!r}; choose from {', '.join(PII_KINDS)}.{hint}"
            )
    return list(value)


def validate_step(index: int, step: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The op and its parameters with defaults filled in (standard library only, so the wizard
    checks a step as it is typed with the same rules and words as a run).

    Raises:
        TunerError: naming `data.cleaning[i].<param>` for an unknown op or a bad parameter.
    """
    op = step.get("op")
    if isinstance(op, str) and op in UNAVAILABLE_OPS:
        raise _fail(index, "op", f"= {op!r} is not available: {UNAVAILABLE_OPS[op]}")
    if op not in STEP_PARAMS:
        close = difflib.get_close_matches(str(op), STEP_PARAMS, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise _fail(
            index, "op", f"= {op!r} is not a cleaning step; choose from {', '.join(STEP_PARAMS)}.{hint}"
        )
    allowed = STEP_PARAMS[op]
    params = copy.deepcopy(allowed)
    for key, value in step.items():
        if key == "op":
            continue
        if key not in allowed:
            known = ", ".join(allowed) or "none"
            raise _fail(index, key, f"is not a parameter of {op} (its parameters: {known}).")
        params[key] = value
    if op == "normalize":
        if params["form"] not in NORMAL_FORMS:
            raise _fail(index, "form", f"must be one of NFC, NFKC, NFD, NFKD (got {params['form']!r}).")
        if not isinstance(params["whitespace"], bool):
            raise _fail(index, "whitespace", f"must be true or false (got {params['whitespace']!r}).")
    elif op == "length_filter":
        low, high = params["min_tokens"], params["max_tokens"]
        if not isinstance(low, int) or isinstance(low, bool) or low < 0:
            raise _fail(index, "min_tokens", f"must be a whole number >= 0 (got {low!r}).")
        if high is not None and (not isinstance(high, int) or isinstance(high, bool) or high < max(low, 1)):
            raise _fail(index, "max_tokens", f"must be a whole number >= min_tokens and >= 1 (got {high!r}).")
        if low == 0 and high is None:
            raise _fail(index, "max_tokens", "is missing: set min_tokens, max_tokens or both.")
    elif op == "dedup_near":
        threshold = params["threshold"]
        if (
            isinstance(threshold, bool)
            or not isinstance(threshold, (int, float))
            or not 0.0 < threshold <= 1.0
        ):
            raise _fail(
                index, "threshold", f"must be a Jaccard similarity in (0, 1], e.g. 0.8 (got {threshold!r})."
            )
        params["threshold"] = float(threshold)
    elif op in ("redact_pii", "drop_pii_rows"):
        params["kinds"] = _check_kinds(index, params["kinds"])
    elif op == "resolve_label_conflicts" and params["keep"] not in LABEL_CONFLICT_KEEP:
        raise _fail(
            index,
            "keep",
            f"must be 'majority' (keep each text's most common label) or 'none' (drop every row of a "
            f"text labelled in more than one way); got {params['keep']!r}.",
        )
    return op, params
