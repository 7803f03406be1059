"""`tuner monitor`: do production inputs still look like the run's training data?

Inputs are a data file (JSONL/JSON/CSV/Parquet, the column chosen as `tuner predict` chooses it)
or a server's `serve/requests.jsonl`. Each check compares the inputs with the training split the
run trained on (loaded, cleaned and split as training did), has a threshold, and says in words
whether it drifted:

- token length, population stability index (PSI) over the training lengths' deciles: above 0.2
  is the usual mark of a shift that matters (0.1-0.2: moderate);
- token length, two-sample Kolmogorov-Smirnov statistic: drift when D > 0.1 and p < 0.01 (both:
  with thousands of inputs a negligible D is "significant", with a handful a large D is noise);
- unknown words: the share of input words never seen in the training texts, against the same
  share for the run's own held-out rows (new text from the training distribution has some):
  drift when it exceeds that baseline by more than 10 points;
- PII rate: the share of inputs holding personal data (tuner's detectors), drift when it exceeds
  the training share by more than 5 points;
- classifiers: the tuned model's predicted label distribution on the inputs against the
  training labels, PSI over the labels, drift above 0.2.

A requests log gives latency p50/p95 and requests per second; it holds prompt text only when the
server ran with --log-prompts, so without it only the token-length checks run (on the server's
own prompt token counts, against the training prompts rendered with the run's chat template).
"""

from __future__ import annotations

import json
import math
import random
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from tuner_tui.errors import TunerError

PSI_THRESHOLD = 0.2
KS_THRESHOLD = 0.1
KS_P_VALUE = 0.01
UNKNOWN_WORDS_MARGIN = 0.10
PII_MARGIN = 0.05
LABEL_PSI_THRESHOLD = 0.2
MAX_TRAINING_ROWS = 5000
"""Training rows measured for the length and PII baselines (a seeded sample beyond this)."""
DEFAULT_MAX_INPUTS = 2000
FEW_INPUTS = 30
_EPS = 1e-4
_WORD = re.compile(r"[^\W\d_]+")


@dataclass(frozen=True)
class DriftCheck:
    """One check: its statistic against its threshold, and what that means in words."""

    name: str
    title: str
    statistic: float | None
    threshold: float
    drifted: bool | None
    """None: not measured (see `words`)."""
    words: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "statistic": _finite(self.statistic),
            "threshold": self.threshold,
            "drifted": self.drifted,
            "words": self.words,
            "details": self.details,
        }


@dataclass(frozen=True)
class MonitorReport:
    run: str
    inputs_path: str
    source: str
    """'file' or 'requests' (a server's requests log)."""
    inputs: int
    training_rows: int
    checks: list[DriftCheck]
    latency: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def drift(self) -> bool:
        return any(check.drifted for check in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "inputs_path": self.inputs_path,
            "source": self.source,
            "inputs": self.inputs,
            "training_rows": self.training_rows,
            "drift": self.drift,
            "checks": [check.to_json() for check in self.checks],
            "latency": self.latency,
            "notes": self.notes,
        }


def _finite(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), 6)


# -- the statistics ----------------------------------------------------------------------------------


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two distributions over the same bins (proportions)."""
    e = np.clip(np.asarray(expected, dtype=np.float64), _EPS, None)
    a = np.clip(np.asarray(actual, dtype=np.float64), _EPS, None)
    e, a = e / e.sum(), a / a.sum()
    return float(np.sum((a - e) * np.log(a / e)))


def length_psi(train: np.ndarray, inputs: np.ndarray, bins: int = 10) -> tuple[float, list[float]]:
    """PSI of `inputs` against `train` over the training values' quantile bins; the bin edges."""
    edges = np.unique(np.quantile(train, np.linspace(0, 1, bins + 1)[1:-1]))
    train_counts = np.bincount(np.searchsorted(edges, train, side="right"), minlength=len(edges) + 1)
    input_counts = np.bincount(np.searchsorted(edges, inputs, side="right"), minlength=len(edges) + 1)
    # Half a count added to every bin (additive smoothing): an empty bin of a few dozen inputs is
    # sampling noise, not an infinitely large shift.
    return psi(train_counts + 0.5, input_counts + 0.5), edges.tolist()


def ks_two_sample(train: np.ndarray, inputs: np.ndarray) -> tuple[float, float]:
    """(statistic, p-value) of the two-sample Kolmogorov-Smirnov test (scipy)."""
    from scipy.stats import ks_2samp

    result = ks_2samp(train, inputs)
    return float(result.statistic), float(result.pvalue)


def words_of(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def unknown_share(texts: list[str], vocabulary: set[str]) -> float:
    total = unknown = 0
    for text in texts:
        for word in words_of(text):
            total += 1
            unknown += word not in vocabulary
    return unknown / total if total else 0.0


def pii_share(texts: list[str]) -> tuple[float, dict[str, int]]:
    """Share of texts with at least one PII hit, and the hits by kind."""
    from tuner_tui.data.pii import find_pii

    kinds: dict[str, int] = {}
    flagged = 0
    for text in texts:
        hits = find_pii(text)
        if hits:
            flagged += 1
            for hit in hits:
                kinds[hit.kind] = kinds.get(hit.kind, 0) + 1
    return (flagged / len(texts) if texts else 0.0), kinds


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else None


# -- the checks ----------------------------------------------------------------------------------


def length_checks(train: np.ndarray, inputs: np.ndarray, what: str) -> list[DriftCheck]:
    value, edges = length_psi(train, inputs)
    drifted = value > PSI_THRESHOLD
    stats = {
        "training_median": float(np.median(train)),
        "inputs_median": float(np.median(inputs)),
        "training_p95": float(np.percentile(train, 95)),
        "inputs_p95": float(np.percentile(inputs, 95)),
    }
    medians = f"median {stats['inputs_median']:g} tokens vs {stats['training_median']:g} in training"
    psi_words = (
        f"Drifted: {what} lengths moved (PSI {value:.3f} > {PSI_THRESHOLD}; {medians})."
        if drifted
        else f"No drift: {what} lengths match training (PSI {value:.3f} <= {PSI_THRESHOLD}; {medians})."
    )
    statistic, p_value = ks_two_sample(train, inputs)
    ks_drifted = statistic > KS_THRESHOLD and p_value < KS_P_VALUE
    ks_words = (
        f"Drifted: the length distributions differ (KS D = {statistic:.3f} > {KS_THRESHOLD}, "
        f"p = {p_value:.2g} < {KS_P_VALUE})."
        if ks_drifted
        else f"No drift: KS D = {statistic:.3f}, p = {p_value:.2g} (drift needs D > {KS_THRESHOLD} and "
        f"p < {KS_P_VALUE})."
    )
    return [
        DriftCheck(
            "token_length_psi",
            "Token length (PSI)",
            value,
            PSI_THRESHOLD,
            drifted,
            psi_words,
            {**stats, "bin_edges": edges},
        ),  # fmt: skip
        DriftCheck(
            "token_length_ks",
            "Token length (KS)",
            statistic,
            KS_THRESHOLD,
            ks_drifted,
            ks_words,
            {**stats, "p_value": p_value, "p_value_threshold": KS_P_VALUE},
        ),  # fmt: skip
    ]


def unknown_words_check(inputs: list[str], vocabulary: set[str], baseline: float) -> DriftCheck:
    share = unknown_share(inputs, vocabulary)
    limit = baseline + UNKNOWN_WORDS_MARGIN
    drifted = share > limit
    words = (
        f"Drifted: {share:.1%} of input words never occur in the training texts (the run's held-out "
        f"rows: {baseline:.1%}; drift above {limit:.1%})."
        if drifted
        else f"No drift: {share:.1%} of input words are new to the training texts (held-out rows: "
        f"{baseline:.1%}; drift above {limit:.1%})."
    )
    details = {"inputs_share": share, "held_out_share": baseline, "vocabulary": len(vocabulary)}
    return DriftCheck("unknown_words", "Unknown words", share, limit, drifted, words, details)


def pii_check(inputs: list[str], training_share: float) -> DriftCheck:
    share, kinds = pii_share(inputs)
    limit = training_share + PII_MARGIN
    drifted = share > limit
    kinds_text = ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())) or "none"
    words = (
        f"Drifted: {share:.1%} of inputs hold personal data ({kinds_text}) vs {training_share:.1%} of "
        f"training rows (drift above {limit:.1%})."
        if drifted
        else f"No drift: {share:.1%} of inputs hold personal data ({kinds_text}) vs {training_share:.1%} "
        f"of training rows (drift above {limit:.1%})."
    )
    details = {"inputs_share": share, "training_share": training_share, "kinds": kinds}
    return DriftCheck("pii_rate", "PII rate", share, limit, drifted, words, details)


def label_check(predicted: list[str], training: list[str], labels: list[str]) -> DriftCheck:
    def distribution(values: list[str]) -> dict[str, float]:
        return {label: values.count(label) / len(values) if values else 0.0 for label in labels}

    want, got = distribution(training), distribution(predicted)
    value = psi(np.array([want[k] for k in labels]), np.array([got[k] for k in labels]))
    drifted = value > LABEL_PSI_THRESHOLD
    moved = max(labels, key=lambda k: abs(got[k] - want[k]))
    shift = f"'{moved}' {got[moved]:.0%} of predictions vs {want[moved]:.0%} of training labels"
    words = (
        f"Drifted: the predicted labels are distributed unlike the training labels (PSI {value:.3f} > "
        f"{LABEL_PSI_THRESHOLD}; {shift})."
        if drifted
        else f"No drift: predicted labels follow the training labels (PSI {value:.3f} <= "
        f"{LABEL_PSI_THRESHOLD}; largest gap: {shift})."
    )
    details = {"predicted": got, "training": want}
    return DriftCheck(
        "label_distribution", "Predicted labels", value, LABEL_PSI_THRESHOLD, drifted, words, details
    )


def not_measured(name: str, title: str, threshold: float, why: str) -> DriftCheck:
    return DriftCheck(name, title, None, threshold, None, f"Not measured: {why}")


# -- reading the inputs ------------------------------------------------------------------------------


@dataclass
class Inputs:
    source: str
    texts: list[str] | None
    """None: a requests log without prompt text."""
    prompt_tokens: list[int] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    column: str = ""


def is_requests_log(path: Path) -> bool:
    """A server's requests log: JSON lines with `latency_s` and `prompt_tokens`."""
    if path.suffix.lower() not in (".jsonl", ".json") or not path.is_file():
        return False
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.strip():
                try:
                    first = json.loads(line)
                except ValueError:
                    return False
                return isinstance(first, dict) and "latency_s" in first and "prompt_tokens" in first
    return False


def read_requests(path: Path) -> Inputs:
    records = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            if number == len(lines):
                continue  # the line being written
            raise TunerError(f"{path}:{number} is not JSON: is this a requests log of tuner serve?") from None
        if isinstance(record, dict) and record.get("status") in (200, None):
            records.append(record)
    has_prompts = bool(records) and all(isinstance(r.get("prompt"), str) for r in records)
    tokens = [int(r["prompt_tokens"]) for r in records if isinstance(r.get("prompt_tokens"), int)]
    texts = [str(r["prompt"]) for r in records] if has_prompts else None
    return Inputs("requests", texts, tokens, records)


def read_input_file(path: Path, task: str, fields: dict[str, str], field_name: str | None) -> Inputs:
    from tuner_tui.data.load import load_any
    from tuner_tui.deploy.predict import input_column, row_messages

    dataset = load_any(str(path))
    column = input_column(task, fields, list(dataset.column_names), field_name)
    texts = []
    for row in dataset.select_columns(
        [c for c in {column, fields.get("input", "input")} if c in dataset.column_names]
    ):
        messages = row_messages(row, column, fields)
        texts.append("\n".join(m["content"] for m in messages if m["role"] == "user"))
    return Inputs("file", texts, column=column)


def latency_summary(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    latencies = [float(r["latency_s"]) for r in records if isinstance(r.get("latency_s"), (int, float))]
    if not latencies:
        return None
    times = []
    for r in records:
        try:
            times.append(datetime.fromisoformat(str(r.get("time")).replace("Z", "+00:00")).timestamp())
        except ValueError:
            continue
    span = (max(times) - min(times)) if len(times) > 1 else 0.0
    completion = [int(r["completion_tokens"]) for r in records if isinstance(r.get("completion_tokens"), int)]
    return {
        "requests": len(latencies),
        "p50_s": percentile(latencies, 50),
        "p95_s": percentile(latencies, 95),
        "span_s": span,
        "requests_per_s": len(latencies) / span if span > 0 else None,
        "completion_tokens": sum(completion),
        "first": min(times) if times else None,
        "last": max(times) if times else None,
    }


# -- the report ------------------------------------------------------------------------------------


def _sample(items: list[Any], limit: int, seed: int) -> list[Any]:
    if len(items) <= limit:
        return list(items)
    picked = sorted(random.Random(seed).sample(range(len(items)), limit))
    return [items[i] for i in picked]


def monitor_run(
    run_dir: Path | str,
    inputs_path: Path | None = None,
    field_name: str | None = None,
    max_inputs: int = DEFAULT_MAX_INPUTS,
    device: str = "cpu",
) -> MonitorReport:
    """The drift report of `inputs_path` (default: the run's serve/requests.jsonl).

    Raises:
        TunerError: the run is not completed, the inputs are missing, empty or have no such
            column, or the training data cannot be read any more.
    """
    from tuner_tui.data.pipeline import load_splits
    from tuner_tui.deploy.artifacts import completed_run, load_run_tokenizer, render_prompt
    from tuner_tui.evaluation.run import user_text

    run, recipe = completed_run(run_dir, "monitor")
    if inputs_path is None:
        from tuner_tui.deploy.serve import requests_log

        inputs_path = requests_log(run.root)
        if not inputs_path.exists():
            raise TunerError(
                f"No --inputs given and {run.root} has no requests log ({inputs_path}): pass the production "
                f"inputs with --inputs FILE, or serve the run (tuner serve {run.root}) and let it answer."
            )
    inputs_path = Path(inputs_path)
    if not inputs_path.exists():
        raise TunerError(f"The inputs file {inputs_path} does not exist. Pass a JSONL, CSV or Parquet file.")
    task = recipe.model.task
    if task == "preference":
        raise TunerError(
            "tuner monitor compares inputs with supervised training data; preference runs are not "
            "covered yet."
        )
    seed = recipe.project.seed
    if is_requests_log(inputs_path):
        inputs = read_requests(inputs_path)
    else:
        inputs = read_input_file(inputs_path, task, recipe.data.fields, field_name)
    count = len(inputs.texts) if inputs.texts is not None else len(inputs.prompt_tokens)
    if count == 0:
        raise TunerError(f"{inputs_path} holds no inputs to compare (no rows, or no answered requests).")
    notes = []
    if inputs.texts is not None and len(inputs.texts) > max_inputs:
        notes.append(
            f"{len(inputs.texts)} inputs: a seeded sample of {max_inputs} was measured (--max-inputs)."
        )
        inputs.texts = _sample(inputs.texts, max_inputs, seed)
    tokenizer = load_run_tokenizer(run, recipe)
    data = load_splits(recipe, tokenizer=tokenizer)
    detection = data.detection
    train = data.splits["train"]
    train_texts_all = [user_text(row, detection) for row in train]
    train_texts = _sample(train_texts_all, MAX_TRAINING_ROWS, seed)
    held_out = [user_text(row, detection) for name in ("validation", "test") if name in data.splits
                for row in data.splits[name]]  # fmt: skip
    held_out = _sample(held_out, MAX_TRAINING_ROWS, seed)

    def tokens(texts: list[str], rendered: bool) -> np.ndarray:
        if rendered:
            texts = [render_prompt(tokenizer, recipe, [{"role": "user", "content": t}]) for t in texts]
        ids = (
            tokenizer(texts, add_special_tokens=not rendered, truncation=False)["input_ids"] if texts else []
        )
        return np.array([len(row) for row in ids], dtype=np.float64)

    checks: list[DriftCheck] = []
    if inputs.texts is not None:
        checks += length_checks(tokens(train_texts, False), tokens(inputs.texts, False), "input")
    else:  # the server's prompt token counts: compare with the prompts it would have been given
        checks += length_checks(tokens(train_texts, task == "causal_lm"),
                                np.array(inputs.prompt_tokens, dtype=np.float64), "prompt")  # fmt: skip
    no_text = (
        "the requests log holds no prompt text (the server runs without --log-prompts, which keeps "
        "personal data out of it)."
    )
    if inputs.texts is not None:
        vocabulary = {w for text in train_texts_all for w in words_of(text)}
        checks.append(unknown_words_check(inputs.texts, vocabulary, unknown_share(held_out, vocabulary)))
        checks.append(pii_check(inputs.texts, pii_share(train_texts)[0]))
    else:
        checks.append(not_measured("unknown_words", "Unknown words", UNKNOWN_WORDS_MARGIN, no_text))
        checks.append(not_measured("pii_rate", "PII rate", PII_MARGIN, no_text))
    if task == "sequence_classification":
        if inputs.texts is None:
            checks.append(
                not_measured("label_distribution", "Predicted labels", LABEL_PSI_THRESHOLD, no_text)
            )
        else:
            checks.append(_label_check(run, recipe, tokenizer, inputs.texts, train, detection, device))
    if count < FEW_INPUTS:
        notes.append(
            f"Only {count} inputs: the statistics are uncertain; collect more before acting on them."
        )
    latency = latency_summary(inputs.records) if inputs.source == "requests" else None
    return MonitorReport(
        str(run.root), str(inputs_path), inputs.source, count, len(train), checks, latency, notes
    )


def _label_check(
    run: Any, recipe: Any, tokenizer: Any, texts: list[str], train: Any, detection: Any, device: str
) -> DriftCheck:
    from transformers import set_seed

    from tuner_tui.evaluation.scoring import ClassifierScorer
    from tuner_tui.modeling.export import load_tuned_model, read_id2label

    id2label = read_id2label(run.adapter) or {}
    set_seed(recipe.project.seed)
    model = load_tuned_model(recipe, run.adapter, device=device)
    scorer = ClassifierScorer(model, tokenizer, id2label, max_length=recipe.training.max_length)
    probs = scorer.predict_proba(texts)
    predicted = [id2label[int(p.argmax())] for p in probs]
    training = [str(v) for v in train[detection.fields["label"]]]
    return label_check(predicted, training, [id2label[i] for i in sorted(id2label)])
