"""DPO in `tuner run` against TRL's DPOTrainer used directly on the same job: pairs/s and the ratio.

Both sides train the same small Llama-style model (built here, no hub) with the same LoRA
adapter on the same pairs and settings, each in its own subprocess, back to back, in alternating
order. Speed is pairs per second over the Trainer's own `train_runtime` (max_steps x batch_size
pairs on both sides), so loading and evaluation are left out; both sides log every 10 steps and
save one checkpoint, at the last step (tuner's own cadence and TRL's). Target (issue 14): ratio
>= 0.95.

    python benchmarks/preference.py [--steps 30] [--repeats 2] [--data PATH]

`--data` defaults to ../shared/data/llamafactory/dpo_en_demo.json when present, else generated
pairs (a planted preference: a polite or a rude ending).
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

from benchmarks.results import Result, add_results_option, write_results  # noqa: E402
from tests.tiny import build_bench_llama, write_jsonl  # noqa: E402
from tests.training.test_preference import planted_pairs  # noqa: E402

SETTINGS = {
    "batch_size": 4,
    "max_length": 256,
    "learning_rate": 5e-4,
    "r": 8,
    "alpha": 16.0,
    "beta": 0.1,
    # tuner's default optimizer; TRL's (transformers') default is the fused AdamW, which alone
    # runs this job several percent faster on CPU: equal settings compare the loops, not that.
    "optim": "adamw_torch",
}

PLAIN = """
import json, sys
from datasets import load_dataset
from peft import LoraConfig, TaskType
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import DPOConfig, DPOTrainer

model_dir, data, out = sys.argv[1:4]
steps, settings = int(sys.argv[4]), json.loads(sys.argv[5])
tokenizer = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForCausalLM.from_pretrained(model_dir)
rows = load_dataset("json", data_files=data, split="train")
args = DPOConfig(
    output_dir=out, max_steps=steps, per_device_train_batch_size=settings["batch_size"],
    learning_rate=settings["learning_rate"], beta=settings["beta"], max_length=settings["max_length"],
    lr_scheduler_type="linear", logging_steps=10, save_strategy="steps", save_steps=steps,
    report_to="none", seed=42, data_seed=42, full_determinism=True, use_cpu=True, disable_tqdm=True,
    dataloader_num_workers=0, optim=settings["optim"],
    # TRL 1.16 defaults to bf16 autocast and activation checkpointing; tuner trains float32 on CPU
    # without checkpointing: the same job on both sides.
    bf16=False, gradient_checkpointing=False,
)
lora = LoraConfig(r=settings["r"], lora_alpha=settings["alpha"], lora_dropout=0.0,
                  target_modules="all-linear", task_type=TaskType.CAUSAL_LM)
trainer = DPOTrainer(model=model, args=args, train_dataset=rows, processing_class=tokenizer, peft_config=lora)
result = trainer.train()
print(json.dumps({"runtime": result.metrics["train_runtime"]}))
"""


def run_plain(model: Path, data: Path, work: Path, steps: int) -> float:
    script = work / "plain_dpo.py"
    script.write_text(PLAIN, encoding="utf-8")
    out = subprocess.run(
        [
            sys.executable,
            str(script),
            str(model),
            str(data),
            str(work / "out"),
            str(steps),
            json.dumps(SETTINGS),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    runtime = json.loads(out.stdout.strip().splitlines()[-1])["runtime"]
    return steps * SETTINGS["batch_size"] / runtime


def run_tuner(model: Path, data: Path, work: Path, steps: int) -> float:
    recipe = work / "recipe.toml"
    recipe.write_text(
        textwrap.dedent(f"""
        schema_version = 1
        [project]
        name = "dpo-bench"
        seed = 42
        [data]
        path = "{data}"
        format = "preference"
        validation_fraction = 0.0
        test_fraction = 0.0
        [model]
        name_or_path = "{model}"
        task = "preference"
        [method]
        type = "lora"
        r = {SETTINGS["r"]}
        alpha = {SETTINGS["alpha"]}
        dropout = 0.0
        [preference]
        loss = "dpo"
        beta = {SETTINGS["beta"]}
        [training]
        max_steps = {steps}
        batch_size = {SETTINGS["batch_size"]}
        max_length = {SETTINGS["max_length"]}
        learning_rate = {SETTINGS["learning_rate"]}
        lr_scheduler = "linear"
        warmup_ratio = 0.0
        optimizer = "{SETTINGS["optim"]}"
        save_every_steps = {steps}
        log_every_steps = 10
        [bias]
        enabled = false
        """)
    )
    runs = work / "runs"
    subprocess.run(
        [sys.executable, "-m", "tuner_tui.cli", "run", str(recipe), "--runs-dir", str(runs)],
        capture_output=True,
        text=True,
        check=True,
    )
    run = sorted(p for p in runs.iterdir() if not p.name.startswith("."))[-1]
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    (done,) = [e for e in events if e["type"] == "log" and "train_runtime" in e]
    return steps * SETTINGS["batch_size"] / done["train_runtime"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=2)
    default_data = ROOT.parent / "shared" / "data" / "llamafactory" / "dpo_en_demo.json"
    parser.add_argument("--data", type=Path, default=default_data if default_data.exists() else None)
    add_results_option(parser)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.data:  # LLaMA-Factory's layout: both sides read it as TRL conversational rows
            from datasets import Dataset

            from tuner_tui.data.formats import detect_format
            from tuner_tui.data.preference import to_trl_preference

            raw = json.loads(args.data.read_text())
            dataset = Dataset.from_list(raw)
            rows = to_trl_preference(dataset, detect_format(dataset.column_names, raw[:20])).to_list()
        else:
            rows = planted_pairs(400)
        data = write_jsonl(work / "pairs.jsonl", rows)
        corpus = [json.dumps(r)[:2000] for r in rows]
        model = build_bench_llama(work / "model", corpus)
        if args.data:  # conversational rows: both sides render them with the same template
            from transformers import AutoTokenizer

            from tuner_tui.modeling.loading import ensure_chat_template

            tokenizer = AutoTokenizer.from_pretrained(str(model))
            ensure_chat_template(tokenizer)
            tokenizer.save_pretrained(str(model))
        tuner_rates, plain_rates = [], []
        for i in range(args.repeats):
            order = [("tuner", run_tuner), ("trl", run_plain)]
            for name, fn in order if i % 2 == 0 else order[::-1]:
                folder = work / f"{name}-{i}"
                folder.mkdir()
                (tuner_rates if name == "tuner" else plain_rates).append(fn(model, data, folder, args.steps))
    tuner, plain = statistics.median(tuner_rates), statistics.median(plain_rates)
    print(f"{'side':<8} {'pairs/s (median)':>17}  runs")
    print(f"{'tuner':<8} {tuner:17.2f}  {', '.join(f'{r:.2f}' for r in tuner_rates)}")
    print(f"{'trl':<8} {plain:17.2f}  {', '.join(f'{r:.2f}' for r in plain_rates)}")
    ratio = tuner / plain
    print(f"ratio tuner / trl: {ratio:.3f} (target >= 0.95: {'ok' if ratio >= 0.95 else 'missed'})")
    write_results(
        args.results,
        [Result("DPO pairs/s vs TRL DPOTrainer", tuner, "pairs/s", plain, ratio, ">= 0.95", ratio >= 0.95)],
    )


if __name__ == "__main__":
    main()
