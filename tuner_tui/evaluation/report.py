"""Report writers: `report.json` for tools, `report.md` for people (readable on its own)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from tuner_tui.runs.state import atomic_write_text

VERDICTS = {
    "pass": ("PASS", "every objective is met"),
    "fail": ("FAIL", "at least one objective is not met"),
    "no_objectives": ("NO VERDICT", "no objectives were set, so there is no verdict; the metrics are below"),
}
"""Each verdict's label and what it means: report.md, `tuner eval` and the Evaluation step."""


def verdict_sentence(verdict: str) -> str:
    """'PASS: every objective is met.' (the label is left out where the words say it)."""
    label, words = VERDICTS.get(verdict, (verdict.upper(), ""))
    if verdict == "no_objectives":
        return words[0].upper() + words[1:] + "."
    return f"{label}: {words}." if words else f"{label}."


def format_metric(value: Any) -> str:
    """A metric value in a table: 4 decimals (1 past 1,000), '-' when missing, 'nan' as such."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.1f}"
    return str(value)


def _cell(text: Any, width: int = 120) -> str:
    flat = " ".join(str(text).split()).replace("|", "\\|")
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


SAMPLE_TEXTS = ("input", "reference", "chosen", "rejected", "base", "tuned")
"""The texts a sample quotes (masked for PII unless show_raw_samples), in the columns' order."""
SAMPLE_COLUMNS = (*SAMPLE_TEXTS, "base_margin", "tuned_margin")
"""A sample's columns in report.md and the Evaluation step: its texts, then preference margins."""


def mask_samples(report: dict[str, Any]) -> dict[str, Any]:
    """`report` with PII masked in every text it quotes from the data (its samples and the bias
    probes' example pairs), the way `tuner inspect` masks it; marked "samples_masked": True.

    Numbers, verdicts and anything else are left as they are; `report` itself is not changed.
    """
    from tuner_tui.data.pii import mask_text

    def masked(entry: Any, keys: tuple[str, ...]) -> Any:
        if not isinstance(entry, dict):
            return entry
        return {k: mask_text(v) if k in keys and isinstance(v, str) else v for k, v in entry.items()}

    out = {**report, "samples_masked": True}
    samples = report.get("samples")
    if isinstance(samples, dict):
        out["samples"] = {
            key: [masked(e, SAMPLE_TEXTS) for e in rows] if isinstance(rows, list) else rows
            for key, rows in samples.items()
        }
    bias = report.get("bias")
    counterfactual = bias.get("counterfactual") if isinstance(bias, dict) else None
    if isinstance(bias, dict) and isinstance(counterfactual, dict):
        pairs = counterfactual.get("pairs")
        if isinstance(pairs, dict) and isinstance(pairs.get("examples"), list):
            examples = [masked(e, ("original", "swapped")) for e in pairs["examples"]]
            pairs = {**pairs, "examples": examples}
            out["bias"] = {**bias, "counterfactual": {**counterfactual, "pairs": pairs}}
    return out


def write_report(report: dict[str, Any], report_dir: Path) -> None:
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_json_safe(report), indent=2, default=_json_default, ensure_ascii=False)
    atomic_write_text(report_dir / "report.json", text + "\n")
    atomic_write_text(report_dir / "report.md", render_markdown(report))


def sample_note(report: dict[str, Any]) -> str:
    """A sentence saying the report rests on a sample of the split, or "" when it covers all of it.

    Reports written before `sample` was recorded give "" (their size is in `examples`)."""
    sample = report.get("sample")
    if not isinstance(sample, dict) or not sample.get("n", 0) < sample.get("of", 0):
        return ""
    how = ", stratified by label" if sample.get("stratified") else ""
    return (
        f"It rests on a sample: {sample['n']} of the {sample['of']} `{report['split']}` rows, drawn at "
        f"random (seed {sample['seed']} from `[project] seed`{how}); another sample can give another "
        f"result. Set `[evaluation] max_samples` to {sample['of']} or more to measure every row."
    )


def render_markdown(report: dict[str, Any]) -> str:
    lines = [f"# Evaluation report: {report['run_id']}", ""]
    verdict = verdict_sentence(report["verdict"])
    note = sample_note(report)
    lines += [
        f"**Verdict:** {verdict}" + (f" {note}" if note and report["verdict"] != "no_objectives" else ""),
        "",
    ]
    sample = report.get("sample")
    if isinstance(sample, dict) and {"n", "of"} <= sample.keys():
        which = (
            f"all {sample['of']}" if sample["n"] >= sample["of"] else f"{sample['n']} of the {sample['of']}"
        )
        where = f"Task `{report['task']}`, measured on {which} rows of the `{report['split']}` split."
    else:  # a report written before the sample was recorded
        where = (
            f"Task `{report['task']}`, measured on the `{report['split']}` split "
            f"({report['examples']} examples)."
        )
    lines += [where + (f" {note}" if note and report["verdict"] == "no_objectives" else ""), ""]
    if report["objectives"]:
        lines += [
            "## Objectives",
            "",
            "| metric | target | base | tuned | margin | result |",
            "|---|---|---|---|---|---|",
        ]
        for o in report["objectives"]:
            result = "pass" if o["passed"] else "FAIL"
            values = " | ".join(format_metric(o[k]) for k in ("base", "tuned", "margin"))
            lines.append(
                f"| {o['metric']} | {o['direction']} {format_metric(o['target'])} | {values} | {result} |"
            )
        lines.append("")
    metrics = report["metrics"]
    names = sorted({k for m in metrics.values() for k, v in m.items() if isinstance(v, (int, float))})
    lines += ["## Metrics", "", "| metric | base | tuned |", "|---|---|---|"]
    for name in names:
        base, tuned = metrics.get("base", {}).get(name), metrics.get("tuned", {}).get(name)
        lines.append(f"| {name} | {format_metric(base)} | {format_metric(tuned)} |")
    lines.append("")
    confusion = metrics.get("tuned", {}).get("confusion_matrix")
    if confusion:
        labels = confusion["labels"]
        lines += ["### Confusion matrix (tuned; rows = reference, columns = prediction)", ""]
        lines += ["| | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
        for label, row in zip(labels, confusion["matrix"], strict=True):
            lines.append(f"| **{label}** | " + " | ".join(str(v) for v in row) + " |")
        lines.append("")
    lines += _forgetting_markdown(report.get("forgetting"))
    lines += _samples_markdown(report["samples"], report.get("samples_masked"))
    lines += _bias_section(report["bias"])
    return "\n".join(lines) + "\n"


def forgetting_sentence(forgetting: Any) -> str:
    """'General-domain perplexity 12.31 -> 13.02 (+5.8%) on 120 texts of general.jsonl.' or ''."""
    if not isinstance(forgetting, dict):
        return ""
    base, tuned = forgetting.get("base_perplexity"), forgetting.get("tuned_perplexity")
    change = forgetting.get("change_percent")
    if not (
        isinstance(base, (int, float))
        and isinstance(tuned, (int, float))
        and isinstance(change, (int, float))
    ):
        return "General-domain perplexity could not be measured (no tokens scored)."
    source = Path(str(forgetting.get("general_data", ""))).name
    direction = "worse" if change > 0 else "better" if change < 0 else "unchanged"
    return (
        f"General-domain perplexity {format_metric(float(base))} (base) -> {format_metric(float(tuned))} "
        f"(tuned), {change:+.1f}% ({direction}), on {forgetting.get('texts')} texts of {source}."
    )


def _forgetting_markdown(forgetting: Any) -> list[str]:
    sentence = forgetting_sentence(forgetting)
    if not sentence:
        return []
    return [
        "## Forgetting (general-domain texts)",
        "",
        sentence + " Objectives can bound it: `metric = 'general_perplexity_change'`, e.g. `target = 0.10`.",
        "",
    ]


def _samples_markdown(samples: dict[str, list[dict]], masked: bool | None = None) -> list[str]:
    lines = ["## Samples", ""]
    if masked is True:
        lines += [
            "Personal data in these samples (emails, phone numbers, card numbers, keys, ...) is masked; "
            "`[evaluation] show_raw_samples = true` shows it as written.",
            "",
        ]
    elif masked is False:
        lines += ["Shown as written, personal data included (`[evaluation] show_raw_samples = true`).", ""]
    for title, key in (("Side by side", "shown"), ("Best (tuned)", "best"), ("Worst (tuned)", "worst")):
        rows = samples.get(key) or []
        if not rows:
            continue
        columns = [c for c in SAMPLE_COLUMNS if any(c in r for r in rows)]
        lines += [f"### {title}", "", "| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
        for row in rows:
            lines.append("| " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |")
        lines.append("")
    return lines


def _bias_section(bias: dict[str, Any]) -> list[str]:
    from tuner_tui.evaluation.bias import bias_markdown

    return [bias_markdown(bias), ""]
