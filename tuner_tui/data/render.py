"""Render a DataReport in the terminal with rich: tables and block-bar histograms, 80 columns wide.

Everything taken from the data or the report (paths, notes, snippets, warnings that name "[data]")
is passed as `Text`, never as a markup string, so it prints as written on any console.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from tuner_tui.data.report import DataReport
from tuner_tui.views.bars import bar, bin_labels


def _histogram(title: str, summary: dict[str, Any]) -> Table:
    table = Table(title=title, show_header=False, box=None, padding=(0, 1))
    histogram = summary.get("histogram")
    if not histogram:
        return table
    counts = histogram["counts"]
    top = max(counts) or 1
    for label, count in zip(bin_labels(histogram), counts, strict=True):
        table.add_row(label, bar(count, top, 36), f"{count:,}")
    return table


def pairs_table(pairs: dict[str, Any]) -> Table:
    """Preference pairs: how many can train, why not, lengths of each side, truncation, length bias
    (`tuner inspect` and the wizard's Data step show this one table)."""
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


def render_report(report: DataReport, console: Console) -> None:
    """Print the report: overview, fields, lengths with histograms, duplicates, PII, labels, examples."""
    data = report.to_json()
    overview = Table(title="Data", show_header=False, box=None, padding=(0, 1))
    overview.add_row("source", Text(str(data["source"])))
    overview.add_row("format", f"{data['format']}" + ("" if data["trainable"] else " (not trainable yet)"))
    overview.add_row("evidence", Text("; ".join(data["evidence"])))
    overview.add_row("fields", Text(", ".join(f"{k} → {v}" for k, v in data["fields"].items())))
    overview.add_row("rows", f"{data['rows']:,}")
    overview.add_row("columns", Text(", ".join(data["columns"])))
    overview.add_row("encoding", Text(str(data["load"]["encoding"])))
    if data["load"]["skipped_rows"]:
        overview.add_row("skipped", f"{data['load']['skipped_rows']:,} malformed row(s)")
    for note in data["load"]["notes"]:
        overview.add_row("note", Text(note))
    console.print(overview)

    fields = Table(title="Fields")
    for name in ("role", "column", "missing", "empty"):
        fields.add_column(name, justify="right" if name in ("missing", "empty") else "left")
    for role, counts in data["field_counts"].items():
        fields.add_row(role, Text(data["fields"][role]), f"{counts['missing']:,}", f"{counts['empty']:,}")
    if data["empty_turns"] is not None:
        fields.caption = f"{data['empty_turns']:,} empty turn(s) in conversations"
    console.print(fields)

    # Without a tokenizer the lengths are whitespace words: say so wherever they are shown.
    unit = data["token_lengths"].get("unit", "tokens")
    lengths = Table(title="Lengths", caption=Text(f"{unit}: {data['token_lengths']['counted_with']}"))
    for name in ("", "min", "p50", "p95", "max"):
        lengths.add_column(name, justify="right" if name else "left")
    for label, name in (("chars", "char_lengths"), (unit, "token_lengths")):
        s = data[name]
        lengths.add_row(
            label, *(f"{s[k]:,}" if s[k] is not None else "-" for k in ("min", "p50", "p95", "max"))
        )
    console.print(lengths)
    console.print(_histogram("characters per example", data["char_lengths"]))
    console.print(_histogram(f"{unit} per example", data["token_lengths"]))
    if data["truncation"]:
        t = data["truncation"]
        console.print(
            f"max_length {t['max_length']} ({unit}): {t['rows_over']:,} rows ({t['share']:.1%}) would be cut"
        )

    if data.get("pairs"):
        console.print(pairs_table(data["pairs"]))
    if data.get("kto"):
        console.print(kto_table(data["kto"]))

    quality = Table(title="Duplicates and personal data", show_header=False)
    quality.add_row("exact duplicates", f"{data['exact_duplicates']:,}")
    if data["near_duplicate_clusters"] is not None:
        quality.add_row(
            f"near-duplicate clusters (≥{data['near_duplicate_threshold']:g})",
            f"{data['near_duplicate_clusters']:,} ({data['near_duplicate_rows']:,} extra rows)",
        )
    conflicts = data.get("label_conflicts")
    if conflicts is not None:
        quality.add_row(
            "texts with conflicting labels",
            f"{conflicts['texts']:,} ({conflicts['rows']:,} rows)" if conflicts["texts"] else "none",
        )
    for column, value in data.get("constant_columns", {}).items():
        quality.add_row(
            Text(f"same in every row: {column}"), Text(value[:40] if value.strip() else "(empty)")
        )
    for kind, count in data["pii"].items():
        quality.add_row(f"PII: {kind}", f"{count:,}")
    if not data["pii"]:
        quality.add_row("PII", "none found")
    console.print(quality)
    for example in (conflicts or {}).get("examples", [])[:2]:
        counts = ", ".join(f"{label} ×{count}" for label, count in example["labels"].items())
        line = Text.assemble("  ", (f"labels {counts}:", "dim"), " ", example["text"])
        console.print(line, overflow="ellipsis", no_wrap=True)
    for kind, shown in data["pii_examples"].items():
        for example in shown[:2]:
            console.print(
                Text.assemble("  ", (f"{kind}:", "dim"), " ", example), overflow="ellipsis", no_wrap=True
            )

    if data["labels"]:
        labels = Table(
            title="Labels", caption=f"imbalance ratio {data['label_imbalance_ratio']}", show_header=False
        )
        top = max(data["labels"].values())
        for label, count in list(data["labels"].items())[:20]:
            labels.add_row(Text(label[:20]), bar(count, top, 30), f"{count:,}")
        console.print(labels)

    for name in ("shortest", "longest"):
        examples = Table(title=f"{name.capitalize()} examples", show_lines=False)
        examples.add_column("row", justify="right")
        examples.add_column("chars", justify="right")
        examples.add_column("text", overflow="ellipsis", no_wrap=True, max_width=58)
        for row in data[name]:
            examples.add_row(str(row["row"]), f"{row['chars']:,}", Text(row["text"]))
        console.print(examples)
    for warning in data["warnings"]:
        console.print(Text.assemble(("warning:", "yellow"), " ", warning))  # warnings name [data] keys
