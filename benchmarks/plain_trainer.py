"""The baseline for train_overhead.py: a plain Trainer + PEFT LoRA script, no tuner code.

    python plain_trainer.py MODEL_DIR DATA_JSONL OUT_DIR STEPS SETTINGS_JSON

Prints {"tokens": non-padding input tokens trained, "runtime": Trainer's train_runtime,
"first_step": the wall-clock time (epoch seconds) its first optimizer step ended}. SETTINGS_JSON's
"deterministic" sets transformers' full_determinism, as tuner's `[training] deterministic` does.
"""

import json
import sys
import time

from datasets import load_dataset
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainerCallback, TrainingArguments

model_dir, data_path, out_dir, steps, s = (
    sys.argv[1],
    sys.argv[2],
    sys.argv[3],
    int(sys.argv[4]),
    json.loads(sys.argv[5]),
)
tok = AutoTokenizer.from_pretrained(model_dir)
tok.pad_token = tok.pad_token or tok.eos_token


def encode(row):
    prompt = (
        "### Instruction:\n"
        + row["instruction"]
        + ("\n\n" + row["input"] if row["input"] else "")
        + "\n\n### Response:\n"
    )
    ids = tok(prompt + row["output"] + tok.eos_token, truncation=True, max_length=s["max_length"])[
        "input_ids"
    ]
    n = len(tok(prompt)["input_ids"])
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": [-100] * n + ids[n:]}


data = load_dataset("json", data_files=data_path, split="train")
data = data.map(encode, remove_columns=data.column_names)


def collate(rows):
    import torch

    width = max(len(r["input_ids"]) for r in rows)

    def pad(key, value):
        return torch.tensor([r[key] + [value] * (width - len(r[key])) for r in rows])

    return {
        "input_ids": pad("input_ids", tok.pad_token_id),
        "attention_mask": pad("attention_mask", 0),
        "labels": pad("labels", -100),
    }


model = get_peft_model(
    AutoModelForCausalLM.from_pretrained(model_dir),
    LoraConfig(
        r=s["r"],
        lora_alpha=s["alpha"],
        lora_dropout=s["dropout"],
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    ),
)
args = TrainingArguments(
    output_dir=out_dir,
    max_steps=steps,
    per_device_train_batch_size=s["batch_size"],
    learning_rate=s["learning_rate"],
    logging_steps=1,
    save_strategy="steps",
    save_steps=s["save_steps"],
    report_to="none",
    use_cpu=True,
    seed=42,
    include_num_input_tokens_seen="non_padding",
    disable_tqdm=True,
    remove_unused_columns=False,
    full_determinism=s.get("deterministic", False),
)
first_step: list[float] = []


class FirstStep(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if not first_step:
            first_step.append(time.time())


trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=collate, callbacks=[FirstStep()])
result = trainer.train()
print(
    json.dumps(
        {
            "tokens": trainer.state.num_input_tokens_seen,
            "runtime": result.metrics["train_runtime"],
            "first_step": first_step[0],
        }
    )
)
