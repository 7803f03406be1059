"""A comparison of runs as a person reads it: one presenter for `tuner compare` and the wizard's
Compare screen. It turns the engine's comparison (iterate/compare.py, the `--json` contract) into
rich tables; Textual-free.
"""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from tuner_tui.evaluation.report import format_metric
from tuner_tui.iterate.stats import NO_DIFFERENCE
from tuner_tui.runs.state import format_bytes

DISAGREEMENTS_SHOWN = 10
VERDICT_STYLES = {"B better": "bold green", "A better": "bold red", NO_DIFFERENCE: "yellow"}
COST_ROWS = (
    ("wall time", "wall_s"),
    ("training time", "train_s"),
    ("steps", "steps"),
    ("tokens trained", "tokens"),
    ("tokens/s", "tokens_per_s"),
    ("peak RSS", "peak_rss_bytes"),
    ("peak GPU memory", "peak_gpu_memory_bytes"),
)


def letter(i: int) -> str:
    return chr(ord("A") + i) if i < 26 else str(i + 1)


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, dict)):
        import json

        return json.dumps(value, ensure_ascii=False)
    return "-" if value is None else str(value)


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return "-"
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def cost_cell(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key.endswith("_s") and key != "tokens_per_s":
        return _duration(value)
    if key.endswith("_bytes"):
        return format_bytes(int(value))
    if key == "tokens_per_s":
        return f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else _value(value)


def runs_table(result: dict[str, Any]) -> Table:
    table = Table("", "run", "path", title=Text("Runs"))
    for i, run in enumerate(result["runs"]):
        table.add_row(Text(letter(i), "bold"), Text(run["run_id"]), Text(run["path"], "dim"))
    return table


def diff_table(result: dict[str, Any]) -> Table:
    letters = [letter(i) for i in range(len(result["runs"]))]
    table = Table("recipe key", *letters, title=Text("Recipe differences"))
    for key, values in result["recipe_diff"].items():
        table.add_row(Text(key), *(Text(_value(v)) for v in values))
    if not result["recipe_diff"]:
        table.add_row(Text("(the recipes are identical)", "dim"), *("" for _ in letters))
    for name, found in result.get("fingerprints", {}).items():
        same = found.get("same")
        table.add_row(
            Text(f"{name} fingerprint", "dim"),
            *(Text(str(v)[:19] if v else "-", "dim" if same else "yellow") for v in found.get("values", [])),
        )
    return table


def cost_table(result: dict[str, Any]) -> Table:
    ids = [run["run_id"] for run in result["runs"]]
    table = Table("cost", *(letter(i) for i in range(len(ids))), title=Text("Cost"))
    for label, key in COST_ROWS:
        cells = [cost_cell(key, result["cost"].get(run_id, {}).get(key)) for run_id in ids]
        if any(c != "-" for c in cells):
            table.add_row(Text(label), *(Text(c) for c in cells))
    return table


def verdict_text(verdict: str) -> Text:
    return Text(verdict, VERDICT_STYLES.get(verdict, "dim"))


def p_text(p: Any) -> str:
    if not isinstance(p, (int, float)):
        return "-"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def metrics_table(metrics: dict[str, dict[str, Any]], title: str = "Metrics (B - A)") -> Table:
    table = Table("metric", "A", "B", "B - A", "95% CI", "p", "n", "verdict", title=Text(title))
    for name, m in metrics.items():
        interval = (
            f"[{m['ci_low']:+.4f}, {m['ci_high']:+.4f}]"
            if isinstance(m.get("ci_low"), float) and isinstance(m.get("ci_high"), float)
            else "-"
        )
        difference = m.get("difference")
        table.add_row(
            Text(f"{name} ({'↑' if m.get('better') == 'higher' else '↓'})"),
            Text(format_metric(m.get("a"))),
            Text(format_metric(m.get("b"))),
            Text(f"{difference:+.4f}" if isinstance(difference, float) else "-"),
            Text(interval),
            Text(p_text(m.get("p_value"))),
            Text(str(m.get("n", "-"))),
            verdict_text(str(m.get("verdict"))),
        )
    return table


def _short(value: Any, width: int = 40) -> str:
    from tuner_tui.data.pii import mask_text

    text = " ".join(mask_text(str(value)).split()) if value is not None else "-"
    return text if len(text) <= width else text[: width - 1] + "…"


def disagreements_table(rows: list[dict[str, Any]], shown: int = DISAGREEMENTS_SHOWN) -> Table:
    """The first rows where one run is right and the other wrong (personal data masked)."""
    fixed = sum(1 for r in rows if r["change"].startswith("B right"))
    title = f"Disagreements: {len(rows)} rows ({fixed} B right/A wrong, {len(rows) - fixed} A right/B wrong)"
    table = Table("row", "reference", "A says", "B says", "change", "Δ score", title=Text(title))
    for row in rows[:shown]:
        change = row.get("score_change")
        table.add_row(
            Text(row["row_id"][:12], "dim"),
            Text(_short(row.get("reference"))),
            Text(_short(row["a"].get("prediction")), "green" if row["a"].get("correct") else "red"),
            Text(_short(row["b"].get("prediction")), "green" if row["b"].get("correct") else "red"),
            Text(row["change"]),
            Text(f"{change:+.3f}" if isinstance(change, float) else "-"),
        )
    return table


def headline(result: dict[str, Any]) -> Text:
    """'B better on accuracy (+0.120, 95% CI [+0.06, +0.18], p<0.001, n=108)'."""
    primary = result.get("primary_metric")
    verdict = str(result.get("verdict"))
    text = Text.assemble(("Verdict: ", "bold"), verdict_text(verdict))
    if primary and primary in result.get("metrics", {}):
        m = result["metrics"][primary]
        difference = m.get("difference")
        parts = [f"B - A = {difference:+.4f}" if isinstance(difference, float) else ""]
        if isinstance(m.get("ci_low"), float):
            parts.append(f"95% CI [{m['ci_low']:+.4f}, {m['ci_high']:+.4f}]")
        parts += [f"p={p_text(m.get('p_value'))}", f"n={m.get('n')}"]
        text.append(f" on {primary} (" + ", ".join(p for p in parts if p) + ")")
    return text


def comparison_renderables(result: dict[str, Any]) -> list[RenderableType]:
    """Everything `tuner compare` prints, in order."""
    out: list[RenderableType] = [runs_table(result), diff_table(result), cost_table(result)]
    out.append(metrics_table(result["metrics"]))
    if result["disagreements"]:
        out.append(disagreements_table(result["disagreements"]))
    for pair in result.get("pairs", [])[1:]:
        title = f"Metrics: {pair['b']} - {pair['a']}"
        out.append(
            Group(
                metrics_table(pair["metrics"], title),
                Text.assemble("Verdict: ", verdict_text(pair["verdict"])),
            )
        )
    out.append(headline(result))
    return out


# --- sweeps ------------------------------------------------------------------------------------


def leaderboard_table(sweep: dict[str, Any], title: str | None = None) -> Table:
    """The trials of a sweep (sweep.json), best first; unfinished trials last."""
    from tuner_tui.iterate.sweep import ranked_trials

    metric = sweep.get("metric", "?")
    keys = list(sweep.get("space", {}))
    table = Table(
        "#", "trial", *keys, "phase", metric, "run", title=Text(title or f"Sweep {sweep.get('id', '')}")
    )
    best = (sweep.get("best") or {}).get("trial")
    for rank, trial in enumerate(ranked_trials(sweep), start=1):
        value = trial.get("metric")
        style = "bold green" if trial.get("number") == best else ""
        table.add_row(
            Text(str(rank) if value is not None else "-"),
            Text(str(trial.get("number")), style),
            *(Text(_value(trial.get("values", {}).get(k))) for k in keys),
            Text(str(trial.get("phase", "-"))),
            Text(format_metric(value), style),
            Text(str(trial.get("run_id") or "-"), "dim"),
        )
    return table
