"""Form fields derived from the recipe's own schema: what a screen renders and how it parses.

A `FieldSpec` is read from a recipe dataclass field: its type, choices, bounds and help come from
the field's annotation and `metadata`, so a screen never restates a key's type, options or limits.
Text typed into a field is parsed here into the value the recipe holds; whether that value is
allowed (bounds, combinations) is decided by the recipe's own validation (`with_changes`), never
here. Textual-free: the widgets in `tuner_tui.widgets.recipe_form` render these specs.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from typing import Any

from tuner_tui.recipe import Recipe

# Keys a person never edits as a form field: the schema's own version and tuner's environment
# block; objectives, the field mapping and the cleaning steps have editors of their own.
NOT_FORM_FIELDS = frozenset({"schema_version", "environment", "objectives", "data.fields", "data.cleaning"})

KINDS = ("text", "int", "float", "bool", "choice", "list")


@dataclass(frozen=True)
class FieldSpec:
    """One editable recipe key, as the schema describes it."""

    key: str
    """Key path, e.g. `training.learning_rate`."""
    kind: str
    """One of KINDS: how the value is shown and typed."""
    default: Any
    help: str = ""
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    above: float | None = None
    """Exclusive lower bound (`gt` in the metadata)."""
    unit: str = ""

    @property
    def label(self) -> str:
        """`training.learning_rate` -> `learning rate`."""
        return self.key.rsplit(".", 1)[-1].replace("_", " ")

    @property
    def widget_id(self) -> str:
        """An id Textual accepts (no dots): `field-training-learning_rate`."""
        return "field-" + self.key.replace(".", "-")

    @property
    def bounds(self) -> str:
        """'1 to 4,096', '> 0, at most 1', ... for placeholders and tooltips."""
        low = _number(self.minimum) if self.minimum is not None else None
        if self.above is not None:
            low = f"> {_number(self.above)}"
        high = _number(self.maximum) if self.maximum is not None else None
        if low and high:
            return f"{low}, at most {high}" if self.above is not None else f"{low} to {high}"
        if high:
            return f"at most {high}"
        if low:
            return low if self.above is not None else f"at least {low}"
        return ""

    def show(self, value: Any) -> str:
        """The text an input shows for `value`."""
        if self.kind == "list":
            return value if isinstance(value, str) else ", ".join(str(v) for v in value)
        if self.kind == "float" and isinstance(value, float):
            return f"{value:g}"
        return "" if value is None else str(value)

    def parse(self, text: str) -> tuple[Any, str]:
        """(value, "") for typed text, or (None, why it is not a value of this kind)."""
        raw = text.strip()
        if self.kind == "text":
            return text, ""
        if self.kind == "list":
            items = [item.strip() for item in raw.split(",") if item.strip()]
            # `str | list[str]` keys (target_modules) keep a single word as a string.
            if self._also_string and len(items) == 1 and "," not in raw:
                return items[0], ""
            return items, ""
        if self.kind == "int":
            try:
                return int(raw.replace("_", "")), ""
            except ValueError:
                return None, "a whole number, e.g. 8"
        if self.kind == "float":
            try:
                value = float(raw.replace("_", ""))
            except ValueError:
                return None, "a number, e.g. 0.0002 or 2e-4"
            if not math.isfinite(value):
                return None, "a finite number"
            return value, ""
        return None, f"{self.kind} fields are not typed"

    @property
    def _also_string(self) -> bool:
        return isinstance(self.default, str)


def _number(x: float) -> str:
    """4294967295 -> '4,294,967,295'; 0.5 -> '0.5'."""
    return f"{int(x):,}" if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


def _kind(hint: Any, meta: typing.Mapping[str, Any]) -> str:
    if "choices" in meta:
        return "choice"
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType) or origin is list:
        return "list"
    return {bool: "bool", int: "int", float: "float", str: "text"}.get(hint, "text")


def _walk(cls: Any, prefix: str) -> typing.Iterator[FieldSpec]:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}.{f.name}" if prefix else f.name
        if key in NOT_FORM_FIELDS:
            continue
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            yield from _walk(hint, key)
            continue
        meta = f.metadata
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc,operator]
        yield FieldSpec(
            key=key,
            kind=_kind(hint, meta),
            default=default,
            help=str(meta.get("help", "")),
            choices=tuple(meta.get("choices", ())),
            minimum=meta.get("min"),
            maximum=meta.get("max"),
            above=meta.get("gt"),
            unit=str(meta.get("unit", "")),
        )


SPECS: dict[str, FieldSpec] = {spec.key: spec for spec in _walk(Recipe, "")}
"""Every form-editable recipe key, by key path, in schema order."""


def spec(key: str) -> FieldSpec:
    """The spec of one key path; KeyError names keys that are not form fields."""
    return SPECS[key]


def specs(*keys: str) -> list[FieldSpec]:
    return [SPECS[key] for key in keys]


def section(name: str) -> list[FieldSpec]:
    """Every form field of a section (`training`, `evaluation.generation`, ...), in schema order."""
    return [s for s in SPECS.values() if s.key.rsplit(".", 1)[0] == name]


def value_of(recipe: Recipe, key: str) -> Any:
    """The recipe's value at a key path (`evaluation.generation.top_p`)."""
    value: Any = recipe
    for part in key.split("."):
        value = getattr(value, part)
    return value
