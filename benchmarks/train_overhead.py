"""Overhead of `tuner run` against a plain Trainer + PEFT script: prints tokens/s and the ratio.

Both sides train the same small Llama-style model (built here, no hub) on the same alpaca data with
the same settings, each in its own subprocess, back to back, in alternating order. Tokens/s is
measured the same way on both sides: Trainer's non-padding input-token count over Trainer's own
`train_runtime`. Target: ratio >= 0.95 (events, telemetry and checkpoint commits cost nothing
measurable).

    python benchmarks/train_overhead.py [--steps 40] [--repeats 2] [--data PATH]

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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.tiny import alpaca_rows, build_bench_llama, write_jsonl  # noqa: E402

SETTINGS = {
    "batch_size": 8,
    "max_length": 256,
    "learning_rate": 1e-3,
    "r": 8,
    "alpha": 16.0,
    "dropout": 0.05,
    "save_steps": 20,
}


def run_plain(model: Path, data: Path, work: Path, steps: int) -> float:
    script = Path(__file__).with_name("plain_trainer.py")
    out = subprocess.run(
        [
            sys.executable,
            str(script),
            str(model),
            str(data),
            str(work / "plain-out"),
            str(steps),
            json.dumps(SETTINGS),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result["tokens"] / result["runtime"]


def run_tuner(model: Path, data: Path, work: Path, steps: int) -> float:
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
        """)
    )
    runs = work / "runs"
    subprocess.run(
        [sys.executable, "-m", "tuner_tui.cli", "run", str(recipe), "--runs-dir", str(runs)],
        capture_output=True,
        text=True,
        check=True,
    )
    run = sorted(runs.iterdir())[-1]
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    (done,) = [e for e in events if e["type"] == "log" and "train_runtime" in e]
    return done["tokens_seen"] / done["train_runtime"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=2)
    default_data = ROOT.parent / "shared" / "data" / "llamafactory" / "alpaca_en_demo.json"
    parser.add_argument("--data", type=Path, default=default_data if default_data.exists() else None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.data:
            rows = json.loads(args.data.read_text())
        else:
            rows = alpaca_rows(400)
        data = write_jsonl(work / "data.jsonl", rows)
        corpus = [r["instruction"] + " " + r.get("input", "") + " " + r["output"] for r in rows]
        model = build_bench_llama(work / "model", corpus + ["### Instruction:\n", "### Response:\n"])
        tuner_rates, plain_rates = [], []
        for i in range(args.repeats):
            order = [("tuner", run_tuner), ("plain", run_plain)]
            for name, fn in order if i % 2 == 0 else order[::-1]:
                rate = (
                    fn(model, data, work / f"{name}-{i}", args.steps)
                    if (work / f"{name}-{i}").mkdir() is None
                    else 0
                )
                (tuner_rates if name == "tuner" else plain_rates).append(rate)
                print(f"repeat {i + 1}: {name:5s} {rate:10.1f} tokens/s", flush=True)
        tuner_rate, plain_rate = statistics.median(tuner_rates), statistics.median(plain_rates)
        print(f"tuner run : {tuner_rate:.1f} tokens/s (median of {args.repeats})")
        print(f"plain     : {plain_rate:.1f} tokens/s (median of {args.repeats})")
        print(f"ratio     : {tuner_rate / plain_rate:.3f}  (target >= 0.95)")


if __name__ == "__main__":
    main()
