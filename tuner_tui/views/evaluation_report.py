"""An evaluation report as a person reads it: one presenter for `tuner eval` and the wizard's
Evaluation step.

`read_report` turns report.json (a file other tools write and people edit, so any key may be
missing or of another type) into a `ReportView` of display-ready cells, once; the CLI and the
screen then only place those cells. Numbers are formatted by the engine's `format_metric` and
verdicts worded by its `VERDICTS`, as in report.md, so all three say the same thing. Textual-free.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from tuner_tui.evaluation.bias.report import PARTS as BIAS_PARTS
from tuner_tui.evaluation.bias.report import key_numbers, part_headline
from tuner_tui.evaluation.report import (
    SAMPLE_COLUMNS,
    VERDICTS,
    forgetting_sentence,
    format_metric,
    sample_note,
)

VERDICT_STYLES = {"pass": "bold green", "fail": "bold red", "no_objectives": "bold yellow"}
OBJECTIVE_COLUMNS = ("metric", "target", "base", "tuned", "margin", "result")
MODELS = ("base", "tuned")


@dataclass(frozen=True)
class ObjectiveView:
    """One objective's row: every cell but the result is text."""

    metric: str
    target: str
    base: str
    tuned: str
    margin: str
    passed: bool

    def cells(self) -> tuple[str, str, str, str, str]:
        return self.metric, self.target, self.base, self.tuned, self.margin


@dataclass(frozen=True)
class BiasPartView:
    """One part of the bias report: its headline computed from its numbers, then those numbers."""

    title: str
    present: bool
    """False for a report written without this part."""
    ran: bool
    """False when the part is not in the report or did not run (`reason` may say why)."""
    headline: str
    reason: str
    numbers: tuple[str, ...]
    findings: tuple[str, ...]


@dataclass(frozen=True)
class SamplesView:
    """Sample rows under the columns any of them has (in SAMPLE_COLUMNS order)."""

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    kinds: tuple[str, ...] = ()
    """For best/worst samples: "best" or "worst" per row."""


@dataclass(frozen=True)
class ConfusionView:
    labels: tuple[str, ...]
    matrix: tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class ReportView:
    verdict: str
    where: str
    """'task causal_lm, test split, 200 examples' (empty when the report says none of it)."""
    sample_note: str
    """Says the verdict rests on a sample of the split; empty when it covers all of it."""
    objectives: tuple[ObjectiveView, ...]
    models: tuple[str, ...]
    metrics: tuple[tuple[str, tuple[str, ...]], ...]
    """(metric name, its value per model in `models`), names sorted."""
    confusion: ConfusionView | None
    shown: SamplesView
    ranked: SamplesView
    bias: tuple[BiasPartView, ...]
    forgetting: str = ""
    """Base vs tuned perplexity on [evaluation] general_data and the change; empty when not measured."""


class ReportUnreadable(ValueError):
    """report.json cannot be read or is not a report; the message says which."""


def load_report(path: Path) -> ReportView:
    """Read and present report.json; raises ReportUnreadable naming the file and why."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as problem:
        raise ReportUnreadable(f"{path} could not be read: {problem}") from None
    if not isinstance(data, dict):
        raise ReportUnreadable(f"{path} is not a report (not a JSON object).")
    return read_report(data)


def read_report(report: dict[str, Any]) -> ReportView:
    """The report's display cells; keys that are missing or of another type read as absent."""
    where = [
        f"task {report['task']}" if report.get("task") else "",
        f"{report['split']} split" if report.get("split") else "",
        f"{report['examples']} examples" if report.get("examples") is not None else "",
    ]
    metrics = _dict(report.get("metrics"))
    models = tuple(m for m in MODELS if isinstance(metrics.get(m), dict))
    names = sorted({k for m in models for k, v in metrics[m].items() if _is_number(v)})
    samples, bias = _dict(report.get("samples")), _dict(report.get("bias"))
    ranked = [
        (kind, s) for kind in ("best", "worst") for s in _list(samples.get(kind)) if isinstance(s, dict)
    ]
    return ReportView(
        verdict=str(report.get("verdict", "?")),
        where=", ".join(w for w in where if w),
        sample_note=_sample_note(report),
        objectives=tuple(_objective(o) for o in _list(report.get("objectives")) if isinstance(o, dict)),
        models=models,
        metrics=tuple((name, tuple(format_metric(metrics[m].get(name)) for m in models)) for name in names),
        confusion=_confusion(metrics),
        shown=_samples([s for s in _list(samples.get("shown")) if isinstance(s, dict)]),
        ranked=_samples([s for _, s in ranked], tuple(kind for kind, _ in ranked)),
        bias=tuple(_bias_part(name, title, bias.get(name)) for name, title in BIAS_PARTS),
        forgetting=forgetting_sentence(report.get("forgetting")),
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _sample_note(report: dict[str, Any]) -> str:
    try:
        return sample_note(report).replace("`", "")
    except (KeyError, TypeError):  # a hand-edited sample record
        return ""


def _objective(o: dict[str, Any]) -> ObjectiveView:
    return ObjectiveView(
        metric=str(o.get("metric", "?")),
        target=f"{o.get('direction', '')} {format_metric(o.get('target'))}".strip(),
        base=format_metric(o.get("base")),
        tuned=format_metric(o.get("tuned")),
        margin=format_metric(o.get("margin")),
        passed=bool(o.get("passed")),
    )


def _confusion(metrics: dict[str, Any]) -> ConfusionView | None:
    # The engine keeps the confusion matrix under the tuned model's metrics.
    found = metrics.get("confusion_matrix") or _dict(metrics.get("tuned")).get("confusion_matrix")
    if not isinstance(found, dict) or not found.get("labels") or not isinstance(found.get("matrix"), list):
        return None
    labels = tuple(str(label) for label in found["labels"])
    rows = [r for r in found["matrix"] if isinstance(r, list)]
    matrix = tuple(tuple(int(v) if isinstance(v, (int, float)) else 0 for v in row) for row in rows)
    return ConfusionView(labels, matrix[: len(labels)])


def _samples(rows: list[dict[str, Any]], kinds: tuple[str, ...] = ()) -> SamplesView:
    columns = tuple(c for c in SAMPLE_COLUMNS if any(c in s for s in rows))
    cells = tuple(tuple(_flat(s.get(c, "")) for c in columns) for s in rows)
    return SamplesView(columns, cells, kinds)


def _flat(value: Any) -> str:
    return format_metric(value) if isinstance(value, float) else " ".join(str(value).split())


def _bias_part(name: str, title: str, part: Any) -> BiasPartView:
    if not isinstance(part, dict):
        return BiasPartView(title, False, False, "not in this report", "", (), ())
    ran = part.get("status") == "ok"
    return BiasPartView(
        title=title,
        present=True,
        ran=ran,
        headline=part_headline(name, part),
        reason=str(part.get("reason") or "") if not ran else "",
        numbers=tuple(key_numbers(name, part)) if ran else (),
        findings=tuple(str(f) for f in _list(part.get("findings"))) if ran else (),
    )


# --- rich renderings ---------------------------------------------------------------------------------


def cut(text: str, width: int) -> str:
    """One line of at most `width` characters, '…' where it was cut."""
    return text if len(text) <= width else text[: width - 1] + "…"


def verdict_text(view: ReportView) -> Text:
    """The verdict badge and its meaning, where it was measured, and the sample note."""
    label, words = VERDICTS.get(view.verdict, (view.verdict.upper(), ""))
    style = VERDICT_STYLES.get(view.verdict, "bold")
    text = Text()
    text.append(f" {label} ", f"{style} reverse").append(f"  {words}")
    if view.where:
        text.append("\n" + view.where, "dim")
    if view.sample_note:  # the verdict rests on a sample of the split: say so next to it
        text.append("\n" + view.sample_note, "yellow")
    if view.forgetting:
        text.append("\nForgetting: " + view.forgetting)
    return text


def verdict_line(view: ReportView) -> Text:
    """'Verdict: fail (at least one objective is not met).' and the sample note: for a terminal
    log, where a badge would not read."""
    words = VERDICTS.get(view.verdict, ("", ""))[1]
    text = Text.assemble("Verdict: ", (view.verdict, "bold"), f" ({words})." if words else ".")
    if view.sample_note:
        text.append("\n" + view.sample_note)
    if view.forgetting:
        text.append("\nForgetting: " + view.forgetting)
    return text


def result_text(passed: bool) -> Text:
    return Text("pass", "bold green") if passed else Text("FAIL", "bold red")


def objectives_table(view: ReportView, title: str = "Objectives") -> Table:
    table = Table(*OBJECTIVE_COLUMNS, title=Text(title))
    for o in view.objectives:
        table.add_row(*(Text(c) for c in o.cells()), result_text(o.passed))
    return table


def confusion_cells(confusion: ConfusionView) -> list[list[Text]]:
    """Rows of the confusion matrix: the reference label, then counts (the diagonal green)."""
    return [
        [Text(label, "bold"), *(Text(str(v), "bold green" if j == i else ("red" if v else "dim"))
                               for j, v in enumerate(row))]
        for i, (label, row) in enumerate(zip(confusion.labels, confusion.matrix, strict=False))
    ]  # fmt: skip


def bias_text(view: ReportView) -> Text:
    """The three parts of the bias report: a headline each, key numbers and findings."""
    text = Text()
    for part in view.bias:
        if text:
            text.append("\n")
        text.append(part.title, "bold")
        if not part.present:
            text.append(": not in this report\n", "dim")
            continue
        text.append(f": {part.headline}\n", "" if part.ran else "yellow")
        if part.reason:
            text.append(f"  {part.reason}\n", "dim")
        for line in part.numbers:
            text.append(f"  {line}\n")
        for finding in part.findings:
            text.append(f"  • {finding}\n")
    return text
