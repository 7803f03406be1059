"""`tuner compare`: two or more runs side by side, with paired statistics on the same test rows.

What is compared:
- the frozen recipes (every key whose value differs; the environment block aside) and whether the
  data and model fingerprints match;
- the cost, from each run's events: wall time, training time, tokens trained, tokens/s, steps,
  peak memory (process RSS, GPU memory when there is telemetry for it);
- the metrics, on the same rows: each run's report/predictions.jsonl must carry the same row ids
  in the same order, from the same data fingerprint (or all runs are scored on the first run's
  test set, `--on RUN`). Each metric gets B - A, a seeded 95% paired-bootstrap interval and a
  p-value (McNemar's exact test for accuracy, a paired permutation test otherwise), and a verdict
  with the sample size behind it (iterate/stats.py).

The result is a plain dict (the JSON contract of `tuner compare --json`); views/comparison.py
presents it. No torch here, except for `--on`, which evaluates (evaluation/run.py) in process.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tuner_tui.errors import TunerError
from tuner_tui.iterate import stats
from tuner_tui.recipe import LOWER_IS_BETTER, RecipeError, read_recipe
from tuner_tui.runs.events import iter_events
from tuner_tui.runs.layout import RunDir

CORPUS_METRICS = ("bleu", "chrf")
"""Corpus-level scores: no per-example values, so shown side by side but not tested."""
DEFAULT_PRIMARY = {
    "sequence_classification": "accuracy",
    "causal_lm": "perplexity",
    "preference": "preference_accuracy",
}
NOT_TESTED = "not tested (a corpus-level score with no per-example values)"


@dataclass
class Evaluated:
    """One run as compared: its frozen recipe, report and per-example outputs."""

    run: RunDir
    recipe: dict[str, Any]
    report: dict[str, Any]
    predictions: list[dict[str, Any]]
    report_dir: Path
    general: list[dict[str, Any]] | None = None


def _frozen_recipe(run: RunDir) -> dict[str, Any]:
    recipe, problems, _ = read_recipe(run.recipe)
    if problems:
        raise RecipeError(str(run.recipe), problems)
    return recipe.to_dict()


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TunerError(
            f"{path} does not exist: the run {path.parent.parent} has no evaluation report yet. Wait for "
            f"it to finish, or evaluate it with `tuner eval {path.parent.parent}`, then compare again."
        ) from None
    except ValueError as exc:
        raise TunerError(f"{path} is not valid JSON ({exc}): evaluate the run again (tuner eval).") from None
    if not isinstance(data, dict):
        raise TunerError(f"{path} is not an evaluation report: evaluate the run again (tuner eval).")
    return data


def load_evaluated(run: RunDir, report_dir: Path | None = None) -> Evaluated:
    """A run's report and predictions (from `report_dir`, default its report/).

    Raises:
        TunerError: no report, or a report written before per-example outputs existed.
    """
    from tuner_tui.evaluation.general import GENERAL_FILE
    from tuner_tui.evaluation.predictions import read_predictions

    folder = report_dir or run.report
    report = _read_json(folder / "report.json")
    if not isinstance(report.get("predictions"), dict) or not (folder / "predictions.jsonl").exists():
        raise TunerError(
            f"The run {run.root} was evaluated before tuner wrote per-example outputs "
            f"({folder / 'predictions.jsonl'} is missing), so it cannot be compared row by row. "
            f"Evaluate it again with `tuner eval {run.root}`, or pass `--on RUN` to score every run on "
            "that run's test set."
        )
    general = None
    if (folder / GENERAL_FILE).exists():
        general = read_predictions(folder / GENERAL_FILE)
    return Evaluated(
        run, _frozen_recipe(run), report, read_predictions(folder / "predictions.jsonl"), folder, general
    )


# -- recipe diff --------------------------------------------------------------------------------


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: value}


def recipe_diff(recipes: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Every key whose value differs between the recipes: key -> the value in each, in order."""
    flat = []
    for recipe in recipes:
        content = {k: v for k, v in recipe.items() if k != "environment"}
        flat.append(_flatten(content))
    keys = sorted({k for f in flat for k in f})
    return {
        k: [f.get(k) for f in flat]
        for k in keys
        if len({json.dumps(f.get(k), sort_keys=True) for f in flat}) > 1
    }


def fingerprints(recipes: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Data and model fingerprints of each run's environment lock, and whether they match."""
    out = {}
    for name, keys in (
        ("data", ("data_content_fingerprint", "data_fingerprint")),
        ("model", ("model_fingerprint",)),
    ):
        envs = [r.get("environment") or {} for r in recipes]
        values = [next((env[k] for k in keys if env.get(k)), None) for env in envs]
        known = [v for v in values if v]
        out[name] = {"values": values, "same": len(known) == len(values) and len(set(known)) == 1}
    return out


# -- cost ---------------------------------------------------------------------------------------


def _seconds(iso: Any) -> float | None:
    from datetime import datetime

    if not isinstance(iso, str):
        return None
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def run_cost(run: RunDir) -> dict[str, Any]:
    """What a run cost, from its events: wall time (first to last event), training time (the
    Trainer's own runtime, summed over resumes), tokens trained, tokens/s, steps, peak memory."""
    first = last = None
    train_s = 0.0
    tokens = steps = 0
    peak_rss = peak_gpu = 0.0
    for event in iter_events(run.events):
        when = _seconds(event.get("time"))
        if when is not None:
            first = when if first is None else first
            last = when
        kind = event.get("type")
        if kind == "metric":
            steps = max(steps, int(_number(event.get("step")) or 0))
            tokens = max(tokens, int(_number(event.get("tokens_seen")) or 0))
        elif kind == "log" and _number(event.get("train_runtime")) is not None:
            train_s += float(event["train_runtime"])
            tokens = max(tokens, int(_number(event.get("tokens_seen")) or 0))
        elif kind == "telemetry":
            peak_rss = max(peak_rss, _number(event.get("rss_bytes")) or 0.0)
            for gpu in event.get("gpus") or []:
                if isinstance(gpu, dict):
                    peak_gpu = max(peak_gpu, _number(gpu.get("memory_used")) or 0.0)
    return {
        "wall_s": (last - first) if first is not None and last is not None else None,
        "train_s": train_s or None,
        "tokens": tokens,
        "tokens_per_s": tokens / train_s if train_s and tokens else None,
        "steps": steps,
        "peak_rss_bytes": int(peak_rss) or None,
        "peak_gpu_memory_bytes": int(peak_gpu) or None,
    }


def loss_curve(run: RunDir) -> tuple[list[float], list[float]]:
    """The training loss over steps (finite points), for overlaid curves."""
    xs: list[float] = []
    ys: list[float] = []
    for event in iter_events(run.events):
        if event.get("type") == "metric":
            step, loss = _number(event.get("step")), _number(event.get("loss"))
            if step is not None and loss is not None:
                xs.append(step)
                ys.append(loss)
    return xs, ys


# -- same rows ----------------------------------------------------------------------------------


def check_same_rows(first: Evaluated, other: Evaluated) -> None:
    """Refuse, in words, two evaluations that were not scored on the same rows."""
    a, b = first.report["predictions"], other.report["predictions"]
    ids_a = [p["row_id"] for p in first.predictions]
    ids_b = [p["row_id"] for p in other.predictions]
    if first.report.get("task") != other.report.get("task"):
        raise TunerError(
            f"{first.run.run_id} is a {first.report.get('task')} run and {other.run.run_id} a "
            f"{other.report.get('task')} run: their metrics cannot be compared. Compare runs of one task."
        )
    same_data = a.get("data_fingerprint") == b.get("data_fingerprint")
    if same_data and ids_a == ids_b:
        return
    shared = len(set(ids_a) & set(ids_b))
    why = (
        f"their data differs (content fingerprints {str(a.get('data_fingerprint'))[:19]} vs "
        f"{str(b.get('data_fingerprint'))[:19]})"
        if not same_data
        else f"their test rows differ ({len(ids_a)} vs {len(ids_b)} rows, {shared} in common)"
    )
    raise TunerError(
        f"{first.run.run_id} and {other.run.run_id} were not evaluated on the same test rows: {why}, so a "
        f"paired comparison would compare different questions. Score both on the first run's test set "
        f"with `tuner compare {first.run.root} {other.run.root} --on {first.run.root}`, or compare runs "
        "of the same data and split."
    )


# -- metrics ------------------------------------------------------------------------------------


def _model(row: dict[str, Any]) -> dict[str, Any]:
    tuned = row.get("tuned")
    return tuned if isinstance(tuned, dict) else {}


def _floats(values: list[Any]) -> np.ndarray | None:
    if any(_number(v) is None and not isinstance(v, bool) for v in values):
        return None
    return np.array([float(v) for v in values], dtype=np.float64)


def paired_metrics(
    first: Evaluated, other: Evaluated, labels: list[str] | None = None
) -> dict[str, tuple[stats.PairedMetric, tuple[np.ndarray, np.ndarray] | None]]:
    """The metrics both reports measured that per-example outputs reproduce, as PairedMetrics
    (with the 0/1 outcomes for McNemar where the metric is accuracy)."""
    task = first.report.get("task")
    a = [_model(p) for p in first.predictions]
    b = [_model(p) for p in other.predictions]
    names = set(first.report.get("metrics", {}).get("tuned", {})) & set(
        other.report.get("metrics", {}).get("tuned", {})
    )
    found: dict[str, tuple[stats.PairedMetric, tuple[np.ndarray, np.ndarray] | None]] = {}
    if task in ("sequence_classification", "preference"):
        name = "accuracy" if task == "sequence_classification" else "preference_accuracy"
        ca, cb = [x.get("correct") for x in a], [x.get("correct") for x in b]
        if all(isinstance(v, bool) for v in ca + cb):
            hits_a, hits_b = np.array(ca, dtype=float), np.array(cb, dtype=float)
            found[name] = (stats.mean_metric(name, hits_a, hits_b), (hits_a > 0, hits_b > 0))
    if task == "sequence_classification":
        refs = [str(p.get("reference")) for p in first.predictions]
        every = sorted(set(labels or []) | set(refs) | {str(x.get("prediction")) for x in a + b})
        code = {label: i for i, label in enumerate(every)}
        pa = np.array([code[str(x.get("prediction"))] for x in a])
        pb = np.array([code[str(x.get("prediction"))] for x in b])
        ref = np.array([code[r] for r in refs])
        for kind in ("precision", "recall", "f1"):
            name = f"{kind}_macro"
            if name in names or (kind == "f1" and "f1" in names):
                found[name] = (stats.macro_metric(name, kind, pa, pb, ref, len(every)), None)
    if task == "causal_lm":
        nll_a, nll_b = _floats([x.get("nll") for x in a]), _floats([x.get("nll") for x in b])
        tokens = _floats([x.get("tokens") for x in a])
        if nll_a is not None and nll_b is not None and tokens is not None:
            for name, exponentiate in (("perplexity", True), ("loss", False)):
                if name in names:
                    found[name] = (stats.perplexity_metric(name, nll_a, nll_b, tokens, exponentiate), None)
        for name in ("exact_match", "rouge1", "rouge2", "rouge_l"):
            if name not in names:
                continue
            va = _floats([(x.get("metrics") or {}).get(name) for x in a])
            vb = _floats([(x.get("metrics") or {}).get(name) for x in b])
            if va is not None and vb is not None:
                outcomes = (va > 0.5, vb > 0.5) if name == "exact_match" else None
                found[name] = (stats.mean_metric(name, va, vb), outcomes)
        general = _general_metric(first, other)
        if general is not None:
            found["general_perplexity_change"] = (general, None)
    return found


def _general_metric(first: Evaluated, other: Evaluated) -> stats.PairedMetric | None:
    fa, fb = first.report.get("forgetting"), other.report.get("forgetting")
    if not (first.general and other.general and isinstance(fa, dict) and isinstance(fb, dict)):
        return None
    if fa.get("fingerprint") != fb.get("fingerprint"):
        return None
    if [r["row_id"] for r in first.general] != [r["row_id"] for r in other.general]:
        return None
    columns = [
        _floats([r.get(key) for r in rows])
        for rows in (first.general, other.general)
        for key in ("base_nll", "tuned_nll")
    ]
    tokens = _floats([r.get("tokens") for r in first.general])
    if tokens is None or any(c is None for c in columns):
        return None
    base_a, tuned_a, base_b, tuned_b = columns
    return stats.change_metric("general_perplexity_change", base_a, tuned_a, base_b, tuned_b, tokens)  # type: ignore[arg-type]


def _clean(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def metric_table(
    first: Evaluated,
    other: Evaluated,
    only: str | None = None,
    resamples: int = stats.RESAMPLES,
    seed: int = stats.SEED,
) -> dict[str, dict[str, Any]]:
    """{metric: {a, b, difference, ci_low, ci_high, p_value, n, verdict, test, better}}."""
    labels = (first.report.get("metrics", {}).get("tuned", {}).get("confusion_matrix") or {}).get("labels")
    found = paired_metrics(first, other, labels)
    table: dict[str, dict[str, Any]] = {}
    for name, (metric, outcomes) in sorted(found.items()):
        if only and name != only:
            continue
        result = stats.compare_metric(metric, outcomes, resamples, seed)
        higher = name not in LOWER_IS_BETTER
        table[name] = {
            "a": _clean(result.a),
            "b": _clean(result.b),
            "difference": _clean(result.difference),
            "ci_low": _clean(result.ci_low),
            "ci_high": _clean(result.ci_high),
            "p_value": result.p_value,
            "n": result.n,
            "verdict": stats.verdict(result, higher),
            "test": result.test,
            "better": "higher" if higher else "lower",
        }
    tuned_a = first.report.get("metrics", {}).get("tuned", {})
    tuned_b = other.report.get("metrics", {}).get("tuned", {})
    for name in CORPUS_METRICS:
        if (only and name != only) or name not in tuned_a or name not in tuned_b:
            continue
        va, vb = _number(tuned_a[name]), _number(tuned_b[name])
        table[name] = {
            "a": va, "b": vb, "difference": vb - va if va is not None and vb is not None else None,
            "ci_low": None, "ci_high": None, "p_value": None, "n": len(first.predictions),
            "verdict": NOT_TESTED, "test": "none", "better": "higher",
        }  # fmt: skip
    return table


def disagreements(first: Evaluated, other: Evaluated) -> list[dict[str, Any]]:
    """Rows where one run is right and the other wrong: rows B fixed first (largest score gain
    first), then rows B broke (largest loss first)."""
    found = []
    for pa, pb in zip(first.predictions, other.predictions, strict=True):
        a, b = _model(pa), _model(pb)
        ca, cb = a.get("correct"), b.get("correct")
        if not isinstance(ca, bool) or not isinstance(cb, bool) or ca == cb:
            continue
        sa, sb = _number(a.get("score")), _number(b.get("score"))
        found.append(
            {
                "row_id": pa["row_id"],
                "reference": pa.get("reference"),
                "a": {k: a.get(k) for k in ("prediction", "correct", "score")},
                "b": {k: b.get(k) for k in ("prediction", "correct", "score")},
                "change": "B right, A wrong" if cb else "A right, B wrong",
                "score_change": sb - sa if sa is not None and sb is not None else None,
            }
        )
    fixed = sorted((d for d in found if d["b"]["correct"]), key=lambda d: -(d["score_change"] or 0.0))
    broken = sorted((d for d in found if not d["b"]["correct"]), key=lambda d: d["score_change"] or 0.0)
    return fixed + broken


# -- the comparison -----------------------------------------------------------------------------


def primary_metric(recipe: dict[str, Any], task: str, table: dict[str, Any], asked: str | None) -> str | None:
    if asked:
        return asked
    for objective in recipe.get("objectives") or []:
        if objective.get("metric") in table:
            return str(objective["metric"])
    default = DEFAULT_PRIMARY.get(task)
    return default if default in table else next(iter(table), None)


def _check_metric(asked: str | None, tables: list[dict[str, Any]], task: str) -> None:
    from tuner_tui.recipe import METRICS

    if asked is None:
        return
    if asked not in METRICS:
        close = __import__("difflib").get_close_matches(asked, METRICS, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise TunerError(
            f"--metric '{asked}' is not a known metric.{hint} Choose one of {', '.join(METRICS)}."
        )
    if any(asked not in t for t in tables):
        available = sorted(set.intersection(*(set(t) for t in tables))) if tables else []
        raise TunerError(
            f"--metric '{asked}' was not measured on both runs of this {task} comparison (or has no "
            f"per-example values). Metrics these runs can be compared on: {', '.join(available) or 'none'}."
        )


def compare_runs(
    paths: list[Path],
    metric: str | None = None,
    on: Path | None = None,
    resamples: int = stats.RESAMPLES,
    seed: int = stats.SEED,
) -> dict[str, Any]:
    """Compare runs (the first is A; each other run is compared with it). The result is the JSON
    of `tuner compare --json`: runs, recipe_diff, fingerprints, cost, metrics, verdict,
    disagreements (for A vs B) and, with three or more runs, `pairs` (A vs each other run)."""
    if len(paths) < 2:
        raise TunerError("Give at least two run directories to compare: tuner compare RUN_A RUN_B.")
    runs = [RunDir.open(p) for p in paths]
    if len({r.root for r in runs}) < len(runs):
        raise TunerError("The same run is named twice: give two or more different run directories.")
    if on is not None:
        evaluated = evaluate_on(runs, RunDir.open(on))
    else:
        evaluated = [load_evaluated(r) for r in runs]
    first = evaluated[0]
    for other in evaluated[1:]:
        check_same_rows(first, other)
    recipes = [e.recipe for e in evaluated]
    task = str(first.report.get("task"))
    pairs = []
    for other in evaluated[1:]:
        table = metric_table(first, other, None, resamples, seed)
        pairs.append((other, table))
    _check_metric(metric, [t for _, t in pairs], task)
    if metric:
        pairs = [(o, {metric: t[metric]}) for o, t in pairs]
    result: dict[str, Any] = {
        "runs": [
            {"run_id": e.run.run_id, "path": str(e.run.root), "report": str(e.report_dir)} for e in evaluated
        ],
        "task": task,
        "recipe_diff": recipe_diff(recipes),
        "fingerprints": fingerprints(recipes),
        "cost": {e.run.run_id: run_cost(e.run) for e in evaluated},
        "rows": len(first.predictions),
        "statistics": {
            "bootstrap_resamples": resamples,
            "permutations": resamples,
            "seed": seed,
            "interval": "95% paired bootstrap, percentile",
            "alpha": stats.ALPHA,
        },
    }
    comparisons = []
    for other, table in pairs:
        primary = primary_metric(first.recipe, task, table, metric)
        comparisons.append(
            {
                "a": first.run.run_id,
                "b": other.run.run_id,
                "metrics": table,
                "primary_metric": primary,
                "verdict": table[primary]["verdict"] if primary else stats.NO_DIFFERENCE,
                "disagreements": disagreements(first, other),
            }
        )
    head = comparisons[0]
    result.update(
        metrics=head["metrics"],
        primary_metric=head["primary_metric"],
        verdict=head["verdict"],
        disagreements=head["disagreements"],
    )
    if len(comparisons) > 1:
        result["pairs"] = comparisons
    return result


# -- --on RUN: score every run on one run's test set --------------------------------------------


def evaluate_on(runs: list[RunDir], reference: RunDir) -> list[Evaluated]:
    """Each run's adapter scored on `reference`'s test rows (its data, split and sample), in
    report/on-<reference id>/ of each run; an up-to-date one is reused. Runs in this process,
    holding each run's lock while it evaluates it (no worker may write the run meanwhile)."""
    reference_recipe, problems, _ = read_recipe(reference.recipe)
    if problems:
        raise RecipeError(str(reference.recipe), problems)
    out = []
    for run in runs:
        folder = run.report / f"on-{reference.run_id}"
        if run.root == reference.root and _has_predictions(run.report):
            out.append(load_evaluated(run))
            continue
        stamp = {"reference": str(reference.root), "recipe_hash": reference_recipe.hash()}
        if _has_predictions(folder) and _read_stamp(folder) == stamp:
            out.append(load_evaluated(run, folder))  # scored on these rows already
            continue
        _evaluate_on(run, reference_recipe, folder)
        (folder / ON_FILE).write_text(json.dumps(stamp) + "\n", encoding="utf-8")
        out.append(load_evaluated(run, folder))
    return out


ON_FILE = "on.json"
"""In report/on-<id>/: which run's test set the evaluation there used (its recipe hash)."""


def _read_stamp(folder: Path) -> Any:
    try:
        return json.loads((folder / ON_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _has_predictions(folder: Path) -> bool:
    return (folder / "report.json").exists() and (folder / "predictions.jsonl").exists()


def _evaluate_on(run: RunDir, reference_recipe: Any, folder: Path) -> None:
    from tuner_tui.evaluation.run import evaluate_run
    from tuner_tui.runs.events import DiscardedEvents
    from tuner_tui.runs.launcher import adapter_saved
    from tuner_tui.runs.state import RunLock
    from tuner_tui.training.run import resolve_device

    if not adapter_saved(run):
        raise TunerError(
            f"The run {run.root} has no trained adapter in {run.adapter}: it cannot be scored on another "
            f"run's test set. Finish it first (tuner run --resume {run.root})."
        )
    recipe, problems, _ = read_recipe(run.recipe)
    if problems:
        raise RecipeError(str(run.recipe), problems)
    if recipe.model.task != reference_recipe.model.task:
        raise TunerError(
            f"--on: {run.run_id} is a {recipe.model.task} run, the reference a {reference_recipe.model.task} "
            "run; score runs of one task on one test set."
        )
    with RunLock.acquire(run.root, wait_s=30.0):
        evaluate_run(
            recipe,
            run,
            DiscardedEvents(),
            resolve_device(recipe.training.device),
            split_recipe=reference_recipe,
            report_dir=folder,
        )
