"""Render a DataReport in the terminal with rich: tables and block-bar histograms, 80 columns wide."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from tuner_tui.data.report import DataReport

BAR_WIDTH = 40
_BLOCKS = " ▏▎▍▌▋▊▉█"


def bar(value: float, largest: float, width: int = BAR_WIDTH) -> str:
    """A horizontal bar of unicode blocks, `width` cells for `largest`."""
    if largest <= 0:
        return ""
    eighths = round(value / largest * width * 8)
    full, rest = divmod(eighths, 8)
    return "█" * full + (_BLOCKS[rest] if rest else "")


def _histogram(title: str, summary: dict[str, Any]) -> Table:
    table = Table(title=title, show_header=False, box=None, padding=(0, 1))
    histogram = summary.get("histogram")
    if not histogram:
        return table
    edges, counts = histogram["edges"], histogram["counts"]
    top = max(counts) or 1
    for i, count in enumerate(counts):
        last = i == len(counts) - 1
        label = f"≥{edges[i]:,.0f}" if last else f"{edges[i]:,.0f}–{edges[i + 1]:,.0f}"
        table.add_row(label, bar(count, top, 36), f"{count:,}")
    return table


def render_report(report: DataReport, console: Console) -> None:
    """Print the report: overview, fields, lengths with histograms, duplicates, PII, labels, examples."""
    data = report.to_json()
    overview = Table(title="Data", show_header=False, box=None, padding=(0, 1))
    overview.add_row("source", str(data["source"]))
    overview.add_row("format", f"{data['format']}" + ("" if data["trainable"] else " (not trainable yet)"))
    overview.add_row("evidence", "; ".join(data["evidence"]))
    overview.add_row("fields", ", ".join(f"{k} → {v}" for k, v in data["fields"].items()))
    overview.add_row("rows", f"{data['rows']:,}")
    overview.add_row("columns", ", ".join(data["columns"]))
    overview.add_row("encoding", str(data["load"]["encoding"]))
    if data["load"]["skipped_rows"]:
        overview.add_row("skipped", f"{data['load']['skipped_rows']:,} malformed row(s)")
    for note in data["load"]["notes"]:
        overview.add_row("note", note)
    console.print(overview)

    fields = Table(title="Fields")
    for name in ("role", "column", "missing", "empty"):
        fields.add_column(name, justify="right" if name in ("missing", "empty") else "left")
    for role, counts in data["field_counts"].items():
        fields.add_row(role, data["fields"][role], f"{counts['missing']:,}", f"{counts['empty']:,}")
    if data["empty_turns"] is not None:
        fields.caption = f"{data['empty_turns']:,} empty turn(s) in conversations"
    console.print(fields)

    lengths = Table(title="Lengths", caption=f"tokens: {data['token_lengths']['counted_with']}")
    for name in ("", "min", "p50", "p95", "max"):
        lengths.add_column(name, justify="right" if name else "left")
    for name in ("char_lengths", "token_lengths"):
        s = data[name]
        lengths.add_row(
            name.split("_")[0],
            *(f"{s[k]:,}" if s[k] is not None else "-" for k in ("min", "p50", "p95", "max")),
        )
    console.print(lengths)
    console.print(_histogram("characters per example", data["char_lengths"]))
    console.print(_histogram("tokens per example", data["token_lengths"]))
    if data["truncation"]:
        t = data["truncation"]
        console.print(
            f"max_length {t['max_length']}: {t['rows_over']:,} rows ({t['share']:.1%}) would be cut"
        )

    quality = Table(title="Duplicates and personal data", show_header=False)
    quality.add_row("exact duplicates", f"{data['exact_duplicates']:,}")
    if data["near_duplicate_clusters"] is not None:
        quality.add_row(
            f"near-duplicate clusters (≥{data['near_duplicate_threshold']:g})",
            f"{data['near_duplicate_clusters']:,} ({data['near_duplicate_rows']:,} extra rows)",
        )
    for kind, count in data["pii"].items():
        quality.add_row(f"PII: {kind}", f"{count:,}")
    if not data["pii"]:
        quality.add_row("PII", "none found")
    console.print(quality)
    for kind, examples in data["pii_examples"].items():
        for example in examples[:2]:
            console.print(f"  [dim]{kind}:[/] {example}", overflow="ellipsis", no_wrap=True)

    if data["labels"]:
        labels = Table(
            title="Labels", caption=f"imbalance ratio {data['label_imbalance_ratio']}", show_header=False
        )
        top = max(data["labels"].values())
        for label, count in list(data["labels"].items())[:20]:
            labels.add_row(label[:20], bar(count, top, 30), f"{count:,}")
        console.print(labels)

    for name in ("shortest", "longest"):
        examples = Table(title=f"{name.capitalize()} examples", show_lines=False)
        examples.add_column("row", justify="right")
        examples.add_column("chars", justify="right")
        examples.add_column("text", overflow="ellipsis", no_wrap=True, max_width=58)
        for row in data[name]:
            examples.add_row(str(row["row"]), f"{row['chars']:,}", row["text"])
        console.print(examples)
    for warning in data["warnings"]:
        console.print(f"[yellow]warning:[/] {warning}")
