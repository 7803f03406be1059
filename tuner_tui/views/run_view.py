"""A run as its viewers see it: events folded, one at a time, into what a dashboard shows.

The Training dashboard folds every event it reads into a `RunView` and draws from it; nothing
keeps the events themselves, so replaying a run of a million events needs no more memory than
one of a hundred (benchmarks/viewer_memory.py measures it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tuner_tui.views.series import Series

EVAL_FIGURES = ("loss", "accuracy", "f1_macro", "perplexity", "rouge_l")
"""The fields of an `eval` event a viewer shows, in this order (those the event has)."""
MAX_ERRORS = 20
"""The newest error events kept (a run normally has one; a resumed run, one per attempt)."""


def number(value: Any) -> float | None:
    """A numeric event field; events.jsonl spells non-finite floats as "nan"/"inf"/"-inf"."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if value in ("nan", "inf", "-inf"):
        return float(value)
    return None


@dataclass
class RunView:
    """Everything a viewer shows of a run, folded from its events as they are read: the
    newest values, and series that keep a fixed-size summary. Its size does not grow with the
    run (a million events fold into the same few KB), so a viewer can replay any run."""

    phase: str | None = None
    metric: dict[str, Any] = field(default_factory=dict)
    """The newest metric event."""
    max_steps: int | None = None
    loss: Series = field(default_factory=Series)
    lr: Series = field(default_factory=Series)
    grad_norm: Series = field(default_factory=Series)
    eval_loss: Series = field(default_factory=Series)
    reward_margin: Series = field(default_factory=Series)
    """Preference runs: the chosen answers' reward lead over the rejected ones (TRL's margin)."""
    reward_accuracy: Series = field(default_factory=Series)
    final_evals: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Evaluation of whole models after training, by model ('base', 'tuned')."""
    telemetry: dict[str, Any] | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    events: int = 0

    def fold(self, events: Iterable[Mapping[str, Any]]) -> set[str]:
        """Take these events in; returns the parts of the dashboard that changed."""
        changed: set[str] = set()
        for event in events:
            self.events += 1
            kind = event.get("type")
            if kind == "metric":
                step = number(event.get("step"))
                if step is not None:
                    for series, key in (
                        (self.loss, "loss"),
                        (self.lr, "lr"),
                        (self.grad_norm, "grad_norm"),
                        (self.reward_margin, "reward_margin"),
                        (self.reward_accuracy, "reward_accuracy"),
                    ):
                        value = number(event.get(key))
                        if value is not None:
                            series.append(step, value)
                self.metric = dict(event)
                if isinstance(event.get("max_steps"), int):
                    self.max_steps = event["max_steps"]
                changed.add("metric")
            elif kind == "status":
                self.phase = event.get("phase") or self.phase
                if isinstance(event.get("max_steps"), int) and event["max_steps"] > 0:
                    self.max_steps = event["max_steps"]
                changed.add("phase")
            elif kind == "eval":
                if "model" in event:
                    self.final_evals[str(event["model"])] = dict(event)
                else:
                    step, loss = number(event.get("step")), number(event.get("loss"))
                    if step is not None and loss is not None:
                        self.eval_loss.append(step, loss)
                changed.add("metric")
            elif kind == "telemetry":
                self.telemetry = dict(event)
                changed.add("telemetry")
            elif kind == "error":
                self.errors.append(dict(event))
                del self.errors[:-MAX_ERRORS]
                changed.add("error")
            elif kind == "checkpoint":
                changed.add("checkpoint")
        return changed
