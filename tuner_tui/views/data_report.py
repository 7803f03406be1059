"""The data report and the cleaning preview as a person reads them: one presenter for `tuner
inspect` and the wizard's Data step.

Each function turns a `DataReport` (or the `StepReport`s of a cleaning preview) into rich
renderables; the CLI prints them all in order, the Data step places them beside its histograms.
Everything taken from the data or the report (paths, notes, snippets, warnings that name
"[data]") is passed as `Text`, never as a markup string, so it shows as written. Textual-free.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from tuner_tui.views.bars import bar, bin_labels

if TYPE_CHECKING:
    from tuner_tui.data.clean import StepReport
    from tuner_tui.data.report import DataReport


def histogram_table(title: str, summary: dict[str, Any], width: int = 36) -> Table:
    """A length summary's histogram as rows of bars (empty when the summary has none)."""
    table = Table(title=title, show_header=False, box=None, padding=(0, 1))
    histogram = summary.get("histogram")
    if not histogram:
        return table
    counts = histogram["counts"]
    top = max(counts) or 1
    for label, count in zip(bin_labels(histogram), counts, strict=True):
        table.add_row(label, bar(count, top, width), f"{count:,}")
    return table


def length_unit(report: DataReport) -> str:
    """'tokens', or 'words' when no tokenizer counted them: said wherever lengths are shown."""
    return str(report.token_lengths.get("unit", "tokens"))


def overview_table(report: DataReport) -> Table:
    """Source, format and its evidence, the field mapping, rows, columns, how the file was read."""
    load = report.load
    table = Table(title="Data", show_header=False, box=None, padding=(0, 1))
    table.add_row("source", Text(str(report.source)))
    table.add_row("format", report.detection.format + ("" if report.trainable else " (not trainable yet)"))
    table.add_row("evidence", Text("; ".join(report.detection.evidence)))
    table.add_row("fields", Text(", ".join(f"{k} → {v}" for k, v in report.detection.fields.items())))
    table.add_row("rows", f"{report.rows:,}")
    table.add_row("columns", Text(", ".join(report.columns)))
    table.add_row("encoding", Text(str(load.get("encoding", ""))))
    if load.get("skipped_rows"):
        table.add_row("skipped", f"{load['skipped_rows']:,} malformed row(s)")
    for note in load.get("notes", []):
        table.add_row("note", Text(note))
    return table


def fields_table(report: DataReport) -> Table:
    """Missing and empty values per mapped role."""
    table = Table(title="Fields")
    for name in ("role", "column", "missing", "empty"):
        table.add_column(name, justify="right" if name in ("missing", "empty") else "left")
    for role, counts in report.field_counts.items():
        table.add_row(
            role, Text(report.detection.fields[role]), f"{counts['missing']:,}", f"{counts['empty']:,}"
        )
    if report.empty_turns is not None:
        table.caption = f"{report.empty_turns:,} empty turn(s) in conversations"
    return table


def lengths_table(report: DataReport) -> Table:
    """Characters and tokens (or words) per row: min, p50, p95, max, and what counted them."""
    unit = length_unit(report)
    counted_with = str(report.token_lengths.get("counted_with", ""))
    table = Table(title="Lengths", caption=Text(f"{unit}: {counted_with}"))
    for name in ("", "min", "p50", "p95", "max"):
        table.add_column(name, justify="right" if name else "left")
    for label, summary in (("chars", report.char_lengths), (unit, report.token_lengths)):
        cells = (f"{summary[k]:,}" if summary[k] is not None else "-" for k in ("min", "p50", "p95", "max"))
        table.add_row(label, *cells)
    return table


def truncation_line(report: DataReport) -> Text | None:
    """How many rows max_length would cut, or None when no max_length was given."""
    t = report.truncation
    if not t:
        return None
    return Text(
        f"max_length {t['max_length']:,} ({length_unit(report)}): {t['rows_over']:,} of {report.rows:,} "
        f"rows ({t['share']:.1%}) would be cut"
    )


def pairs_table(pairs: dict[str, Any]) -> Table:
    """Preference pairs: how many can train, why not, lengths of each side, truncation, length bias."""
    unit = pairs["unit"]
    table = Table(title="Pairs", caption=Text(f"{unit}: {pairs['counted_with']}"), show_header=False)
    table.add_row("pairs", f"{pairs['pairs']:,} ({pairs['usable']:,} can train)")
    table.add_row("chosen = rejected", f"{pairs['identical']:,}")
    table.add_row("missing chosen / rejected", f"{pairs['missing_chosen']:,} / {pairs['missing_rejected']:,}")
    table.add_row("empty prompt", f"{pairs['empty_prompt']:,}")
    for side in ("prompt", "chosen", "rejected"):
        s = pairs[f"{side}_lengths"]
        if s["max"] is not None:
            table.add_row(f"{side} {unit}", f"p50 {s['p50']:,} · p95 {s['p95']:,} · max {s['max']:,}")
    if pairs["chosen_longer_share"] is not None:
        table.add_row("chosen longer", f"in {pairs['chosen_longer_share']:.0%} of pairs")
    if pairs["truncated_share"] is not None:
        table.add_row(
            f"over max_length {pairs['max_length']}",
            f"{pairs['truncated']:,} ({pairs['truncated_share']:.1%})",
        )
    near = pairs["near_duplicate_prompts"]
    if near is not None:
        table.add_row(
            f"near-duplicate prompts (≥{near['threshold']:g})",
            f"{near['clusters']:,} clusters ({near['rows']:,} extra rows)",
        )
    return table


def kto_table(kto: dict[str, Any]) -> Table:
    table = Table(title="KTO labels", show_header=False)
    table.add_row("desirable (true)", f"{kto['desirable']:,}")
    table.add_row("undesirable (false)", f"{kto['undesirable']:,}")
    table.add_row("can train", f"{kto['usable']:,} of {kto['rows']:,}")
    return table


def preference_tables(report: DataReport) -> list[Table]:
    """The pairs (or KTO labels) table of preference data; none for other formats."""
    tables = []
    if report.pairs:
        tables.append(pairs_table(report.pairs))
    if report.kto:
        tables.append(kto_table(report.kto))
    return tables


def quality_table(report: DataReport) -> Table:
    """Duplicates, texts with conflicting labels, constant columns and PII counts."""
    table = Table(title="Duplicates and personal data", show_header=False)
    table.add_row("exact duplicates", f"{report.exact_duplicates:,}")
    if report.near_duplicate_clusters is not None:
        table.add_row(
            f"near-duplicate clusters (≥{report.near_duplicate_threshold:g})",
            f"{report.near_duplicate_clusters:,} ({report.near_duplicate_rows:,} extra rows)",
        )
    conflicts = report.label_conflicts
    if conflicts is not None:
        table.add_row(
            "texts with conflicting labels",
            f"{conflicts['texts']:,} ({conflicts['rows']:,} rows)" if conflicts["texts"] else "none",
        )
    for column, value in report.constant_columns.items():
        table.add_row(Text(f"same in every row: {column}"), Text(value[:40] if value.strip() else "(empty)"))
    for kind, count in report.pii.items():
        table.add_row(f"PII: {kind}", f"{count:,}")
    if not report.pii:
        table.add_row("PII", "none found")
    return table


def quality_examples(report: DataReport) -> list[Text]:
    """A couple of conflicting-label texts and masked PII examples, one line each."""
    lines = []
    for example in (report.label_conflicts or {}).get("examples", [])[:2]:
        counts = ", ".join(f"{label} ×{count}" for label, count in example["labels"].items())
        lines.append(Text.assemble("  ", (f"labels {counts}:", "dim"), " ", example["text"]))
    for kind, shown in report.pii_examples.items():
        lines.extend(Text.assemble("  ", (f"{kind}:", "dim"), " ", example) for example in shown[:2])
    for line in lines:
        line.no_wrap, line.overflow = True, "ellipsis"
    return lines


def labels_table(report: DataReport, width: int = 30) -> Table | None:
    """Label counts with bars and the imbalance ratio; None for data without labels."""
    if not report.labels:
        return None
    caption = f"imbalance ratio {report.label_imbalance_ratio}"
    table = Table(title="Labels", caption=caption, show_header=False)
    top = max(report.labels.values())
    for label, count in list(report.labels.items())[:20]:
        table.add_row(Text(label[:20]), bar(count, top, width), f"{count:,}")
    return table


def examples_tables(report: DataReport) -> list[Table]:
    """The shortest and the longest rows."""
    tables = []
    for name, rows in (("shortest", report.shortest), ("longest", report.longest)):
        table = Table(title=f"{name.capitalize()} examples", show_lines=False)
        table.add_column("row", justify="right")
        table.add_column("chars", justify="right")
        table.add_column("text", overflow="ellipsis", no_wrap=True, max_width=58)
        for row in rows:
            table.add_row(str(row["row"]), f"{row['chars']:,}", Text(row["text"]))
        tables.append(table)
    return tables


def warning_lines(report: DataReport) -> list[Text]:
    return [Text.assemble(("warning:", "yellow"), " ", warning) for warning in report.warnings]


def render_report(report: DataReport, console: Console) -> None:
    """Print the whole report (`tuner inspect`): overview, fields, lengths with histograms,
    truncation, pairs, duplicates and PII, labels, examples, warnings."""
    unit = length_unit(report)
    parts: list[RenderableType | None] = [
        overview_table(report),
        fields_table(report),
        lengths_table(report),
        histogram_table("characters per example", report.char_lengths),
        histogram_table(f"{unit} per example", report.token_lengths),
        truncation_line(report),
        *preference_tables(report),
        quality_table(report),
        *quality_examples(report),
        labels_table(report),
        *examples_tables(report),
        *warning_lines(report),
    ]
    for part in parts:
        if part is not None:
            console.print(part)


def cleaning_table(steps: Sequence[StepReport]) -> Table:
    """What each cleaning step did: rows before and after, rows changed, two examples."""
    table = Table(box=None, padding=(0, 1), show_edge=False, header_style="bold")
    table.add_column("#", justify="right")
    table.add_column("step", no_wrap=True)
    table.add_column("before", justify="right")
    table.add_column("after", justify="right")
    table.add_column("changed", justify="right")
    table.add_column("examples", overflow="fold")
    for i, step in enumerate(steps, 1):
        lines = []
        for example in step.examples[:2]:
            if "dropped" in example:
                lines.append(f"dropped: {example['dropped']}")
            elif "before" in example:
                lines.append(f"{example['before']} → {example['after']}")
        table.add_row(
            str(i),
            step.op,
            f"{step.rows_before:,}",
            f"{step.rows_after:,}",
            f"{step.changed_rows:,}",
            Text("\n".join(lines), style="dim"),
        )
    return table
