"""Overhead of `tuner run` against a plain Trainer + PEFT script: tokens/s, time to first step.

Both sides train the same small Llama-style model (built here, no hub) on the same alpaca data with
the same settings, each in its own subprocess, back to back, in alternating order, at the same
determinism setting (`[training] deterministic` on tuner's side, transformers' full_determinism on
the plain side), once deterministic and once not. Tokens/s is measured the same way on both
sides: Trainer's non-padding input-token count over Trainer's own `train_runtime`. Time to first
step is wall-clock seconds from launching the command to the end of its first optimizer step
(tuner: the first metric event's time). Targets (issue 20): tokens/s ratio >= 0.98 (median of the
pairs); first step within 2 s of the plain script's. The determinism cost (tuner's deterministic
tokens/s over its fast tokens/s) is reported, with no target: it is a choice, not overhead.

    python benchmarks/train_overhead.py [--steps 40] [--repeats 2] [--data PATH] [--results FILE]

`--data` defaults to ../shared/data/llamafactory/alpaca_en_demo.json when present, else generated
rows.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.results import Result, add_results_option, write_results  # noqa: E402
from tests.tiny import alpaca_rows, build_bench_llama, write_jsonl  # noqa: E402

TARGET_RATIO = 0.98
TARGET_FIRST_STEP_S = 2.0

SETTINGS = {
    "batch_size": 8,
    "max_length": 256,
    "learning_rate": 1e-3,
    "r": 8,
    "alpha": 16.0,
    "dropout": 0.05,
    "save_steps": 20,
}


def run_plain(model: Path, data: Path, work: Path, steps: int, deterministic: bool) -> tuple[float, float]:
    """(tokens/s, seconds from launch to the first step's end)."""
    script = Path(__file__).with_name("plain_trainer.py")
    launched = time.time()
    out = subprocess.run(
        [
            sys.executable,
            str(script),
            str(model),
            str(data),
            str(work / "plain-out"),
            str(steps),
            json.dumps({**SETTINGS, "deterministic": deterministic}),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result["tokens"] / result["runtime"], result["first_step"] - launched


def run_tuner(model: Path, data: Path, work: Path, steps: int, deterministic: bool) -> tuple[float, float]:
    """(tokens/s, seconds from launch to the first metric event)."""
    recipe = work / "recipe.toml"
    recipe.write_text(
        textwrap.dedent(f"""
        schema_version = 1
        [project]
        name = "overhead"
        seed = 42
        [data]
        path = "{data}"
        format = "alpaca"
        validation_fraction = 0.0
        test_fraction = 0.0
        [model]
        name_or_path = "{model}"
        [method]
        type = "lora"
        r = {SETTINGS["r"]}
        alpha = {SETTINGS["alpha"]}
        dropout = {SETTINGS["dropout"]}
        [training]
        max_steps = {steps}
        batch_size = {SETTINGS["batch_size"]}
        max_length = {SETTINGS["max_length"]}
        learning_rate = {SETTINGS["learning_rate"]}
        lr_scheduler = "linear"
        save_every_steps = {SETTINGS["save_steps"]}
        deterministic = {str(deterministic).lower()}
        """)
    )
    runs = work / "runs"
    launched = time.time()
    subprocess.run(
        [sys.executable, "-m", "tuner_tui.cli", "run", str(recipe), "--runs-dir", str(runs)],
        capture_output=True,
        text=True,
        check=True,
    )
    run = sorted(runs.iterdir())[-1]
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    (done,) = [e for e in events if e["type"] == "log" and "train_runtime" in e]
    first = next(e for e in events if e["type"] == "metric")
    return done["tokens_seen"] / done["train_runtime"], datetime.fromisoformat(
        first["time"]
    ).timestamp() - launched


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=2)
    default_data = ROOT.parent / "shared" / "data" / "llamafactory" / "alpaca_en_demo.json"
    parser.add_argument("--data", type=Path, default=default_data if default_data.exists() else None)
    add_results_option(parser)
    args = parser.parse_args()
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rows = json.loads(args.data.read_text()) if args.data else alpaca_rows(400)
        data = write_jsonl(work / "data.jsonl", rows)
        corpus = [r["instruction"] + " " + r.get("input", "") + " " + r["output"] for r in rows]
        model = build_bench_llama(work / "model", corpus + ["### Instruction:\n", "### Response:\n"])
        rates: dict[tuple[str, bool], list[float]] = {}
        first_steps: dict[str, list[float]] = {"tuner": [], "plain": []}
        ratios: dict[bool, list[float]] = {True: [], False: []}
        for i in range(args.repeats):
            for deterministic in (True, False):
                order = [("tuner", run_tuner), ("plain", run_plain)]
                pair = {}
                for name, fn in order if i % 2 == 0 else order[::-1]:
                    folder = work / f"{name}-{i}-{deterministic}"
                    folder.mkdir()
                    rate, first = fn(model, data, folder, args.steps, deterministic)
                    pair[name] = rate
                    rates.setdefault((name, deterministic), []).append(rate)
                    first_steps[name].append(first)
                    print(
                        f"repeat {i + 1} deterministic={deterministic!s:5}: {name:5s} {rate:8.1f} tokens/s, "
                        f"first step after {first:5.2f} s",
                        flush=True,
                    )
                ratios[deterministic].append(pair["tuner"] / pair["plain"])
    for deterministic in (True, False):
        tuner = statistics.median(rates[("tuner", deterministic)])
        plain = statistics.median(rates[("plain", deterministic)])
        ratio = statistics.median(ratios[deterministic])
        label = "deterministic" if deterministic else "fast"
        print(
            f"{label:>13}: tuner {tuner:.1f}, plain {plain:.1f} tokens/s; ratio (median of pairs) "
            f"{ratio:.3f} "
            f"(pairs {', '.join(f'{r:.3f}' for r in ratios[deterministic])}; target >= {TARGET_RATIO})"
        )
        results.append(
            Result(
                f"train tokens/s, {label}",
                tuner,
                "tokens/s",
                plain,
                ratio,
                f">= {TARGET_RATIO}",
                ratio >= TARGET_RATIO,
            )
        )
    cost = statistics.median(rates[("tuner", True)]) / statistics.median(rates[("tuner", False)])
    print(f"determinism cost: deterministic / fast tokens/s = {cost:.3f} (a choice, no target)")
    results.append(Result("determinism: deterministic / fast", cost, "ratio", None, cost, "", None))
    tuner_first, plain_first = (
        statistics.median(first_steps["tuner"]),
        statistics.median(first_steps["plain"]),
    )
    late = tuner_first - plain_first
    print(
        f"time to first step: tuner {tuner_first:.2f} s, plain {plain_first:.2f} s, "
        f"{late:+.2f} s (target <= +{TARGET_FIRST_STEP_S:g} s)"
    )
    results.append(
        Result(
            "time to first step",
            tuner_first,
            "s",
            plain_first,
            tuner_first / plain_first,
            f"<= baseline + {TARGET_FIRST_STEP_S:g} s",
            late <= TARGET_FIRST_STEP_S,
        )
    )
    write_results(args.results, results)


if __name__ == "__main__":
    main()
