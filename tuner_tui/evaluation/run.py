"""The evaluation phase: base vs tuned on the held-out split, objectives, samples, bias.

Both models are loaded fresh from disk (the tuned one from the run's `adapter/`), so the report
describes the artifact a user takes away, not an in-memory state. It runs in the worker, after
training, or in a worker started with `--evaluate-only` to evaluate a finished run again
(`tuner eval`, the wizard's Re-evaluate: `runs.launcher.start_evaluation`), never in the wizard.

A stop request is honoured between stages and between batches (`should_stop`, see
`tuner_tui.evaluation.scoring`): evaluation then raises `EvaluationStopped` and writes no report.
Unless `[evaluation] show_raw_samples` is set, PII in the samples the report quotes is masked.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuner_tui.data.formats import Detection, to_messages
from tuner_tui.errors import TunerError
from tuner_tui.evaluation.metrics import (
    METRICS,
    compute_label_metrics,
    compute_text_metrics,
    metrics_for,
    perplexity_from_losses,
)
from tuner_tui.evaluation.predictions import PREDICTIONS_FILE, ids_digest, row_ids, write_predictions
from tuner_tui.evaluation.scoring import CausalScorer, ClassifierScorer, EvaluationStopped
from tuner_tui.recipe import Recipe
from tuner_tui.runs.events import EventWriter
from tuner_tui.runs.layout import RunDir

SAMPLES_SHOWN = 8


class NoHeldOutData(TunerError):
    """The recipe keeps no test or validation rows, so there is nothing to evaluate on."""


@dataclass
class EvalSplit:
    name: str
    rows: list[dict[str, Any]]
    detection: Detection
    train_texts: Any  # iterable of training texts (for the bias data audit)
    train_labels: list[str] | None
    sample: dict[str, Any] | None = None
    """How `rows` were drawn from the split: {"n", "of", "seed", "stratified"} (see `sample_rows`)."""
    row_ids: list[str] | None = None
    """A stable id per row of `rows` (see evaluation/predictions.py)."""
    fingerprint: str = ""
    """The cleaned data's content fingerprint (the same as training recorded)."""


def load_eval_split(recipe: Recipe, tokenizer: Any) -> EvalSplit:
    """The split objectives are measured on (test, else validation), loaded, cleaned and split
    exactly as training did; beyond `[evaluation] max_samples` rows, a sample seeded with the
    project seed and stratified by label for classification (never the first rows of the file)."""
    from tuner_tui.data.pipeline import load_splits
    from tuner_tui.data.split import sample_rows

    data = load_splits(recipe, tokenizer=tokenizer)
    parts, detection = data.splits, data.detection
    name = "test" if "test" in parts else "validation" if "validation" in parts else None
    if name is None:
        raise NoHeldOutData(
            "There is no held-out data to evaluate on: [data] test_fraction and validation_fraction "
            "are both 0. Set test_fraction (e.g. 0.1) and run again."
        )
    part, sample = sample_rows(parts[name], detection, recipe.evaluation.max_samples, recipe.project.seed)
    ids = row_ids(part)
    train = parts["train"]
    if recipe.model.task == "preference":  # TRL's rows: prompt/chosen/rejected, or prompt/completion/label
        from tuner_tui.evaluation.preference import prompt_text

        rows = _trl_rows(part, detection, recipe).to_list()
        texts = (prompt_text(row) for row in _trl_rows(train, detection, recipe))
        return EvalSplit(
            name, rows, detection, texts, None, sample.to_json(),
            ids if len(ids) == len(rows) else None, data.fingerprint,
        )  # fmt: skip
    rows = part.to_list()
    label_col = detection.fields.get("label")
    train_texts = (user_text(row, detection) for row in train)
    train_labels = [str(v) for v in train[label_col]] if label_col else None
    return EvalSplit(
        name, rows, detection, train_texts, train_labels, sample.to_json(), ids, data.fingerprint
    )


def _trl_rows(part: Any, detection: Detection, recipe: Recipe) -> Any:
    from tuner_tui.data.preference import to_trl_kto, to_trl_preference

    if detection.format == "kto":
        return to_trl_kto(part, detection)
    return to_trl_preference(part, detection)


def user_text(row: dict[str, Any], detection: Detection) -> str:
    """What the user wrote in a row: the text to classify, the prompt, or the first user turn."""
    f = detection.fields
    if detection.format in ("classification", "text"):
        return str(row[f["text"]] or "")
    if detection.format == "prompt_completion":
        return str(row[f["prompt"]] or "")
    return next((m["content"] for m in to_messages(row, detection) if m["role"] == "user"), "")


def _load_models(
    recipe: Recipe, run: RunDir, device: str, need_base: bool = False
) -> tuple[Any, dict[str, Any]]:
    """Tokenizer and {"base": model | None, "tuned": model} for the recipe's task (the base when
    [evaluation] compare_base or `need_base`)."""
    from transformers import set_seed

    from tuner_tui.modeling.loading import load_model, load_tokenizer

    tokenizer = load_tokenizer(recipe.model)
    id2label = None
    labels_file = run.adapter / "labels.json"
    if labels_file.exists():
        id2label = {int(k): v for k, v in json.loads(labels_file.read_text())["id2label"].items()}

    def fresh_base() -> Any:
        set_seed(recipe.project.seed)  # the untuned classifier head is random: make it repeatable
        return load_model(
            recipe.model, device=device, num_labels=len(id2label) if id2label else None, id2label=id2label
        ).to(device)

    models: dict[str, Any] = {"base": fresh_base() if recipe.evaluation.compare_base or need_base else None}
    if (run.adapter / "adapter_config.json").exists():
        from peft import PeftModel

        models["tuned"] = PeftModel.from_pretrained(fresh_base(), str(run.adapter)).to(device)
    else:  # full or freeze tuning saved the whole model
        from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

        auto = AutoModelForSequenceClassification if id2label else AutoModelForCausalLM
        models["tuned"] = auto.from_pretrained(str(run.adapter)).to(device)  # type: ignore[arg-type]
    return tokenizer, {"id2label": id2label, **models}


def _classification(
    split: EvalSplit,
    tokenizer: Any,
    models: dict[str, Any],
    recipe: Recipe,
    names: list[str],
    events: EventWriter,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[dict, list[dict], dict[str, Any], list[dict]]:
    from sklearn.metrics import confusion_matrix

    id2label: dict[int, str] = models["id2label"]
    label2id = {v: k for k, v in id2label.items()}
    text_col, label_col = split.detection.fields["text"], split.detection.fields["label"]
    texts = [str(r[text_col] or "") for r in split.rows]
    references = [label2id[str(r[label_col])] for r in split.rows]
    metrics: dict[str, Any] = {}
    probabilities: dict[str, Any] = {}
    scorers: dict[str, Any] = {}
    for which in ("base", "tuned"):
        if models[which] is None:
            continue
        scorer = ClassifierScorer(
            models[which], tokenizer, id2label, max_length=recipe.training.max_length, should_stop=should_stop
        )
        scorers[which] = scorer
        probs = scorer.predict_proba(texts)
        predictions = probs.argmax(axis=1).tolist()
        probabilities[which] = probs
        result = compute_label_metrics(names, predictions, references, labels=sorted(id2label))
        result["confusion_matrix"] = {
            "labels": [id2label[i] for i in sorted(id2label)],
            "matrix": confusion_matrix(references, predictions, labels=sorted(id2label)).tolist(),
        }
        metrics[which] = result
        events.emit(
            "eval",
            split=split.name,
            model=which,
            examples=len(texts),
            **{k: v for k, v in result.items() if isinstance(v, float)},
        )
    tuned = probabilities["tuned"]
    confidence = [float(tuned[i, ref]) for i, ref in enumerate(references)]
    samples = []
    for i, text in enumerate(texts):
        entry = {
            "input": text,
            "reference": id2label[references[i]],
            "tuned": id2label[int(tuned[i].argmax())],
            "tuned_p_reference": confidence[i],
        }
        if "base" in probabilities:
            entry["base"] = id2label[int(probabilities["base"][i].argmax())]
            entry["base_p_reference"] = float(probabilities["base"][i, references[i]])
        samples.append(entry)
    outputs = []
    for i in range(len(texts)):
        out: dict[str, Any] = {"reference": id2label[references[i]]}
        for which, probs in probabilities.items():
            predicted = int(probs[i].argmax())
            out[which] = {
                "prediction": id2label[predicted],
                "correct": predicted == references[i],
                "score": float(probs[i, references[i]]),
            }
        outputs.append(out)
    return metrics, samples, scorers, outputs


def _prompt_and_reference(row: dict[str, Any], detection: Detection, tokenizer: Any) -> tuple[str, str]:
    f = detection.fields
    if detection.format == "text":
        return "", str(row[f["text"]] or "")
    if detection.format == "prompt_completion":
        return str(row[f["prompt"]] or ""), str(row[f["completion"]] or "")
    messages = to_messages(row, detection)
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
    if last is None:
        return "", ""
    prompt = tokenizer.apply_chat_template(messages[:last], tokenize=False, add_generation_prompt=True)
    return prompt, messages[last]["content"]


def _scorers(models: dict[str, Any], tokenizer: Any, recipe: Recipe, should_stop: Any) -> dict[str, Any]:
    """A CausalScorer for each model there is ("base" first, then "tuned")."""
    return {
        which: CausalScorer(model, tokenizer, max_length=recipe.training.max_length, should_stop=should_stop)
        for which in ("base", "tuned")
        if (model := models[which]) is not None
    }


def _causal(
    split: EvalSplit,
    tokenizer: Any,
    models: dict[str, Any],
    recipe: Recipe,
    names: list[str],
    events: EventWriter,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[dict, list[dict], dict[str, Any], list[dict]]:
    from tuner_tui.modeling.loading import ensure_chat_template

    if split.detection.format not in ("text", "prompt_completion"):
        ensure_chat_template(tokenizer)
    every = [_prompt_and_reference(r, split.detection, tokenizer) for r in split.rows]
    kept = [i for i, (_, r) in enumerate(every) if r]  # rows with a reference to score
    pairs = [every[i] for i in kept]
    prompts, references = [p for p, _ in pairs], [r for _, r in pairs]
    generate = split.detection.format != "text" and any(METRICS[n].module for n in names)
    gen = recipe.evaluation.generation
    metrics: dict[str, Any] = {}
    outputs: dict[str, list[str]] = {}
    losses: dict[str, tuple[Any, Any]] = {}
    scorers = _scorers(models, tokenizer, recipe, should_stop)
    for which, scorer in scorers.items():
        eos = tokenizer.eos_token or ""
        sums, counts = scorer.continuation_logprob(prompts, [r + eos for r in references])
        losses[which] = (sums, counts)
        result: dict[str, Any] = {
            k: v
            for k, v in perplexity_from_losses(-float(sums.sum()), int(counts.sum())).items()
            if k in names
        }
        if generate:
            outputs[which] = scorer.generate(
                prompts,
                max_new_tokens=gen.max_new_tokens,
                do_sample=gen.do_sample,
                temperature=gen.temperature,
                top_p=gen.top_p,
                num_beams=gen.num_beams,
            )
            result.update(compute_text_metrics(names, [o.strip() for o in outputs[which]], references))
        metrics[which] = result
        events.emit(
            "eval",
            split=split.name,
            model=which,
            examples=len(pairs),
            **{k: v for k, v in result.items() if isinstance(v, float)},
        )
    samples = []
    for i, (prompt, reference) in enumerate(pairs):
        entry: dict[str, Any] = {"input": prompt, "reference": reference}
        for which, texts in outputs.items():
            entry[which] = texts[i].strip()
        if "tuned" in outputs:
            entry["tuned_rouge_l"] = compute_text_metrics(["rouge_l"], [entry["tuned"]], [reference])[
                "rouge_l"
            ]
        samples.append(entry)
    return metrics, samples, scorers, _causal_outputs(split, kept, references, losses, outputs)


PER_EXAMPLE_TEXT_METRICS = ("exact_match", "rouge1", "rouge2", "rouge_l")
"""Text metrics that are means over examples: predictions.jsonl keeps each example's value."""


def _causal_outputs(
    split: EvalSplit,
    kept: list[int],
    references: list[str],
    losses: dict[str, tuple[Any, Any]],
    generated: dict[str, list[str]],
) -> list[dict]:
    """Per example (rows with a reference): the generated answer, exact match as `correct`, the
    mean log-likelihood per reference token as `score`, its `nll` and `tokens`, and per-example
    rouge/exact-match values."""
    outputs = []
    for n, (i, reference) in enumerate(zip(kept, references, strict=True)):
        out: dict[str, Any] = {"row": i, "reference": reference}
        for which, (sums, counts) in losses.items():
            tokens = int(counts[n])
            nll = -float(sums[n])
            entry: dict[str, Any] = {
                "prediction": None,
                "correct": None,
                "score": -nll / tokens if tokens else None,
                "nll": nll,
                "tokens": tokens,
            }
            if which in generated:
                answer = generated[which][n].strip()
                values = compute_text_metrics(list(PER_EXAMPLE_TEXT_METRICS), [answer], [reference])
                entry.update(prediction=answer, correct=values.get("exact_match") == 1.0, metrics=values)
            out[which] = entry
        outputs.append(out)
    return outputs


def _preference(
    split: EvalSplit,
    tokenizer: Any,
    models: dict[str, Any],
    recipe: Recipe,
    events: EventWriter,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[dict, list[dict], dict[str, Any], list[dict]]:
    """preference_accuracy and margin of base and tuned models on the held-out pairs; for the
    DPO family the implicit-reward accuracy (tuned against the base model, its reference unless
    `start_from` set another); and how long each model's answers to a few prompts are, beside
    the chosen and rejected answers' lengths (a preference run can learn to be long-winded)."""
    from tuner_tui.evaluation.preference import (
        implicit_reward_accuracy,
        preference_metrics,
        score_answers,
        texts_of,
    )
    from tuner_tui.modeling.loading import ensure_chat_template

    if split.rows and isinstance(split.rows[0].get("prompt"), list):
        ensure_chat_template(tokenizer)
    metrics: dict[str, Any] = {}
    margins: dict[str, list[float | None]] = {}
    scores: dict[str, Any] = {}
    texts = texts_of(split.rows, tokenizer)
    pairs = bool(split.rows) and "chosen" in split.rows[0]
    prompts = [texts[2 * i][0] if pairs else texts[i][0] for i in range(min(len(split.rows), LENGTH_PROMPTS))]
    scorers = _scorers(models, tokenizer, recipe, should_stop)
    for which, scorer in scorers.items():
        scores[which] = score_answers(scorer, tokenizer, split.rows)
        metrics[which], margins[which] = preference_metrics(scores[which], split.rows)
        answers = scorer.generate(prompts, max_new_tokens=recipe.evaluation.generation.max_new_tokens)
        metrics[which]["answer_tokens"] = _mean_tokens(tokenizer, answers)
    if pairs and "base" in scores and not recipe.preference.start_from:
        reward = implicit_reward_accuracy(scores["tuned"], scores["base"])
        if reward is not None:
            metrics["tuned"]["implicit_reward_accuracy"] = reward
    if pairs:
        shown = split.rows[:LENGTH_PROMPTS]
        lengths = {key: _mean_tokens(tokenizer, [texts[2 * i + j][1] for i in range(len(shown))])
                   for j, key in enumerate(("chosen", "rejected"))}  # fmt: skip
        for which in metrics:
            metrics[which].update({f"{key}_tokens": value for key, value in lengths.items()})
    for which, result in metrics.items():
        figures = {k: v for k, v in result.items() if k.startswith(("preference_", "implicit_"))}
        events.emit("eval", split=split.name, model=which, examples=len(split.rows), **figures)
    samples = []
    if pairs:
        for i in range(len(split.rows)):
            (prompt, chosen), (_, rejected) = texts[2 * i], texts[2 * i + 1]
            entry: dict[str, Any] = {"input": prompt, "chosen": chosen, "rejected": rejected}
            for which, values in margins.items():
                margin = values[i]
                if margin is not None:  # None: an answer cut off by max_length, not scored
                    entry[f"{which}_margin"] = round(margin, 4)
            samples.append(entry)
    outputs = []
    for i in range(len(split.rows)):
        out: dict[str, Any] = {}
        for which, values in margins.items():
            margin = values[i] if pairs else None  # KTO's margins pair good with bad rows
            out[which] = {
                "prediction": None if margin is None else ("chosen" if margin > 0 else "rejected"),
                "correct": None if margin is None else margin > 0,
                "score": margin,
            }
        outputs.append(out)
    return metrics, samples, scorers, outputs


LENGTH_PROMPTS = 8
"""Held-out prompts each model answers, to compare its answers' length with the pairs'."""


def _mean_tokens(tokenizer: Any, texts: list[str]) -> float:
    if not texts:
        return 0.0
    return sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts) / len(texts)


def objective_verdicts(
    recipe: Recipe, metrics: dict[str, dict[str, Any]], split_name: str
) -> tuple[str, list[dict]]:
    """Each objective's base/tuned values, pass/fail and margin; the overall verdict."""
    rows = []
    for objective in recipe.objectives:
        key = METRICS[objective.metric].key if objective.metric in METRICS else objective.metric
        tuned = metrics.get("tuned", {}).get(key)
        base = metrics.get("base", {}).get(key)
        measured = isinstance(tuned, (int, float)) and not math.isnan(tuned)
        margin: float | None = None
        if isinstance(tuned, (int, float)) and measured:
            margin = tuned - objective.target if objective.higher_is_better else objective.target - tuned
        passed = margin is not None and margin >= 0
        rows.append(
            {
                "metric": objective.metric,
                "target": objective.target,
                "split": objective.split,
                "measured_on": split_name,
                "direction": ">=" if objective.higher_is_better else "<=",
                "base": base,
                "tuned": tuned,
                "passed": passed,
                "margin": margin,
                **({} if measured else {"note": f"'{objective.metric}' was not measured for this task/data"}),
            }
        )
    if not rows:
        return "no_objectives", rows
    return ("pass" if all(r["passed"] for r in rows) else "fail"), rows


def _rank_samples(samples: list[dict], key: str) -> dict[str, list[dict]]:
    ranked = sorted((s for s in samples if key in s), key=lambda s: s[key])
    return {"shown": samples[:SAMPLES_SHOWN], "best": ranked[::-1][:3], "worst": ranked[:3]}


def evaluate_run(
    recipe: Recipe,
    run: RunDir,
    events: EventWriter,
    device: str,
    pairs_file: Path | None = None,
    should_stop: Callable[[], bool] | None = None,
    split_recipe: Recipe | None = None,
    report_dir: Path | None = None,
) -> dict[str, Any]:
    """Evaluate the run's adapter (and the base model) and write report/report.{json,md}, the
    per-example outputs (report/predictions.jsonl, see evaluation/predictions.py) and, with
    [evaluation] general_data, the forgetting check (report/general.jsonl).

    Args:
        split_recipe: Take the held-out rows from this recipe's data, split and sample instead
            of the run's own (`tuner compare --on RUN`: score several runs on one test set).
        report_dir: Where to write; default the run's report/.

    Raises:
        EvaluationStopped: `should_stop()` answered True (checked between stages and batches);
            no report is written.
    """
    from tuner_tui.evaluation.report import mask_samples, write_report

    def check_stop() -> None:
        if should_stop is not None and should_stop():
            raise EvaluationStopped()

    task = recipe.model.task
    names = metrics_for(task, recipe.evaluation.metrics)
    general = recipe.evaluation.general_data if task == "causal_lm" else ""
    check_stop()
    tokenizer, loaded = _load_models(recipe, run, device, need_base=bool(general))
    models = {**loaded, "base": loaded["base"] if recipe.evaluation.compare_base else None}
    check_stop()
    split = load_eval_split(split_recipe or recipe, tokenizer)
    check_stop()
    if task == "sequence_classification":
        metrics, samples, scorers, outputs = _classification(
            split, tokenizer, models, recipe, names, events, should_stop
        )
        rank_key = "tuned_p_reference"
    elif task == "preference":
        metrics, samples, scorers, outputs = _preference(
            split, tokenizer, models, recipe, events, should_stop
        )
        rank_key = "tuned_margin"
    else:
        metrics, samples, scorers, outputs = _causal(
            split, tokenizer, models, recipe, names, events, should_stop
        )
        rank_key = "tuned_rouge_l"
    forgetting: dict[str, Any] | None = None
    general_rows: list[dict[str, Any]] = []
    if general:
        from tuner_tui.evaluation.general import forgetting as measure_forgetting

        check_stop()
        general_scorers = {**_scorers(loaded, tokenizer, recipe, should_stop)}
        forgetting, general_rows = measure_forgetting(
            Path(general), general_scorers, recipe.evaluation.max_samples, recipe.project.seed
        )
        metrics.setdefault("tuned", {})["general_perplexity"] = forgetting["tuned_perplexity"]
        metrics["tuned"]["general_perplexity_change"] = forgetting["general_perplexity_change"]
        if "base" in metrics:
            metrics["base"]["general_perplexity"] = forgetting["base_perplexity"]
        events.emit(
            "eval",
            split="general",
            model="tuned",
            examples=forgetting["texts"],
            general_perplexity=forgetting["tuned_perplexity"],
            base_general_perplexity=forgetting["base_perplexity"],
            general_perplexity_change=forgetting["general_perplexity_change"],
        )
    verdict, objectives = objective_verdicts(recipe, metrics, split.name)
    ids = split.row_ids or [f"row-{i}" for i in range(len(split.rows))]
    predictions = [{"row_id": ids[out.pop("row", i)], **out} for i, out in enumerate(outputs)]
    report: dict[str, Any] = {
        "run_id": run.run_id,
        "task": task,
        "split": split.name,
        "examples": len(split.rows),
        "sample": split.sample,
        "verdict": verdict,
        "objectives": objectives,
        "metrics": metrics,
        "samples": _rank_samples(samples, rank_key),
        "bias": _bias(recipe, split, scorers, pairs_file),
        "predictions": {
            "file": PREDICTIONS_FILE,
            "rows": len(predictions),
            "data_fingerprint": split.fingerprint,
            "row_ids_sha256": ids_digest(p["row_id"] for p in predictions),
            "stable_ids": split.row_ids is not None,
            "split_from": (split_recipe or recipe).data.path,
        },
    }
    if forgetting is not None:
        report["forgetting"] = forgetting
    check_stop()
    if recipe.evaluation.show_raw_samples:
        report["samples_masked"] = False
    else:
        report = mask_samples(report)
    folder = Path(report_dir) if report_dir is not None else run.report
    folder.mkdir(parents=True, exist_ok=True)
    write_predictions(folder / PREDICTIONS_FILE, predictions)
    if forgetting is not None:
        from tuner_tui.evaluation.general import GENERAL_FILE

        write_predictions(folder / GENERAL_FILE, general_rows)
    write_report(report, folder)
    return report


def _bias(
    recipe: Recipe, split: EvalSplit, scorers: dict[str, Any], pairs_file: Path | None
) -> dict[str, Any]:
    from tuner_tui.evaluation.bias import bias_report

    if recipe.model.task == "preference":
        from tuner_tui.evaluation.preference import prompt_text

        test_texts = [prompt_text(row) for row in split.rows]
    else:
        test_texts = [user_text(row, split.detection) for row in split.rows]
    pairs = pairs_file or (Path(recipe.bias.pairs_file) if recipe.bias.pairs_file else None)
    return bias_report(
        config=recipe.bias,
        # Preference tuning makes a causal LM: its bias is probed as any causal LM's is.
        task="causal_lm" if recipe.model.task == "preference" else recipe.model.task,
        base=scorers.get("base"),
        tuned=scorers["tuned"],
        train_texts=split.train_texts,
        train_labels=split.train_labels,
        test_texts=test_texts,
        pairs_path=pairs,
        max_pairs=recipe.evaluation.max_samples,
    )
