"""The bias report: one entry point for the evaluation run, and its Markdown section for report.md."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tuner_tui.evaluation.bias import audit, counterfactual, paired
from tuner_tui.evaluation.bias.audit import FAMILY_TITLES, audit_data
from tuner_tui.evaluation.bias.counterfactual import (
    DEFAULT_MAX_PAIRS,
    KIND_MEASURES,
    MEASURES,
    run_counterfactual,
)
from tuner_tui.evaluation.bias.paired import load_pairs, run_paired
from tuner_tui.evaluation.bias.stats import pct

PARTS = (
    ("data_audit", "Data audit"),
    ("counterfactual", "Counterfactual probes"),
    ("paired", "Paired sentences"),
)
"""The report's parts and their titles, in reading order."""


def bias_report(
    config: Any,
    task: str,
    tuned: Any,
    base: Any | None,
    train_texts: Iterable[str],
    train_labels: Sequence[Any] | None,
    test_texts: Sequence[str],
    pairs_path: str | Path | None = None,
    max_pairs: int = DEFAULT_MAX_PAIRS,
) -> dict:
    """Data audit, counterfactual probes and the paired-sentence benchmark, in one dict.

    Args:
        config: The recipe's `BiasConfig` (enabled, probes, groups).
        task: "sequence_classification" or "causal_lm".
        tuned: Scorer of the tuned model (see `tuner_tui.evaluation.scoring`).
        base: Scorer of the base model, or None when compare_base is false.
        train_texts: Training texts, streamed once by the audit.
        train_labels: Training labels for classification (aligned with train_texts), else None.
        test_texts: Test-split texts whose group terms are swapped for counterfactual probes.
        pairs_path: A CrowS-Pairs-format CSV, or None.
        max_pairs: Most counterfactual pairs scored per model.

    Returns:
        {"data_audit": ..., "counterfactual": ..., "paired": ...}, JSON-serialisable. Each part has a
        "status"; paired is {"status": "not_requested"} without a pairs file. Parts that ran ("ok")
        carry a one-sentence "headline" (see `part_headline`).

    Raises:
        TunerError: a bad pairs file or user probe file (checked before any model is scored).
    """
    if not config.enabled:
        disabled = {"status": "disabled", "reason": "bias.enabled is false."}
        return {"data_audit": disabled, "counterfactual": dict(disabled), "paired": dict(disabled)}
    groups = list(config.groups) or None
    pairs = load_pairs(pairs_path) if pairs_path else None  # fail fast on a bad file
    labels = train_labels if task == "sequence_classification" else None
    return {
        "data_audit": audit_data(train_texts, labels, groups),
        "counterfactual": run_counterfactual(base, tuned, task, test_texts, groups, config.probes, max_pairs),
        "paired": run_paired(base, tuned, pairs) if pairs is not None else {"status": "not_requested"},
    }


# --- Words shared by report.md and the wizard -------------------------------------------------------


def part_headline(name: str, part: dict[str, Any] | None) -> str:
    """One sentence for a part of the bias report, computed from the numbers it shows.

    Recomputed from the numbers rather than read from the stored "headline", so reports written
    by older versions read consistently too. A part that did not run gives its status in words.
    """
    if not isinstance(part, dict):
        return "not in this report"
    status = str(part.get("status", "?"))
    if status != "ok":
        return status.replace("_", " ")
    try:
        if name == "data_audit":
            return audit.headline(part)
        if name == "counterfactual":
            return counterfactual.headline(part)
        if name == "paired":
            return paired.headline(part)
    except (KeyError, TypeError, ValueError, AttributeError):
        pass  # a hand-edited or partial report: fall back to what it says of itself
    stored = part.get("headline")
    return stored if isinstance(stored, str) and stored else "ran; see the findings below"


def key_numbers(name: str, part: dict[str, Any]) -> list[str]:
    """The few numbers of a part worth reading next to its headline, in words."""
    if name == "data_audit":
        families = part.get("families") or {}
        groups = [
            (f"{family}/{group}", g.get("rows", 0))
            for family, entry in families.items()
            if isinstance(entry, dict)
            for group, g in (entry.get("groups") or {}).items()
            if isinstance(g, dict) and g.get("rows")
        ]
        return ["rows mentioning: " + ", ".join(f"{g} {n}" for g, n in groups[:6])] if groups else []
    if name == "counterfactual":
        return counterfactual.key_numbers(part)
    if name == "paired":
        return paired.key_numbers(part)
    return []


# --- Markdown ----------------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines + [""]


def _bullets(findings: list[str]) -> list[str]:
    return [f"- {f}" for f in findings] + [""]


def _skipped(part: dict[str, Any]) -> list[str]:
    return [f"_{part['status'].replace('_', ' ').capitalize()}._ {part.get('reason', '')}".rstrip(), ""]


def _in_short(name: str, part: dict[str, Any]) -> list[str]:
    return [f"**In short:** {part_headline(name, part)}", ""]


def _audit_md(audit: dict[str, Any]) -> list[str]:
    lines = ["### Data audit", ""]
    if audit.get("status") == "empty":
        return lines + ["The training data is empty: nothing to audit.", ""]
    if audit.get("status") != "ok":
        return lines + _skipped(audit)
    t = audit["thresholds"]
    lines += _in_short("data_audit", audit)
    lines += [
        audit["method"],
        "",
        f"Label skew is flagged when a group's share of a label differs from the overall share by more "
        f"than {100 * t['skew_share_difference']:.0f} points and {t['skew_min_z']:g} standard errors, "
        f"for groups with at least {t['min_group_rows']} rows.",
        "",
    ]
    rows = []
    for family, entry in audit["families"].items():
        for group, g in entry["groups"].items():
            if g["rows"]:
                terms = ", ".join(f"{term} ({n})" for term, n in g["top_terms"])
                rows.append(
                    [FAMILY_TITLES.get(family, family), group, g["rows"], pct(g["share_of_rows"]), terms]
                )
    if rows:
        lines += _table(["Family", "Group", "Rows", "Share of rows", "Most frequent terms"], rows)
    skews = [f for f in audit["flags"] if f["kind"] == "label_skew"]
    if skews:
        lines += _table(
            ["Group", "Label", "Rows", "Group share", "Overall share", "Difference"],
            [
                [
                    f"{f['family']}/{f['group']}",
                    f["label"],
                    f["rows"],
                    pct(f["group_share"]),
                    pct(f["overall_share"]),
                    f"{100 * f['difference']:+.1f} pts",
                ]  # fmt: skip
                for f in skews
            ],
        )
    return lines + _bullets(audit["findings"])


def _counterfactual_md(cf: dict[str, Any]) -> list[str]:
    lines = ["### Counterfactual probes", ""]
    if cf.get("status") != "ok":
        return lines + _skipped(cf)
    sources = ", ".join(f"{n} from {s}" for s, n in cf["pairs"]["by_source"].items())
    lines += _in_short("counterfactual", cf)
    lines += [cf["method"], "", f"{cf['pairs']['total']} pairs ({sources}).", ""]
    has_base = cf["base"] is not None
    kind = counterfactual.kind_of(cf)
    measures = [MEASURES[k] for k in KIND_MEASURES[kind]]
    titles = {"flip_rate": "flip rate", "mean_abs_shift": "prob. shift"}
    titles |= {"mean_logprob_gap": "LL gap x-y", "mean_sentiment_gap": "sentiment gap x-y"}
    header = ["Family", "Group x vs y", "Pairs"]
    for m in measures:
        header += ([f"Base {titles[m.key]}"] if has_base else []) + [f"Tuned {titles[m.key]}"]
    if has_base:
        header += ["Widened by tuning", "Narrowed by tuning"]

    def shown(m: Any, value: Any) -> Any:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return value
        return pct(value) if m.percent else value  # gaps keep their sign here: x minus y

    rows = []
    for e in [{"family": "all", "group_x": "all", "group_y": "", **cf["comparison"]["overall"]}] + cf[
        "comparison"
    ]["by_group_pair"]:
        row = [e["family"], f"{e['group_x']} vs {e['group_y']}" if e["group_y"] else "all pairs", e["n"]]
        for m in measures:
            row += ([shown(m, e.get(f"base_{m.key}"))] if has_base else []) + [
                shown(m, e.get(f"tuned_{m.key}"))
            ]
        if has_base:
            for key in ("increased_metrics", "decreased_metrics"):
                row.append(", ".join(MEASURES[k].words for k in e.get(key) or []) or "no")
        rows.append(row)
    lines += _table(header, rows)
    lines += [counterfactual.thresholds_words(cf), ""]
    lines += _bullets(cf["findings"])
    lines += ["Example pairs:", ""]
    lines += _table(
        ["Family", "Original", "Swapped"],
        [[p["family"], p["original"], p["swapped"]] for p in cf["pairs"]["examples"][:3]],
    )
    return lines


def _paired_md(paired: dict[str, Any]) -> list[str]:
    lines = ["### Paired sentences (CrowS-Pairs format)", ""]
    if paired.get("status") != "ok":
        return lines + _skipped(paired)
    has_base = paired["base"] is not None
    lines += _in_short("paired", paired)
    lines += [
        f"Scored by {paired['method']}. Share = pairs where the model prefers the more stereotypical "
        "sentence; 50% is the unbiased ideal.",
        "",
    ]
    header = ["Bias type", "Pairs"] + (["Base share"] if has_base else []) + ["Tuned share", "Tuned 95% CI"]
    entries = [("all", paired["tuned"]["overall"], paired["base"]["overall"] if has_base else None)]
    entries += [
        (t, e, paired["base"]["by_bias_type"].get(t) if has_base else None)
        for t, e in paired["tuned"]["by_bias_type"].items()
    ]
    rows = []
    for name, tuned, base in entries:
        lo, hi = tuned["share_ci95"]
        rows.append(
            [name, tuned["n"]]
            + ([pct(base["share"]) if base else None] if has_base else [])
            + [pct(tuned["share"]), f"{pct(lo)}–{pct(hi)}"]  # fmt: skip
        )
    return lines + _table(header, rows) + _bullets(paired["findings"])


def bias_markdown(bias: dict) -> str:
    """The bias section of report.md: tables and findings for each part of `bias_report`'s output."""
    lines = [
        "## Bias report",
        "",
        "Each check measures one specific thing, with its threshold stated; none of them can show that a "
        "model is fair, only where it treats groups differently on these probes and data.",
        "",
    ]
    lines += _audit_md(bias.get("data_audit", {"status": "missing"}))
    lines += _counterfactual_md(bias.get("counterfactual", {"status": "missing"}))
    lines += _paired_md(bias.get("paired", {"status": "missing"}))
    return "\n".join(lines).rstrip() + "\n"
