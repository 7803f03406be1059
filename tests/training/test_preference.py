"""Preference tuning through TRL in tuner's worker (issue 14): a planted preference is learnt with
DPO, every loss trains and reloads, and the metric events carry the reward figures."""

from __future__ import annotations

import json
import random
import threading
from pathlib import Path

import pytest

from tests.tiny import build_tiny_llama, write_jsonl
from tuner_tui.recipe import read_recipe
from tuner_tui.runs.events import iter_events
from tuner_tui.runs.launcher import create_run
from tuner_tui.runs.state import read_raw_state
from tuner_tui.runs.worker import run_worker

POLITE = "Thank you for asking."
RUDE = "Do not ask me again."  # as long as POLITE: length alone tells the answers apart in neither
TOPICS = ["the weather", "a refund", "my order", "the password", "the invoice", "a delivery", "the app"]


def planted_pairs(n: int, seed: int = 0) -> list[dict[str, str]]:
    """Pairs whose chosen answer ends with a fixed polite phrase and whose rejected one with a rude
    one: otherwise the same words, so the ending is all there is to prefer."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        topic = rng.choice(TOPICS)
        answer = f"I can help with {topic}, case {i % 9}."
        prompt = f"Question about {topic}?"
        rows.append({"prompt": prompt, "chosen": f"{answer} {POLITE}", "rejected": f"{answer} {RUDE}"})
    return rows


@pytest.fixture(scope="module")
def polite_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    corpus = [f"{r['prompt']} {r[side]}" for r in planted_pairs(64) for side in ("chosen", "rejected")]
    return build_tiny_llama(tmp_path_factory.mktemp("polite") / "model", corpus=corpus, vocab_size=300)


def preference_recipe(
    folder: Path, model: Path, data: Path, loss: str, beta: float = 0.1, **training: object
) -> Path:
    settings = {"max_steps": 30, "batch_size": 8, "learning_rate": 0.02, "save_every_steps": 10,
                "max_length": 48, "log_every_steps": 2, **training}  # fmt: skip
    lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in settings.items())
    recipe = folder / f"recipe-{loss}.toml"
    recipe.write_text(
        f"""schema_version = 1
[project]
name = "polite-{loss}"
seed = 11
[[objectives]]
metric = "preference_accuracy"
target = 0.9
[data]
path = "{data}"
validation_fraction = 0.1
test_fraction = 0.2
[model]
name_or_path = "{model}"
task = "preference"
[method]
type = "lora"
r = 8
alpha = 16.0
dropout = 0.0
[preference]
loss = "{loss}"
beta = {beta}
[evaluation]
max_samples = 64
[bias]
enabled = false
[training]
{lines}
""",
        encoding="utf-8",
    )
    return recipe


def report_dir(root: Path) -> Path:
    """The report folder of the one run under root/runs."""
    (run,) = [p for p in (root / "runs").iterdir() if not p.name.startswith(".")]
    return run / "report"


def run_in_process(recipe: Path, runs: Path) -> tuple[dict, list[dict]]:
    run = create_run(recipe, runs)
    code = run_worker(run.root, threading.Event())
    assert code == 0, run.log.read_text() if run.log.exists() else ""
    assert read_raw_state(run.state)["phase"] == "completed"
    report = json.loads((run.report / "report.json").read_text(encoding="utf-8"))
    return report, list(iter_events(run.events))


def test_dpo_learns_a_planted_preference(polite_model: Path, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "pairs.jsonl", planted_pairs(200))
    recipe = preference_recipe(tmp_path, polite_model, data, "dpo")
    assert not read_recipe(recipe)[1]
    report, events = run_in_process(recipe, tmp_path / "runs")

    base = report["metrics"]["base"]["preference_accuracy"]
    tuned = report["metrics"]["tuned"]["preference_accuracy"]
    assert tuned >= 0.9 and tuned > base + 0.2, (base, tuned)
    assert report["verdict"] == "pass"
    assert report["metrics"]["tuned"]["implicit_reward_accuracy"] >= 0.9
    assert report["metrics"]["tuned"]["answer_tokens"] > 0 and report["metrics"]["base"]["chosen_tokens"] > 0
    metrics = [e for e in events if e["type"] == "metric"]
    assert {"reward_accuracy", "reward_margin", "chosen_reward", "rejected_reward"} <= set(metrics[-1])
    assert metrics[-1]["reward_margin"] > metrics[0]["reward_margin"]
    assert report["samples"]["shown"][0]["tuned_margin"] > 0
    markdown = (Path(report_dir(tmp_path)) / "report.md").read_text(encoding="utf-8")
    assert "| input | chosen | rejected | base_margin | tuned_margin |" in markdown


@pytest.mark.parametrize("loss", ["ipo", "orpo", "simpo", "kto"])
def test_every_loss_trains_and_the_loss_falls(polite_model: Path, tmp_path: Path, loss: str) -> None:
    data = write_jsonl(tmp_path / "pairs.jsonl", planted_pairs(120))
    # KTO's loss moves slowly at DPO's beta: each answer is judged alone, against a KL estimate.
    beta = 1.0 if loss == "kto" else 0.1
    recipe = preference_recipe(tmp_path, polite_model, data, loss, beta=beta, max_steps=24)
    report, events = run_in_process(recipe, tmp_path / "runs")
    losses = [e["loss"] for e in events if e["type"] == "metric"]
    third = len(losses) // 3
    assert third >= 2 and sum(losses[-third:]) < sum(losses[:third]), losses
    assert "preference_accuracy" in report["metrics"]["tuned"]


@pytest.mark.parametrize("loss", ["dpo", "ipo", "orpo", "simpo", "kto"])
def test_the_saved_adapter_reloads_with_the_logits_it_trained_to(
    polite_model: Path, tmp_path: Path, loss: str
) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuner_tui.recipe import load_recipe
    from tuner_tui.runs.events import EventWriter
    from tuner_tui.training.run import train

    data = write_jsonl(tmp_path / "pairs.jsonl", planted_pairs(60))
    recipe_path = preference_recipe(tmp_path, polite_model, data, loss, max_steps=4)
    run = create_run(recipe_path, tmp_path / "runs")
    with EventWriter(run.events) as events:
        outcome = train(load_recipe(run.recipe), run, events, threading.Event())
    assert sorted(p.name for p in run.adapter.iterdir() if p.is_dir()) == []  # no reference copy saved
    assert list(getattr(outcome.model, "peft_config", {"default": None})) == ["default"]
    tokenizer = AutoTokenizer.from_pretrained(str(polite_model))
    batch = tokenizer(["Question about a refund? I can help with a refund."], return_tensors="pt")
    with torch.no_grad():
        expected = outcome.model.eval()(**batch).logits
        base = AutoModelForCausalLM.from_pretrained(str(polite_model))
        actual = PeftModel.from_pretrained(base, str(run.adapter)).eval()(**batch).logits
    assert torch.equal(expected, actual)


def test_an_sft_run_followed_by_dpo_from_its_adapter(polite_model: Path, tmp_path: Path) -> None:
    """SFT on the polite answers, then DPO starting from (and held to) that run's adapter; the
    DPO run's frozen recipe records which run it continued."""
    from tests.tiny import write_recipe
    from tuner_tui.recipe import load_recipe

    sft_rows = [{"prompt": r["prompt"], "completion": r["chosen"]} for r in planted_pairs(80)]
    sft_data = write_jsonl(tmp_path / "sft.jsonl", sft_rows)
    sft_recipe = write_recipe(tmp_path / "sft.toml", sft_data, polite_model, max_steps=6)
    sft = create_run(sft_recipe, tmp_path / "runs")
    assert run_worker(sft.root, threading.Event()) == 0, sft.log.read_text()

    pairs = write_jsonl(tmp_path / "pairs.jsonl", planted_pairs(80))
    dpo_recipe = preference_recipe(tmp_path, polite_model, pairs, "dpo", max_steps=6)
    dpo_recipe.write_text(
        dpo_recipe.read_text().replace("beta = 0.1", f'beta = 0.1\nstart_from = "{sft.root}"'),
        encoding="utf-8",
    )
    report, events = run_in_process(dpo_recipe, tmp_path / "runs-dpo")
    assert any(f"starting from the adapter in {sft.adapter}" in e.get("message", "") for e in events)
    (dpo_run,) = [p for p in (tmp_path / "runs-dpo").iterdir() if not p.name.startswith(".")]
    frozen = load_recipe(dpo_run / "recipe.toml")
    assert frozen.environment["start_from_recipe_hash"] == load_recipe(sft.recipe).environment["recipe_hash"]
    assert frozen.preference.start_from == str(sft.adapter.resolve())
    assert "preference_accuracy" in report["metrics"]["tuned"]


def test_a_start_from_that_is_no_adapter_is_refused_before_the_run(
    polite_model: Path, tmp_path: Path
) -> None:
    from tuner_tui.preflight import preflight_problems
    from tuner_tui.recipe import load_recipe

    pairs = write_jsonl(tmp_path / "pairs.jsonl", planted_pairs(20))
    recipe = preference_recipe(tmp_path, polite_model, pairs, "dpo")
    recipe.write_text(recipe.read_text().replace("beta = 0.1", 'beta = 0.1\nstart_from = "no-such-run"'))
    (problem,) = [p for p in preflight_problems(load_recipe(recipe), tmp_path) if p.path.startswith("pref")]
    assert problem.path == "preference.start_from" and "neither a run directory" in problem.message


def test_dpo_resumed_after_sigkill_is_bit_identical(polite_model: Path, tmp_path: Path) -> None:
    """A DPO run killed mid-way and resumed from its last checkpoint writes the same adapter as
    one that ran through (CPU, full determinism)."""
    import os
    import signal

    from tests.runs.test_worker import adapter_tensors, assert_same_tensors, wait_until_done
    from tests.waiting import events_of, wait_for
    from tuner_tui.runs.launcher import resume_run, start_run

    data = write_jsonl(tmp_path / "pairs.jsonl", planted_pairs(120))
    recipe = preference_recipe(tmp_path, polite_model, data, "dpo", max_steps=16, save_every_steps=4)
    straight = start_run(recipe, tmp_path / "straight")
    assert wait_until_done(straight)["phase"] == "completed", straight.log.read_text()[-3000:]

    killed = start_run(recipe, tmp_path / "killed")
    wait_for(lambda: any(c["step"] >= 8 for c in events_of(killed, "checkpoint")), what="checkpoint 8")
    os.kill(read_raw_state(killed.state)["pid"], signal.SIGKILL)
    assert wait_until_done(killed, timeout=30)["phase"] == "crashed"
    resume_run(killed.root)
    assert wait_until_done(killed)["phase"] == "completed", killed.log.read_text()[-3000:]
    assert any("Resuming from checkpoint-" in e.get("message", "") for e in events_of(killed, "log"))
    assert_same_tensors(adapter_tensors(killed.adapter), adapter_tensors(straight.adapter))


@pytest.mark.parametrize(
    "loss, sequences, start_from, copy",
    [("dpo", 2, "", False), ("dpo", 2, "sft-run", True), ("orpo", 2, "", False), ("kto", 1, "sft-run", True)],
)
def test_the_estimate_counts_both_answers_and_the_reference(
    polite_model: Path, tmp_path: Path, loss: str, sequences: int, start_from: str, copy: bool
) -> None:
    """A fresh LoRA's reference is the base model (no copy); a start_from adapter's is its copy."""
    from tuner_tui.modeling.estimate import estimate_memory
    from tuner_tui.recipe import load_recipe

    data = write_jsonl(tmp_path / "pairs.jsonl", planted_pairs(20))
    recipe = load_recipe(preference_recipe(tmp_path, polite_model, data, loss))
    recipe.preference.start_from = start_from
    tuned = estimate_memory(recipe, device_bytes=1 << 40)
    recipe.model.task = "causal_lm"  # the same model and batch, supervised
    supervised = estimate_memory(recipe, device_bytes=1 << 40)
    assert tuned.breakdown["activations"] == sequences * supervised.breakdown["activations"]
    assert ("reference" in tuned.breakdown) == copy
    if copy:  # a copy of the LoRA adapter, not of the model
        assert tuned.breakdown["reference"] == tuned.breakdown["trainable_params"]
    assert any(note.startswith(f"preference ({loss})") for note in tuned.notes)
    # The time estimate: both answers' tokens, and the reference's forward pass (none for ORPO).
    assert tuned.planned_tokens == sequences * supervised.planned_tokens
    if loss == "orpo":
        assert tuned.flops_per_token == supervised.flops_per_token
    else:
        assert supervised.flops_per_token < tuned.flops_per_token < 1.5 * supervised.flops_per_token
        assert any("frozen reference runs a forward pass" in a for a in tuned.time_assumptions)


def test_kto_trains_on_conversations_marked_good_or_bad(polite_model: Path, tmp_path: Path) -> None:
    """LLaMA-Factory's kto_en_demo.json layout: `messages` (the last turn is the answer) and a
    true/false `label`; rendered with the (fallback) chat template."""
    rows = []
    for pair in planted_pairs(80):
        for answer, good in ((pair["chosen"], True), (pair["rejected"], False)):
            messages = [{"role": "user", "content": pair["prompt"]}, {"role": "assistant", "content": answer}]
            rows.append({"messages": messages, "label": good})
    data = write_jsonl(tmp_path / "kto.jsonl", rows)
    recipe = preference_recipe(tmp_path, polite_model, data, "kto", beta=1.0, max_steps=24)
    recipe.write_text(recipe.read_text().replace("[data]\n", '[data]\nformat = "kto"\n'), encoding="utf-8")
    report, events = run_in_process(recipe, tmp_path / "runs")
    logs = [e.get("message", "") for e in events if e["type"] == "log"]
    assert any("as 'kto'" in m for m in logs) and any("Chat template: fallback:" in m for m in logs)
    losses = [e["loss"] for e in events if e["type"] == "metric"]
    third = len(losses) // 3
    assert sum(losses[-third:]) < sum(losses[:third]), losses
    assert report["metrics"]["tuned"]["pairs_scored"] > 0


def test_pairs_that_cannot_train_are_dropped_as_a_step_or_refused(tmp_path: Path) -> None:
    from tuner_tui.data.ops import UNUSABLE_PAIRS_OP
    from tuner_tui.data.pipeline import load_splits
    from tuner_tui.errors import TunerError
    from tuner_tui.recipe import load_recipe

    good = planted_pairs(30)
    bad = [
        {"prompt": "Q?", "chosen": "A.", "rejected": "A."},  # identical
        {"prompt": "Q?", "chosen": "", "rejected": "B."},  # empty chosen
        {"prompt": "Q?", "chosen": "A.", "rejected": None},  # missing rejected
    ]
    data = write_jsonl(tmp_path / "pairs.jsonl", good + bad)
    recipe = load_recipe(preference_recipe(tmp_path, Path("unused"), data, "dpo"))
    splits = load_splits(recipe)
    (step,) = [r for r in splits.cleaning if r.op == UNUSABLE_PAIRS_OP]
    assert (step.rows_before, step.rows_after) == (33, 30) and step.details["automatic"]
    assert "3 of 33 pairs cannot train" in step.details["why"]

    write_jsonl(data, [{"prompt": "Q?", "chosen": "Same.", "rejected": "Same."}] * 10)
    with pytest.raises(TunerError, match="chosen"):
        load_splits(recipe)


def test_pairs_quoted_in_the_report_are_masked_for_pii() -> None:
    from tuner_tui.evaluation.report import mask_samples

    sample = {
        "input": "Mail me?",
        "chosen": "Sure: jane.doe@example.com",
        "rejected": "No.",
        "tuned_margin": 1.5,
    }
    report = {"samples": {"shown": [sample], "best": [], "worst": []}, "bias": {}}
    masked = mask_samples(report)["samples"]["shown"][0]
    assert "jane.doe@example.com" not in masked["chosen"] and masked["tuned_margin"] == 1.5
    assert masked["chosen"].startswith("Sure: ja")


def test_dpo_on_two_processes_matches_one_with_the_same_global_batch(
    polite_model: Path, tmp_path: Path
) -> None:
    """torchrun (gloo, CPU): 2 ranks x 2 pairs per step train what 1 process x 4 pairs does."""
    import torch

    from tests.runs.test_distributed import ADAPTER_ATOL, ADAPTER_RTOL
    from tests.runs.test_worker import adapter_tensors, wait_until_done
    from tuner_tui.runs.launcher import start_run

    data = write_jsonl(tmp_path / "pairs.jsonl", planted_pairs(80))
    runs = {}
    for name, settings in (("two", {"batch_size": 2, "num_processes": 2}), ("one", {"batch_size": 4})):
        folder = tmp_path / name
        folder.mkdir()
        recipe = preference_recipe(
            folder, polite_model, data, "dpo", max_steps=6, save_every_steps=3, **settings
        )
        runs[name] = start_run(recipe, folder / "runs")
    for run in runs.values():
        assert wait_until_done(run)["phase"] == "completed", run.log.read_text()[-3000:]
    assert "supervisor: torchrun --nproc-per-node 2" in runs["two"].log.read_text()
    two, one = adapter_tensors(runs["two"].adapter), adapter_tensors(runs["one"].adapter)
    assert two.keys() == one.keys()
    # Two ranks' mean of 2-pair means and one 4-pair mean differ in the last float bits, and Adam
    # divides each gradient by its own running size, so an element whose gradient is near zero
    # can move by a different part of a step (lr = 0.02 here). A broken all-reduce moves every
    # element by whole steps: nearly all elements agree to 1e-4, none by a tenth of a step.
    lr = 0.02
    for key in two:
        diff = (two[key] - one[key]).abs()
        close = torch.isclose(two[key], one[key], rtol=ADAPTER_RTOL, atol=ADAPTER_ATOL)
        assert float(close.float().mean()) >= 0.99, (key, float(diff.max()))
        assert float(diff.max()) < lr / 10, (key, float(diff.max()))
