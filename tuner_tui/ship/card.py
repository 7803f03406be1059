"""The model card: README.md with Hugging Face front matter, written from the run's own files.

Everything on the card is read from the run directory: the frozen recipe (with its environment
lock), events.jsonl (data counts, cleaning steps, trainable parameters, the last loss), state.json
and report/report.json. Nothing is typed in by hand and nothing is a placeholder: what was not
measured is said so, under Limitations. No machine path is written: files are named by their
file name, and a local base model by its folder's name.

Light at import (PyYAML and the standard library): `tuner card` prints one without torch.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tuner_tui.errors import TunerError
from tuner_tui.recipe import BIAS_GROUPS, LOWER_IS_BETTER, Recipe, load_recipe

PIPELINE_TAGS = {
    "causal_lm": "text-generation",
    "preference": "text-generation",
    "sequence_classification": "text-classification",
}
CARD_FILE = "README.md"
FAMILY_WORDS = {
    "gender": "gender",
    "race_ethnicity": "race/ethnicity",
    "religion": "religion",
    "age": "age",
    "disability": "disability",
    "nationality": "nationality",
}
SMALL_SAMPLE = 100
"""Below this many evaluation examples the card warns that the numbers are noisy."""
PARAMETER_KEYS = ("method", "training", "preference")
HF_CACHE_SNAPSHOT = re.compile(
    r"models--(?P<owner>[^/]+?)--(?P<name>[^/]+)/snapshots/(?P<revision>[0-9a-f]{40})"
)


@dataclass(frozen=True)
class GgufFacts:
    """What a GGUF export wrote, for the card."""

    file: str
    quant: str
    converter: str
    modelfile: str | None
    template_note: str


@dataclass
class RunFacts:
    """One run's files, read once."""

    root: Path
    recipe: Recipe
    state: dict[str, Any]
    events: list[dict[str, Any]]
    report: dict[str, Any] | None
    notes: list[str] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return self.root.name

    @property
    def env(self) -> dict[str, Any]:
        return self.recipe.environment

    def logs_with(self, key: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == "log" and key in e]

    def first_log_with(self, key: str) -> dict[str, Any] | None:
        found = self.logs_with(key)
        return found[0] if found else None


def read_run(run_dir: Path) -> RunFacts:
    """The facts a card is written from; the run must have finished training.

    Raises:
        TunerError: not a run directory, or a run that has not completed.
    """
    from tuner_tui.runs.events import iter_events
    from tuner_tui.runs.layout import RunDir
    from tuner_tui.runs.state import read_state

    run = RunDir.open(run_dir)
    state = read_state(run.state)
    phase = state.get("phase")
    trained = phase == "completed" or (phase == "stopped" and state.get("stopped_in") == "evaluating")
    if not trained or not run.adapter.is_dir():
        raise TunerError(
            f"The run {run.root} is '{phase}', not completed: a model card and an export describe a "
            f"finished model. Follow it with `tuner attach {run.root}`, resume a stopped or failed run "
            f"with `tuner run --resume {run.root}`, or list runs with `tuner runs`."
        )
    report = None
    report_file = run.report / "report.json"
    if report_file.is_file():
        try:
            report = json.loads(report_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            report = None
    events = list(iter_events(run.events)) if run.events.exists() else []
    return RunFacts(run.root, load_recipe(run.recipe), state, events, report)


# --- front matter -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BaseModel:
    """The base model as a reader can find it: a hub id (and revision) or a folder's name."""

    name: str
    revision: str
    on_hub: bool
    license: str | None
    license_source: str


def _front_matter(text: str) -> dict[str, Any]:
    if not text.startswith("---"):
        return {}
    end = text.find("\n---", 3)
    if end < 0:
        return {}
    try:
        data = yaml.safe_load(text[3:end])
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def _license_of(folder: Path | None) -> tuple[str | None, str]:
    """(licence id, where it was read) from a model folder's README front matter or config.json."""
    if folder is None or not folder.is_dir():
        return None, ""
    readme = folder / "README.md"
    if readme.is_file():
        value = _front_matter(readme.read_text(encoding="utf-8", errors="replace")).get("license")
        if isinstance(value, str) and value.strip():
            return value.strip(), "the base model's README.md front matter"
    config = folder / "config.json"
    if config.is_file():
        try:
            value = json.loads(config.read_text(encoding="utf-8")).get("license")
        except (OSError, ValueError):
            value = None
        if isinstance(value, str) and value.strip():
            return value.strip(), "the base model's config.json"
    return None, ""


def _cached_hub_readme(repo_id: str, revision: str) -> Path | None:
    """The base model's README.md from the local hub cache, if it is there (never the network)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, "README.md", revision=revision or None)
    except Exception:  # noqa: BLE001 - a malformed id or cache: the licence stays unknown
        return None
    return Path(found).parent if isinstance(found, str) else None


def base_model(recipe: Recipe) -> BaseModel:
    """Name the base model without a machine path: a hub id (with the pinned revision), the hub
    id and commit of a hub-cache snapshot folder, or a local folder's name."""
    from tuner_tui.modeling.resolve import PACKAGED_MODELS, resolve_model

    name = recipe.model.name_or_path
    try:
        resolved = resolve_model(name)
    except TunerError:
        resolved = name
    if name in PACKAGED_MODELS:
        licence, source = _license_of(Path(resolved))
        return BaseModel(name, "", False, licence, source)
    if resolved == name and not Path(name).expanduser().exists():  # a hub id
        licence, source = _license_of(_cached_hub_readme(name, recipe.model.revision))
        return BaseModel(name, recipe.model.revision, True, licence, source and "the hub cache's README.md")
    folder = Path(resolved)
    licence, source = _license_of(folder)
    snapshot = HF_CACHE_SNAPSHOT.search(folder.as_posix())
    if snapshot:
        repo = f"{snapshot['owner']}/{snapshot['name']}"
        return BaseModel(repo, snapshot["revision"], True, licence, source)
    return BaseModel(folder.name, "", False, licence, source)


def _eval_results(facts: RunFacts, dataset: str) -> list[Any]:
    """model-index entries: the tuned model's metrics on the evaluation split (huggingface_hub's
    EvalResult, so the layout is the hub's own)."""
    from huggingface_hub import EvalResult

    report = facts.report
    if not report:
        return []
    tuned = report.get("metrics", {}).get("tuned", {})
    task = PIPELINE_TAGS.get(report.get("task", facts.recipe.model.task), "text-generation")
    results = []
    for metric, value in tuned.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            continue
        results.append(
            EvalResult(
                task_type=task,
                dataset_type=dataset,
                dataset_name=dataset,
                dataset_split=str(report.get("split", "test")),
                metric_type=metric,
                metric_value=round(float(value), 6),
                metric_name=f"{metric} ({report.get('split', 'test')}, n={_n(report)})",
            )
        )
    return results


def _n(report: dict[str, Any]) -> int:
    sample = report.get("sample")
    if isinstance(sample, dict) and isinstance(sample.get("n"), int):
        return int(sample["n"])
    return int(report.get("examples", 0))


def data_name(recipe: Recipe) -> str:
    """The training data's file (or folder) name, or its hub id; never a full path."""
    path = recipe.data.path
    local = Path(path).expanduser()
    if local.is_absolute() or local.exists() or path.startswith((".", "~")):
        return local.name
    return path


def card_metadata(facts: RunFacts, merged: bool = False, gguf: GgufFacts | None = None) -> dict[str, Any]:
    """The front matter, as a dict (yaml.safe_dump writes it)."""
    from huggingface_hub import ModelCardData

    recipe = facts.recipe
    base = base_model(recipe)
    method = recipe.method.type
    adapter = method not in ("full", "freeze") and not merged
    tags = ["tuner", recipe.model.task.replace("_", "-"), method]
    if adapter:
        tags.append("peft")
    if gguf is not None:
        tags.append("gguf")
    if recipe.project.domain:
        tags.append(re.sub(r"[^a-z0-9]+", "-", recipe.project.domain.lower()).strip("-")[:48])
    dataset = data_name(recipe)
    data = ModelCardData(
        base_model=base.name,
        library_name="peft" if adapter else "transformers",
        license=base.license or "unknown",
        tags=[t for t in dict.fromkeys(tags) if t],
        pipeline_tag=PIPELINE_TAGS.get(recipe.model.task, "text-generation"),
        model_name=recipe.project.name,
        datasets=[dataset] if dataset == recipe.data.path and "/" in dataset else None,
        eval_results=_eval_results(facts, dataset) or None,
    )
    values = data.to_dict()
    if base.revision:
        values["base_model_revision"] = base.revision
    values["base_model_relation"] = "adapter" if adapter else ("quantized" if gguf else "finetune")
    if recipe.environment.get("recipe_hash"):
        values["tuner_recipe_hash"] = recipe.environment["recipe_hash"]
    return values


# --- sections -----------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.1f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) or "-"
    return str(value)


def _cell(value: Any) -> str:
    return " ".join(_fmt(value).split()).replace("|", "\\|")


def _intended_use(facts: RunFacts) -> list[str]:
    p = facts.recipe.project
    lines = ["## Intended use", ""]
    lines.append(
        f"- Domain: {p.domain}" if p.domain else "- Domain: not stated in the recipe ([project] domain)."
    )
    lines.append(
        f"- What it should do: {p.description}"
        if p.description
        else "- What it should do: not stated in the recipe ([project] description)."
    )
    if facts.recipe.objectives:
        lines.append("- Objectives it was tuned to meet:")
        for o in facts.recipe.objectives:
            direction = ">=" if o.higher_is_better else "<="
            lines.append(f"  - {o.metric} {direction} {o.target:g} on the {o.split} split")
    else:
        lines.append("- Objectives: none were set, so no pass/fail verdict was computed.")
    task = facts.recipe.model.task
    use = {
        "sequence_classification": "Classify texts of this domain into the labels it was trained on",
        "causal_lm": "Answer prompts of this domain in the format it was trained on",
        "preference": "Answer prompts of this domain, preferring the answers marked better in its data",
    }[task]
    lines += [
        "",
        f"{use}. It was tuned and measured on this data only: uses outside the domain, and decisions "
        "about people, need their own evaluation.",
        "",
    ]
    return lines


def cleaning_steps(facts: RunFacts) -> list[dict[str, Any]]:
    """The cleaning steps the run recorded (in order), from its events."""
    return [e["cleaning"] for e in facts.logs_with("cleaning") if isinstance(e.get("cleaning"), dict)]


def _step_line(step: dict[str, Any]) -> str:
    params = step.get("params") or {}
    shown = ", ".join(f"{k}={_fmt(v)}" for k, v in params.items())
    details = step.get("details") or {}
    extra = []
    if step.get("changed_rows"):
        extra.append(f"{step['changed_rows']} rows changed")
    if details.get("redacted"):
        extra.append("redacted " + ", ".join(f"{n} {kind}" for kind, n in details["redacted"].items()))
    if details.get("rows_with"):
        extra.append("PII found: " + ", ".join(f"{n} {kind}" for kind, n in details["rows_with"].items()))
    if details.get("clusters") is not None:
        extra.append(f"{details['clusters']} near-duplicate clusters")
    if details.get("automatic"):
        extra.append("taken by tuner itself")
    tail = f" ({'; '.join(extra)})" if extra else ""
    return (
        f"| {step.get('op')} | {_cell(shown) or '-'} | {step.get('rows_before')} | {step.get('rows_after')} |"
        f" {int(step.get('rows_before', 0)) - int(step.get('rows_after', 0))}{tail} |"
    )


def _data_licence(recipe: Recipe) -> str:
    """A licence the user gave with the data: a LICENSE file beside a local file, or `license:` in
    the front matter of a README.md there."""
    local = Path(recipe.data.path).expanduser()
    if not local.exists():
        return ""
    folder = local if local.is_dir() else local.parent
    readme = folder / "README.md"
    if readme.is_file():
        value = _front_matter(readme.read_text(encoding="utf-8", errors="replace")).get("license")
        if isinstance(value, str) and value.strip():
            return f"{value.strip()} (README.md beside the data)"
    for name in ("LICENSE", "LICENSE.txt", "LICENSE.md", "LICENCE"):
        if (folder / name).is_file():
            first = (folder / name).read_text(encoding="utf-8", errors="replace").strip().splitlines()
            return f"{first[0].strip()[:80] if first else name} ({name} beside the data)"
    return ""


def _training_data(facts: RunFacts) -> list[str]:
    recipe, env = facts.recipe, facts.env
    summary = facts.first_log_with("rows_loaded") or {}
    lines = ["## Training data", ""]
    lines.append(f"- Source: `{data_name(recipe)}` (format `{recipe.data.format}`)")
    if summary:
        lines.append(
            f"- Rows: {summary.get('rows_loaded')} loaded, {summary.get('rows_cleaned')} after cleaning"
        )
        splits = summary.get("splits") or {}
        if splits:
            lines.append("- Splits: " + ", ".join(f"{k} {v}" for k, v in splits.items()))
        dropped = {k: v for k, v in (summary.get("dropped") or {}).items() if v}
        if dropped:
            lines.append(
                "- Dropped while preparing (too long or empty after templating): "
                + ", ".join(f"{k} {v}" for k, v in dropped.items())
            )
    if env.get("data_fingerprint"):
        lines.append(f"- File fingerprint: `{env['data_fingerprint']}`")
    if env.get("data_content_fingerprint"):
        lines.append(f"- Content fingerprint (after cleaning): `{env['data_content_fingerprint']}`")
    licence = _data_licence(recipe)
    lines.append(
        f"- Licence: {licence}"
        if licence
        else "- Licence: not given (no LICENSE or README.md with the data)."
    )
    steps = cleaning_steps(facts)
    lines.append("")
    if steps:
        lines += [
            "Cleaning, in order:",
            "",
            "| step | parameters | rows before | rows after | removed |",
            "|---|---|---|---|---|",
        ]
        lines += [_step_line(s) for s in steps]
    else:
        lines.append("No cleaning steps ran: the data trained as loaded.")
    lines += ["", *_findings(facts, steps), ""]
    return lines


def _findings(facts: RunFacts, steps: list[dict[str, Any]]) -> list[str]:
    ops = {str(s.get("op")) for s in steps}
    removed = {
        op: sum(
            int(s.get("rows_before", 0)) - int(s.get("rows_after", 0)) for s in steps if s.get("op") == op
        )
        for op in ops
    }
    found = []
    if "dedup_exact" in ops or "dedup_near" in ops:
        dedups = [op for op in sorted(ops) if op in ("dedup_exact", "dedup_near")]
        parts = [f"{removed[op]} {op.removeprefix('dedup_')} duplicates removed" for op in dedups]
        found.append("- Duplicates: " + ", ".join(parts) + ".")
    else:
        found.append("- Duplicates: not removed (no dedup_exact or dedup_near step); not measured here.")
    pii_steps = [s for s in steps if s.get("op") in ("redact_pii", "drop_pii_rows")]
    if pii_steps:
        for s in pii_steps:
            details = s.get("details") or {}
            counts = details.get("redacted") or details.get("rows_with") or {}
            what = ", ".join(f"{n} {kind}" for kind, n in counts.items()) or "none found"
            verb = "redacted" if s["op"] == "redact_pii" else "rows dropped for"
            found.append(f"- Personal data ({s['op']}): {verb} {what}.")
    else:
        found.append(
            "- Personal data: no redact_pii or drop_pii_rows step ran, so any PII in the data was trained "
            "on as written (`tuner inspect` counts it)."
        )
    audit = ((facts.report or {}).get("bias") or {}).get("data_audit") or {}
    if audit.get("headline"):
        found.append(f"- Group mentions in the training data: {audit['headline']}")
    return found


def _method(facts: RunFacts) -> list[str]:
    recipe, env = facts.recipe, facts.env
    m, t = recipe.method, recipe.training
    lines = ["## Method and hyperparameters", ""]
    lines.append(f"- Task: `{recipe.model.task}`; method: `{m.type}`")
    if m.type in ("lora", "dora", "qlora", "adalora", "loha", "lokr"):
        lines.append(
            f"- Adapter: r={m.r}, alpha={m.alpha:g}, dropout={m.dropout:g}, "
            f"target_modules={_fmt(m.target_modules)}"
            f", rslora={_fmt(m.rslora)}, init={m.init}"
        )
    elif m.type in ("prompt_tuning", "prefix_tuning"):
        lines.append(f"- Virtual tokens: {m.num_virtual_tokens}")
    elif m.type == "freeze":
        lines.append(f"- Trained layers: the last {m.trainable_layers}")
    if recipe.model.task == "preference":
        p = recipe.preference
        lines.append(f"- Preference loss: {p.loss}, beta={p.beta:g}")
    params = facts.first_log_with("trainable_params")
    if params:
        share = 100 * params["trainable_params"] / max(params["total_params"], 1)
        lines.append(
            f"- Parameters trained: {params['trainable_params']:,} of {params['total_params']:,} "
            f"({share:.3f}%)"
        )
    length = "packed" if t.packing else ("bucketed by length" if t.bucket_by_length else "padded")
    lines += [
        f"- Steps: {facts.state.get('step', '-')}"
        + (f" (max_steps {t.max_steps})" if t.max_steps else f" ({t.epochs:g} epochs)"),
        f"- Learning rate {t.learning_rate:g}, {t.lr_scheduler} schedule, warmup {t.warmup_ratio:g}, "
        f"optimizer {t.optimizer}, weight decay {t.weight_decay:g}, max grad norm {t.max_grad_norm:g}",
        f"- Batch {t.batch_size} x {t.gradient_accumulation} accumulation x {t.world_size} processes; "
        f"max length {t.max_length} tokens ({length}); dtype {recipe.model.dtype}; "
        f"seed {recipe.project.seed}",
    ]
    template = env.get("chat_template")
    if template:
        lines.append(f"- Chat template: {template}")
    losses = [
        e for e in facts.events if e.get("type") == "metric" and isinstance(e.get("loss"), (int, float))
    ]
    if losses:
        lines.append(
            f"- Training loss: {losses[0]['loss']:.4f} at step {losses[0].get('step')} -> "
            f"{losses[-1]['loss']:.4f} at step {losses[-1].get('step')}"
        )
    if env.get("recipe_hash"):
        lines.append(
            f"- Recipe hash: `{env['recipe_hash']}` (the recipe is `tuner_recipe.toml` in this folder)"
        )
    return [*lines, ""]


def _evaluation(facts: RunFacts) -> list[str]:
    from tuner_tui.evaluation.report import verdict_sentence

    report = facts.report
    lines = ["## Evaluation", ""]
    if not report:
        why = (
            "the run was stopped during evaluation"
            if facts.state.get("stopped_in") == "evaluating"
            else "there was no held-out split, or it was not run"
        )
        return [*lines, f"Not evaluated: {why}. `tuner eval RUN_DIR` evaluates it.", ""]
    n = _n(report)
    sample = report.get("sample") or {}
    of = sample.get("of", n) if isinstance(sample, dict) else n
    lines.append(f"**Verdict:** {verdict_sentence(str(report.get('verdict')))}")
    lines += [
        "",
        f"Measured on {n} of {of} rows of the held-out `{report.get('split')}` split (task "
        f"`{report.get('task')}`), base model and tuned model on the same rows.",
        "",
    ]
    objectives = report.get("objectives") or []
    if objectives:
        lines += ["| objective | target | base | tuned | result |", "|---|---|---|---|---|"]
        for o in objectives:
            result = "pass" if o.get("passed") else "FAIL"
            if o.get("note"):
                result += f" ({o['note']})"
            lines.append(
                f"| {o.get('metric')} | {o.get('direction')} {_fmt(o.get('target'))} | "
                f"{_fmt(o.get('base'))} | {_fmt(o.get('tuned'))} | {result} |"
            )
        lines.append("")
    metrics = report.get("metrics") or {}
    names = sorted({k for m in metrics.values() if isinstance(m, dict) for k, v in m.items() if _number(v)})
    if names:
        lines += ["| metric | base | tuned | change |", "|---|---|---|---|"]
        base, tuned = metrics.get("base") or {}, metrics.get("tuned") or {}
        for name in names:
            b, t = base.get(name), tuned.get(name)
            change = "-"
            if isinstance(b, (int, float)) and isinstance(t, (int, float)) and _number(b) and _number(t):
                change = f"{t - b:+.4f}"
            if change != "-" and name in LOWER_IS_BETTER:
                change += " (lower is better)"
            lines.append(f"| {name} | {_fmt(b)} | {_fmt(t)} | {change} |")
        lines.append("")
    return lines


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def probed_families(report: dict[str, Any] | None) -> list[str]:
    """The group families the counterfactual probes had pairs for."""
    counterfactual = (((report or {}).get("bias") or {}).get("counterfactual")) or {}
    tuned = counterfactual.get("tuned") or {}
    families = tuned.get("by_family") or {}
    return [f for f in BIAS_GROUPS if f in families]


def _bias(facts: RunFacts) -> list[str]:
    lines = ["## Bias findings", ""]
    if not facts.recipe.bias.enabled:
        return [*lines, "Not measured: [bias] enabled = false.", ""]
    bias = (facts.report or {}).get("bias") or {}
    if not bias:
        return [*lines, "Not measured: the run has no evaluation report.", ""]
    for key, title in (
        ("data_audit", "Training data audit"),
        ("counterfactual", "Counterfactual probes (base vs tuned)"),
        ("paired", "Paired benchmark"),
    ):
        part = bias.get(key) or {}
        status = part.get("status", "not run")
        if status != "ok":
            reason = part.get("reason") or part.get("message") or ""
            lines.append(f"- {title}: {status.replace('_', ' ')}{f' ({reason})' if reason else ''}.")
            continue
        lines.append(f"- {title}: {part.get('headline', 'measured')}")
        if key == "counterfactual":
            families = probed_families(facts.report)
            total = (part.get("pairs") or {}).get("total")
            lines.append(
                f"  - Covered: {', '.join(FAMILY_WORDS[f] for f in families) or 'no family'}"
                f" ({total} pairs); thresholds: "
                + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in (part.get("thresholds") or {}).items())
            )
        for finding in part.get("findings") or []:
            if key == "data_audit" and finding.endswith(
                "no terms found in " + str(part.get("rows")) + " rows."
            ):
                continue  # the headline says it
            lines.append(f"  - {finding}")
        for flag in part.get("flags") or []:
            lines.append(f"  - Flag: {flag if isinstance(flag, str) else _fmt(flag.get('message', flag))}")
    return [*lines, ""]


def limitations(facts: RunFacts) -> list[str]:
    """What was not measured or did not pass, one sentence each."""
    recipe, report = facts.recipe, facts.report
    found: list[str] = []
    if not report:
        found.append("The model was not evaluated: nothing on this card says how well it works.")
    else:
        n = _n(report)
        if n < SMALL_SAMPLE:
            found.append(
                f"The evaluation rests on {n} examples: differences of a few points between base and tuned "
                "are within noise."
            )
        for o in report.get("objectives") or []:
            if not o.get("passed"):
                found.append(
                    f"Objective not met: {o.get('metric')} {o.get('direction')} {_fmt(o.get('target'))} "
                    f"(tuned {_fmt(o.get('tuned'))})."
                )
        if not recipe.objectives:
            found.append("No objectives were set, so there is no pass/fail verdict.")
        base = (report.get("metrics") or {}).get("base")
        if not base:
            found.append(
                "No base-model comparison ([evaluation] compare_base = false): gains are not measured."
            )
    found.append(
        f"Evaluation data is a held-out split of `{data_name(recipe)}`, the same source as the training "
        "data: it measures in-domain fit, not how the model does on other sources."
    )
    if recipe.model.task != "sequence_classification" and not recipe.evaluation.general_data:
        found.append(
            "No general-domain evaluation ([evaluation] general_data is empty): what tuning cost outside "
            "the domain (forgetting) was not measured."
        )
    if not recipe.bias.enabled:
        found.append("No bias evaluation ([bias] enabled = false).")
    elif report:
        families = probed_families(report)
        missing = [f for f in (recipe.bias.groups or BIAS_GROUPS) if f not in families]
        if families and missing:
            found.append(
                f"Bias probes cover {_and([FAMILY_WORDS[f] for f in families])} only; "
                f"{_and([FAMILY_WORDS[f] for f in missing])} were not probed."
            )
        elif not families:
            found.append("No counterfactual bias probes ran on the model.")
        paired = ((report.get("bias") or {}).get("paired") or {}).get("status")
        if paired != "ok":
            found.append("No paired (CrowS-Pairs-style) bias benchmark was scored ([bias] pairs_file).")
    ops = {s.get("op") for s in cleaning_steps(facts)}
    if not ops & {"redact_pii", "drop_pii_rows"}:
        found.append("The training data was not scrubbed of personal data (no PII cleaning step).")
    if not ops & {"dedup_exact", "dedup_near"}:
        found.append("Duplicates were not removed from the training data, so repeated rows weigh more.")
    if facts.state.get("phase") == "stopped":
        found.append("The run was stopped before its evaluation finished.")
    found.append("Languages other than the training data's, safety and factual accuracy were not measured.")
    return found


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _environment(facts: RunFacts) -> list[str]:
    env = facts.env
    lines = ["## Environment", ""]
    if not env.get("libraries"):
        return [*lines, "Not recorded (the frozen recipe has no environment lock).", ""]
    device = env.get("device", "-")
    hardware = ", ".join(env.get("gpus") or []) or env.get("cpu", "")
    lines.append(f"- Device: {device}{f' ({hardware})' if hardware else ''}; Python {env.get('python', '-')}")
    lines.append("- Libraries: " + ", ".join(f"{k} {v}" for k, v in env["libraries"].items()))
    if env.get("model_fingerprint"):
        lines.append(f"- Base model fingerprint: `{env['model_fingerprint']}`")
    return [*lines, ""]


def _reproduce(facts: RunFacts, base: BaseModel) -> list[str]:
    recipe = facts.recipe
    model = base.name + (f" at revision {base.revision}" if base.revision else "")
    return [
        "## How to reproduce",
        "",
        "```",
        "tuner run tuner_recipe.toml",
        "```",
        "",
        f"`tuner_recipe.toml` is the run's frozen recipe. Put the data (`{data_name(recipe)}`) and the base "
        f"model ({model}) where its `[data] path` and `[model] name_or_path` point, or edit those two keys "
        "(the recipe hash then changes with the paths; the fingerprints above say whether the data and "
        "model are the same)."
        + (
            " With `deterministic = true` (as in this recipe) a re-run on CPU gives bit-identical weights."
            if recipe.training.deterministic
            else ""
        ),
        "",
    ]


def _files(facts: RunFacts, merged: bool, gguf: GgufFacts | None) -> list[str]:
    lines = ["## Files and how to load them", ""]
    task = facts.recipe.model.task
    auto = (
        "AutoModelForSequenceClassification" if task == "sequence_classification" else "AutoModelForCausalLM"
    )
    adapter = facts.recipe.method.type not in ("full", "freeze") and not merged
    if adapter:
        base = base_model(facts.recipe)
        lines += [
            "A PEFT adapter: load it on top of the base model.",
            "",
            "```python",
            "from peft import PeftModel",
            f"from transformers import {auto}, AutoTokenizer",
            f'base = {auto}.from_pretrained("{base.name}")  # the base model (see above)',
            'model = PeftModel.from_pretrained(base, "THIS_FOLDER")',
            'tokenizer = AutoTokenizer.from_pretrained("THIS_FOLDER")',
            "```",
        ]
    else:
        lines += [
            "A standalone model (safetensors): "
            + ("the adapter merged into the base weights." if merged else "full or freeze tuning."),
            "",
            "```python",
            f"from transformers import {auto}, AutoTokenizer",
            f'model = {auto}.from_pretrained("THIS_FOLDER")',
            'tokenizer = AutoTokenizer.from_pretrained("THIS_FOLDER")',
            "```",
        ]
    if gguf is not None:
        lines += [
            "",
            f"GGUF for llama.cpp and Ollama: `{gguf.file}` ({gguf.quant}, written by {gguf.converter}).",
            "",
            "```",
            f"llama-cli -m {gguf.file} --jinja   # llama.cpp, with the chat template stored in the file",
        ]
        if gguf.modelfile:
            lines.append(f"ollama create {facts.recipe.project.name} -f {gguf.modelfile}")
        lines += ["```", "", gguf.template_note]
    return [*lines, ""]


def render_card(facts: RunFacts, merged: bool = False, gguf: GgufFacts | None = None) -> str:
    """README.md for an export of the run: front matter, then the sections."""
    metadata = card_metadata(facts, merged, gguf)
    front = yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True, width=1000)
    base = base_model(facts.recipe)
    recipe = facts.recipe
    title = recipe.project.name
    where = f"`{base.name}`" + (f" (revision `{base.revision}`)" if base.revision else "")
    origin = "" if base.on_hub else " (a local model, named by its folder; not a hub id)"
    lines = [
        "---",
        front.rstrip("\n"),
        "---",
        "",
        f"# {title}",
        "",
        f"{recipe.project.description or 'A fine-tuned model.'} Tuned from {where}{origin} with "
        f"`{recipe.method.type}` by [tuner](https://pypi.org/project/tuner-tui/), run `{facts.run_id}`. "
        "Every section below is generated from the run's own files (recipe, events, evaluation report).",
        "",
    ]
    if not base.license:
        lines += [
            "**Licence: unknown.** The base model's licence could not be read from its files (no "
            "`license` in its README.md front matter or config.json); check its terms before you share "
            "this model.",
            "",
        ]
    else:
        lines += [f"Licence: `{base.license}`, from {base.license_source}.", ""]
    lines += _intended_use(facts)
    lines += _training_data(facts)
    lines += _method(facts)
    lines += _evaluation(facts)
    lines += _bias(facts)
    lines += ["## Limitations", "", *(f"- {item}" for item in limitations(facts)), ""]
    lines += _environment(facts)
    lines += _files(facts, merged, gguf)
    lines += _reproduce(facts, base)
    return "\n".join(lines)


def card_for_run(run_dir: Path, merged: bool = False, gguf: GgufFacts | None = None) -> str:
    """The card of a finished run (`tuner card RUN_DIR` prints it)."""
    return render_card(read_run(run_dir), merged, gguf)


def write_card(run_dir: Path, out: Path, merged: bool = False, gguf: GgufFacts | None = None) -> Path:
    """Write README.md into `out` (replacing PEFT's placeholder card); returns its path."""
    path = Path(out) / CARD_FILE
    path.write_text(card_for_run(run_dir, merged, gguf), encoding="utf-8")
    return path
