"""Inspect a dataset: one pass over its Arrow batches, summarised in a JSON-serialisable DataReport.

What is kept per row is numbers only (lengths, a 64-bit hash, a MinHash signature); texts are looked
at batch by batch and only a handful of examples are kept, masked.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tuner_tui.data import pii
from tuner_tui.data.dedup import (
    LabelConflicts,
    MinHasher,
    exact_keys,
    first_occurrences,
    label_conflicts,
    near_duplicates,
)
from tuner_tui.data.formats import TRAINABLE_FORMATS, Detection, resolve_format, to_messages
from tuner_tui.data.load import SPLIT_COLUMN, LoadInfo, load_data
from tuner_tui.data.ops import UNLABELED_OP
from tuner_tui.data.preference import (
    Pair,
    is_conversational,
    iter_pairs,
    kto_problems,
    side_text,
    tally_pairs,
)
from tuner_tui.data.text import arrow_batches, as_text, identity_text, row_text, text_columns, word_counts

if TYPE_CHECKING:
    from datasets import Dataset

    from tuner_tui.recipe import DataConfig

SNIPPET_CHARS = 160
EXAMPLES_PER_KIND = 3
EXTREMES = 5
HISTOGRAM_BINS = 12
WHITESPACE_LABEL = "whitespace words (no tokenizer given)"
CONFLICT_EXAMPLES = 3
_CHAT_FORMATS = ("alpaca", "sharegpt", "messages")
TRUNCATED_PAIRS_WARN = 0.05
LENGTH_BIAS_WARN = 0.8


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    """`text` on one line, PII masked, cut to `limit` characters."""
    flat = " ".join(pii.mask_text(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def length_summary(values: np.ndarray) -> dict[str, Any]:
    """min, p50, p95, max, mean and a histogram (the last bin also holds everything above p99)."""
    if len(values) == 0:
        return {"min": None, "p50": None, "p95": None, "max": None, "mean": None, "histogram": None}
    low, high = int(values.min()), int(np.percentile(values, 99, method="higher"))
    high = max(high, low + 1)
    counts, edges = np.histogram(np.clip(values, low, high), bins=HISTOGRAM_BINS, range=(low, high))
    return {
        "min": low,
        "p50": int(np.percentile(values, 50, method="nearest")),
        "p95": int(np.percentile(values, 95, method="nearest")),
        "max": int(values.max()),
        "mean": round(float(values.mean()), 1),
        "histogram": {"edges": [round(float(e), 1) for e in edges], "counts": counts.tolist()},
    }


@dataclass
class DataReport:
    """What `inspect_dataset` found. `to_json()` is the contract other tools read."""

    source: str
    load: dict[str, Any]
    detection: Detection
    trainable: bool
    rows: int
    columns: dict[str, str]
    field_counts: dict[str, dict[str, int]]
    empty_turns: int | None
    char_lengths: dict[str, Any]
    token_lengths: dict[str, Any]
    truncation: dict[str, Any] | None
    labels: dict[str, int] | None
    label_imbalance_ratio: float | None
    exact_duplicates: int
    exact_duplicate_examples: list[str]
    near_duplicate_clusters: int | None
    near_duplicate_rows: int | None
    near_duplicate_threshold: float
    near_duplicate_examples: list[list[str]]
    pii: dict[str, int]
    pii_rows: int
    pii_examples: dict[str, list[str]]
    shortest: list[dict[str, Any]]
    longest: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)
    label_conflicts: dict[str, Any] | None = None
    constant_columns: dict[str, str] = field(default_factory=dict)
    pairs: dict[str, Any] | None = None
    """Preference data only: pair counts, lengths of prompt/chosen/rejected, truncation, bias."""
    kto: dict[str, Any] | None = None
    """KTO data only: desirable/undesirable counts and rows that cannot train."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict; keys listed in the issue are always present."""
        return {
            "source": self.source,
            "load": self.load,
            "format": self.detection.format,
            "trainable": self.trainable,
            "fields": dict(self.detection.fields),
            "evidence": list(self.detection.evidence),
            "rows": self.rows,
            "columns": self.columns,
            "field_counts": self.field_counts,
            "empty_turns": self.empty_turns,
            "char_lengths": self.char_lengths,
            "token_lengths": self.token_lengths,
            "truncation": self.truncation,
            "labels": self.labels,
            "label_imbalance_ratio": self.label_imbalance_ratio,
            "exact_duplicates": self.exact_duplicates,
            "exact_duplicate_examples": self.exact_duplicate_examples,
            "near_duplicate_clusters": self.near_duplicate_clusters,
            "near_duplicate_rows": self.near_duplicate_rows,
            "near_duplicate_threshold": self.near_duplicate_threshold,
            "near_duplicate_examples": self.near_duplicate_examples,
            "pii": self.pii,
            "pii_rows": self.pii_rows,
            "pii_examples": self.pii_examples,
            "shortest": self.shortest,
            "longest": self.longest,
            "warnings": self.warnings,
            "label_conflicts": self.label_conflicts,
            "constant_columns": self.constant_columns,
            "pairs": self.pairs,
            "kto": self.kto,
            # the unit of `token_lengths` (and of each example's "tokens"): words without a tokenizer
            "length_unit": self.token_lengths.get("unit", "tokens"),
        }


class _TokenCounter:
    """Counts tokens per row the way training will see them (chat template applied), or words."""

    def __init__(self, tokenizer: Any, detection: Detection):
        self.tokenizer = tokenizer
        self.detection = detection
        self.template: str | None = None
        self.unit = "tokens" if tokenizer is not None else "words"
        if tokenizer is None:
            self.label = WHITESPACE_LABEL
            return
        name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
        if detection.format in _CHAT_FORMATS:
            if getattr(tokenizer, "chat_template", None):
                self.label = f"tokenizer {name} with chat template"
            else:
                from tuner_tui.modeling.loading import FALLBACK_CHAT_TEMPLATE

                self.template = FALLBACK_CHAT_TEMPLATE
                self.label = f"tokenizer {name} with fallback chat template (it has none)"
        else:
            self.label = f"tokenizer {name} ({detection.format} rows as plain text, special tokens added)"

    def count(self, table: pa.Table, texts: pa.Array) -> np.ndarray:
        if self.tokenizer is None:
            return word_counts(texts).to_numpy(zero_copy_only=False)
        tok = self.tokenizer
        if self.detection.format in _CHAT_FORMATS:
            rendered = [
                tok.apply_chat_template(
                    to_messages(row, self.detection), tokenize=False, chat_template=self.template
                )
                for row in table.to_pylist()
            ]
            ids = tok(rendered, add_special_tokens=False)["input_ids"]
        else:
            eos = tok.eos_token or ""
            extra = [eos] * len(texts) if self.detection.format in ("text", "prompt_completion") else None
            plain = texts.to_pylist()
            ids = tok([t + e for t, e in zip(plain, extra, strict=True)] if extra else plain)["input_ids"]
        return np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))


class _PairCounter:
    """Lengths of prompt, chosen and rejected as a preference trainer sees them: conversational pairs
    through the chat template (the prompt with the generation prompt; an answer is what it adds to
    the prompt), text pairs as plain text with the end-of-sequence token after each answer."""

    def __init__(self, tokenizer: Any, conversational: bool):
        self.tokenizer = tokenizer
        self.conversational = conversational
        self.template: str | None = None
        self.unit = "tokens" if tokenizer is not None else "words"
        if tokenizer is None:
            self.label = WHITESPACE_LABEL
            return
        name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
        if not conversational:
            self.label = f"tokenizer {name} (text pairs, end-of-sequence after each answer)"
        elif getattr(tokenizer, "chat_template", None):
            self.label = f"tokenizer {name} with chat template"
        else:
            from tuner_tui.modeling.loading import FALLBACK_CHAT_TEMPLATE

            self.template = FALLBACK_CHAT_TEMPLATE
            self.label = f"tokenizer {name} with fallback chat template (it has none)"

    def count(self, pairs: list[Pair]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per pair: prompt, chosen and rejected lengths."""
        if self.tokenizer is None:
            prompt, chosen, rejected = (
                word_counts(pa.array([side_text(getattr(p, side)) for p in pairs], pa.string()))
                .to_numpy(zero_copy_only=False)
                .astype(np.int64)
                for side in ("prompt", "chosen", "rejected")
            )
            return prompt, chosen, rejected
        if self.conversational:
            prompts = [self._render(p.prompt, [], generation=True) for p in pairs]
            chosen_texts = [self._render(p.prompt, p.chosen) for p in pairs]
            rejected_texts = [self._render(p.prompt, p.rejected) for p in pairs]
            prompt = self._lengths(prompts, special=False)
            return (
                prompt,
                np.maximum(self._lengths(chosen_texts, special=False) - prompt, 0),
                np.maximum(self._lengths(rejected_texts, special=False) - prompt, 0),
            )
        eos = self.tokenizer.eos_token or ""
        return (
            self._lengths([side_text(p.prompt) for p in pairs], special=True),
            self._lengths([side_text(p.chosen) + eos for p in pairs], special=False),
            self._lengths([side_text(p.rejected) + eos for p in pairs], special=False),
        )

    def _render(self, prompt: Any, answer: Any, generation: bool = False) -> str:
        messages = [
            *(prompt if isinstance(prompt, list) else []),
            *(answer if isinstance(answer, list) else []),
        ]
        if not messages:
            return ""
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=generation, chat_template=self.template
        )

    def _lengths(self, texts: list[str], *, special: bool) -> np.ndarray:
        ids = self.tokenizer(texts, add_special_tokens=special)["input_ids"]
        return np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))


def _pair_findings(
    dataset: Dataset,
    detection: Detection,
    *,
    tokenizer: Any,
    max_length: int | None,
    hasher: MinHasher | None,
    threshold: float,
    warnings: list[str],
) -> dict[str, Any]:
    """Pair counts, and over the pairs that can train: lengths, truncation at max_length, length
    bias; near-duplicate prompts over all pairs. Warnings go to `warnings`."""
    counter = _PairCounter(tokenizer, is_conversational(dataset, detection, ("prompt", "chosen", "rejected")))
    problems: list[frozenset[str]] = []
    parts: tuple[list[np.ndarray], ...] = ([], [], [])
    sigs = []
    for batch in iter_pairs(dataset, detection):
        problems.extend(pair.problems for pair in batch)
        if hasher is not None:
            sigs.append(hasher.signatures(pa.array([side_text(p.prompt) for p in batch], pa.string())))
        usable = [pair for pair in batch if not pair.problems]
        if usable:
            for part, values in zip(parts, counter.count(usable), strict=True):
                part.append(values)
    check = tally_pairs(problems)
    prompt, chosen, rejected = (np.concatenate(p) if p else np.zeros(0, np.int64) for p in parts)
    pairs = len(prompt)
    truncated = None
    if max_length and pairs:
        truncated = int(((prompt + chosen > max_length) | (prompt + rejected > max_length)).sum())
    near = None
    if sigs:
        clusters = near_duplicates(np.concatenate(sigs), threshold)
        near = {
            "clusters": len(clusters.cluster_sizes()),
            "rows": int((~clusters.keep_mask()).sum()),
            "threshold": threshold,
        }
    found = {
        "pairs": check.rows,
        **{k: v for k, v in asdict(check).items() if k != "rows"},  # usable, and why the others are not
        "conversational": counter.conversational,
        "unit": counter.unit,
        "counted_with": counter.label,
        "prompt_lengths": length_summary(prompt),
        "chosen_lengths": length_summary(chosen),
        "rejected_lengths": length_summary(rejected),
        "max_length": max_length,
        "truncated": truncated,
        "truncated_share": round(truncated / pairs, 4) if truncated is not None else None,
        "chosen_longer_share": round(float((chosen > rejected).mean()), 4) if pairs else None,
        "near_duplicate_prompts": near,
    }
    warnings.extend(_pair_warnings(found, check.summary()))
    return found


def _pair_warnings(found: dict[str, Any], unusable: str) -> list[str]:
    warnings = []
    if found["identical"]:
        warnings.append(
            f"{found['identical']:,} pair(s) have chosen identical to rejected: they teach no preference "
            "and are left out of training."
        )
    if any(found[k] for k in ("missing_chosen", "missing_rejected", "empty_prompt", "different_prompts")):
        warnings.append(f"{unusable}; training leaves them out.")
    share = found["truncated_share"]
    if share is not None and share > TRUNCATED_PAIRS_WARN:
        unit = "tokens" if found["unit"] == "tokens" else "counted in whitespace words"
        warnings.append(
            f"{share:.0%} of pairs are longer than max_length = {found['max_length']} ({unit}) with their "
            "chosen or rejected answer: a truncated chosen answer silently corrupts DPO. Raise "
            "max_length, or drop the longest pairs (length_filter)."
        )
    longer = found["chosen_longer_share"]
    if longer is not None and longer > LENGTH_BIAS_WARN:
        warnings.append(
            f"chosen is longer than rejected in {longer:.0%} of pairs (length bias): the model can learn "
            "that longer is better rather than what makes an answer better. Balance the pairs, or use a "
            "length-normalised method (SimPO)."
        )
    return warnings


def _kto_findings(dataset: Dataset, detection: Detection, warnings: list[str]) -> dict[str, Any]:
    """Desirable and undesirable counts, and the rows KTO cannot train on."""
    check = kto_problems(dataset, detection, refuse=False)
    if check.summary():
        warnings.append(f"{check.summary()}; training leaves them out.")
    if check.rows and not (check.desirable and check.undesirable):
        missing = "undesirable (label false)" if check.desirable else "desirable (label true)"
        warnings.append(
            f"The KTO data has no {missing} completions: KTO learns from both kinds. Add some, or check "
            f"the label column '{detection.fields.get('label')}'."
        )
    return asdict(check)


def _detect(dataset: Dataset, recipe_data: DataConfig | None) -> Detection:
    sample = dataset.select(range(min(len(dataset), 20))).to_list()
    fmt = recipe_data.format if recipe_data else "auto"
    fields = recipe_data.fields if recipe_data else {}
    return resolve_format(fmt, fields, dataset.column_names, sample)


def label_codes(labels: pa.Array | pa.ChunkedArray, vocab: dict[str, int]) -> np.ndarray:
    """An integer code per label, stable across batches (new values are added to `vocab`); -1 for
    a missing or blank label, which conflicts with nothing."""
    text = pc.utf8_trim_whitespace(as_text(labels))
    encoded = pc.dictionary_encode(text)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    codes = np.array([vocab.setdefault(v, len(vocab)) if v else -1 for v in encoded.dictionary.to_pylist()])
    if not len(codes):
        return np.full(len(text), -1, dtype=np.int64)
    return codes[encoded.indices.to_numpy(zero_copy_only=False)].astype(np.int64)


def find_label_conflicts(dataset: Dataset, text_cols: list[str], label_col: str) -> LabelConflicts:
    """The texts of `dataset` (exactly the same in `text_cols`) labelled in more than one way."""
    keys, codes, vocab = [], [], dict[str, int]()
    for table in arrow_batches(dataset):
        keys.append(exact_keys(identity_text(table, text_cols)))
        codes.append(label_codes(table.column(label_col), vocab))
    if not keys:
        return label_conflicts(np.zeros(0, np.uint64), np.zeros(0, np.int64))
    return label_conflicts(np.concatenate(keys), np.concatenate(codes))


def _conflict_finding(
    dataset: Dataset, conflicts: LabelConflicts, text_cols: list[str], label_col: str
) -> dict[str, Any]:
    """Counts and a few masked examples (text, rows, labels) of the label conflicts."""
    examples = []
    in_conflict = np.flatnonzero(conflicts.group >= 0)
    for number in range(min(conflicts.texts, CONFLICT_EXAMPLES)):
        rows = in_conflict[conflicts.group[in_conflict] == number].tolist()
        labels = dataset.select(rows)[label_col]
        examples.append(
            {
                "text": _row_snippets(dataset, rows[:1], text_cols)[0],
                "rows": rows[:10],
                "labels": dict(Counter(str(v) for v in labels).most_common()),
            }
        )
    return {"texts": conflicts.texts, "rows": conflicts.rows, "ties": conflicts.ties, "examples": examples}


class _ConstantColumns:
    """Columns whose value is the same in every row, found batch by batch (most drop out at once)."""

    def __init__(self, columns: list[str]):
        self.values: dict[str, str | None] = dict.fromkeys(columns)

    def update(self, table: pa.Table) -> None:
        for name in list(self.values):
            distinct = pc.unique(as_text(table.column(name), skip=frozenset()))
            value = distinct[0].as_py() if len(distinct) == 1 else None
            if value is None or self.values[name] not in (None, value):
                del self.values[name]
            else:
                self.values[name] = value

    def found(self, rows: int) -> dict[str, str]:
        return {k: v for k, v in self.values.items() if v is not None} if rows >= 2 else {}


def _constant_warning(column: str, value: str, detection: Detection) -> str:
    role = next((r for r, c in detection.fields.items() if c == column), None)
    shown = snippet(value, 60)
    text = f"Column '{column}' holds the same value in every row ('{shown}')"
    if detection.format == "alpaca" and role == "instruction" and detection.fields.get("input"):
        return (
            f"{text}, so every prompt starts with the same words. If it is a standing instruction, map it "
            f"as the system prompt and the varying column as the instruction: fields = {{system = "
            f"'{column}', instruction = '{detection.fields['input']}'}}."
        )
    if role is not None:
        return (
            f"{text}, and it is mapped as '{role}': every row gives the model the same {role}. "
            "Check [data] fields."
        )
    return f"{text}: it says nothing about any row (it is not mapped, so training does not see it)."


def _empty_elements(array: pa.Array) -> int:
    """Turns (list elements) whose text is blank, for chat columns."""
    if not (pa.types.is_list(array.type) or pa.types.is_large_list(array.type)):
        return 0
    values = pc.list_flatten(array)
    return int(pc.sum(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(as_text(values))), 0)).as_py() or 0)


def inspect_dataset(
    path_or_dataset: str | Path | Dataset,
    *,
    recipe_data: DataConfig | None = None,
    tokenizer: Any = None,
    max_length: int | None = None,
    base_dir: Path | None = None,
    skip_bad_rows: bool = False,
    near_duplicate_threshold: float = 0.8,
    find_near_duplicates: bool = True,
    load: LoadInfo | None = None,
) -> DataReport:
    """Load (if given a path), detect the format and profile the data.

    Args:
        path_or_dataset: A data path (as in [data] path) or a loaded `datasets.Dataset`.
        recipe_data: The recipe's [data] table: its format and fields override detection.
        tokenizer: The chosen model's tokenizer; token lengths then use its chat template.
            Without one, lengths are whitespace words, and labelled as such.
        max_length: Report the share of rows longer than this many tokens.
        base_dir: Folder relative paths are resolved against.
        skip_bad_rows: Skip (and count) malformed JSON Lines instead of failing.
        near_duplicate_threshold: Jaccard similarity of word 3-shingles for near duplicates.
        find_near_duplicates: Set False to skip MinHash clustering (the slowest part).
        load: How a given dataset was read (`load_data`'s LoadInfo); default: in memory.

    Returns:
        The DataReport.
    """
    if isinstance(path_or_dataset, (str, Path)):
        dataset, info = load_data(str(path_or_dataset), base_dir, skip_bad_rows=skip_bad_rows)
    else:
        dataset, info = path_or_dataset, load or LoadInfo(source="(dataset)", builder="in memory")
    detection = _detect(dataset, recipe_data)
    columns = dataset.column_names
    content_cols = text_columns(detection, columns)
    if not content_cols and detection.format == "kto":  # text.TEXT_ROLES does not list kto
        content_cols = [
            detection.fields[r] for r in ("messages", "prompt", "completion") if r in detection.fields
        ]
        content_cols = [c for c in content_cols if c in columns]
    mapped_cols = [c for c in detection.fields.values() if c in columns]
    label_col = detection.fields.get("label") if detection.format == "classification" else None
    counter = _TokenCounter(tokenizer, detection)
    hasher = MinHasher() if find_near_duplicates else None
    constant = _ConstantColumns([c for c in columns if c != SPLIT_COLUMN])
    text_keys, label_parts, label_vocab = [], [], dict[str, int]()

    char_parts, token_parts, key_parts, sig_parts = [], [], [], []
    field_counts = {
        role: {"missing": 0, "empty": 0} for role, col in detection.fields.items() if col in columns
    }
    empty_turns = 0
    labels: Counter[str] = Counter()
    pii_counts: Counter[str] = Counter()
    pii_examples: dict[str, list[str]] = {}
    pii_rows = 0
    for table in arrow_batches(dataset):
        constant.update(table)
        texts = row_text(table, content_cols)
        char_parts.append(pc.utf8_length(texts).to_numpy(zero_copy_only=False))
        tokens = counter.count(table, texts)
        token_parts.append(tokens)
        key_parts.append(exact_keys(identity_text(table, mapped_cols)))
        if hasher is not None:
            sig_parts.append(hasher.signatures(texts))
        for role, counts in field_counts.items():
            column = table.column(detection.fields[role])
            counts["missing"] += column.null_count
            if content_cols == [detection.fields[role]] and counter.tokenizer is None:
                # the row text of a lone content column: blank exactly when it has no words
                blank_rows = int((tokens == 0).sum())
            else:
                blank = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(as_text(column))), 0)
                blank_rows = int(pc.sum(blank).as_py() or 0)
            counts["empty"] += blank_rows - column.null_count
            if role in ("messages", "conversations"):
                empty_turns += sum(_empty_elements(chunk) for chunk in column.chunks)
        if label_col:
            for item in pc.value_counts(table.column(label_col)).to_pylist():
                if item["values"] is not None and str(item["values"]).strip():  # unlabeled: counted apart
                    labels[str(item["values"])] += item["counts"]
            text_keys.append(exact_keys(identity_text(table, content_cols)))
            label_parts.append(label_codes(table.column(label_col), label_vocab))
        for _, text, hits in pii.scan(texts):
            pii_rows += 1
            for hit in hits:
                pii_counts[hit.kind] += 1
                shown = pii_examples.setdefault(hit.kind, [])
                if len(shown) < EXAMPLES_PER_KIND:
                    start = max(0, hit.start - 30)
                    shown.append(snippet(text[start : hit.end + 30]))

    rows = len(dataset)
    chars = np.concatenate(char_parts) if char_parts else np.zeros(0, np.int64)
    tokens = np.concatenate(token_parts) if token_parts else np.zeros(0, np.int64)
    keys = np.concatenate(key_parts) if key_parts else np.zeros(0, np.uint64)
    first = first_occurrences(keys)
    warnings: list[str] = []

    near = None
    near_examples: list[list[str]] = []
    if hasher is not None and rows:
        near = near_duplicates(np.concatenate(sig_parts), near_duplicate_threshold, candidates=first)
        sizes = near.cluster_sizes()
        for root in sorted(sizes, key=lambda r: -sizes[r])[:3]:
            members = np.flatnonzero(near.roots == root)[:3]
            near_examples.append(_row_snippets(dataset, members.tolist(), content_cols))

    duplicate_rows = np.flatnonzero(~first)[:3].tolist()
    order = np.argsort(chars, kind="stable")
    truncation = None
    if max_length:
        over = int((tokens > max_length).sum())
        truncation = {
            "max_length": max_length,
            "rows_over": over,
            "share": round(over / rows, 4) if rows else 0.0,
        }
        if rows and over / rows > 0.05:
            warnings.append(
                f"{over / rows:.0%} of rows are longer than max_length = {max_length} "
                f"({'tokens' if counter.tokenizer is not None else 'counted in whitespace words'}) "
                "and will be cut."
            )
    imbalance = None
    if label_col:
        unlabeled = sum(field_counts.get("label", {}).values())
        if unlabeled:
            warnings.append(
                f"{unlabeled:,} of {rows:,} rows have no value in the label column '{label_col}': "
                f"training drops them (recorded as step '{UNLABELED_OP}'). Fill in their labels, or "
                "add the cleaning step drop_empty to drop them on purpose."
            )
        if len(labels) < 2:
            warnings.append(
                f"The label column '{label_col}' has {len(labels)} distinct value(s): "
                "a classifier needs 2 or more."
            )
        elif labels:
            imbalance = round(max(labels.values()) / min(labels.values()), 2)
    conflict_finding = None
    if label_col and rows:
        conflicts = label_conflicts(np.concatenate(text_keys), np.concatenate(label_parts))
        conflict_finding = _conflict_finding(dataset, conflicts, content_cols, label_col)
        if conflicts.texts:
            shown = conflict_finding["examples"][0]
            ties = (
                f"; {'all' if conflicts.ties == conflicts.texts else conflicts.ties} of them have no most "
                "common label (two labels or more tie), so 'majority' drops their rows too"
                if conflicts.ties
                else ""
            )
            warnings.append(
                f"{conflicts.texts:,} text(s) appear with different labels ({conflicts.rows:,} rows), e.g. "
                f"'{snippet(shown['text'], 60)}' labelled {', '.join(shown['labels'])}: a classifier "
                "learns one label per text. Add the cleaning step resolve_label_conflicts (keep = "
                f"'majority' keeps each text's most common label, keep = 'none' drops every such row){ties}."
            )
    pairs = kto = None
    if detection.format == "preference":
        pairs = _pair_findings(
            dataset,
            detection,
            tokenizer=tokenizer,
            max_length=max_length,
            hasher=hasher,
            threshold=near_duplicate_threshold,
            warnings=warnings,
        )
    elif detection.format == "kto":
        kto = _kto_findings(dataset, detection, warnings)
    constant_columns = constant.found(rows)
    for column, value in constant_columns.items():
        if value.strip() and column != label_col:
            warnings.append(_constant_warning(column, value, detection))
    if detection.format not in TRAINABLE_FORMATS:
        warnings.append(f"'{detection.format}' data is recognised but cannot be trained on yet.")
    if info.skipped_rows:
        warnings.append(f"{info.skipped_rows} malformed row(s) were skipped while loading.")
    token_summary = length_summary(tokens)
    token_summary["counted_with"] = counter.label
    token_summary["unit"] = counter.unit
    return DataReport(
        source=info.source,
        load=info.to_json(),
        detection=detection,
        trainable=detection.format in TRAINABLE_FORMATS,
        rows=rows,
        columns={f.name: str(f.type) for f in dataset.features.arrow_schema},
        field_counts=field_counts,
        empty_turns=empty_turns if detection.format in ("messages", "sharegpt") else None,
        char_lengths=length_summary(chars),
        token_lengths=token_summary,
        truncation=truncation,
        labels=dict(labels.most_common()) if label_col else None,
        label_imbalance_ratio=imbalance,
        exact_duplicates=int((~first).sum()),
        exact_duplicate_examples=_row_snippets(dataset, duplicate_rows, content_cols),
        near_duplicate_clusters=len(near.cluster_sizes()) if near is not None else None,
        near_duplicate_rows=int((~near.keep_mask() & first).sum()) if near is not None else None,
        near_duplicate_threshold=near_duplicate_threshold,
        near_duplicate_examples=near_examples,
        pii=dict(pii_counts.most_common()),
        pii_rows=pii_rows,
        pii_examples=pii_examples,
        shortest=_extremes(dataset, order[:EXTREMES].tolist(), chars, tokens, content_cols),
        longest=_extremes(dataset, order[::-1][:EXTREMES].tolist(), chars, tokens, content_cols),
        warnings=warnings,
        label_conflicts=conflict_finding,
        constant_columns={k: snippet(v) for k, v in constant_columns.items()},
        pairs=pairs,
        kto=kto,
    )


def _row_snippets(dataset: Dataset, rows: list[int], columns: list[str]) -> list[str]:
    if not rows:
        return []
    table = dataset.select(rows).with_format("arrow")[:]
    return [snippet(t) for t in row_text(table, columns).to_pylist()]


def _extremes(
    dataset: Dataset, rows: list[int], chars: np.ndarray, tokens: np.ndarray, columns: list[str]
) -> list[dict[str, Any]]:
    texts = _row_snippets(dataset, rows, columns)
    return [
        {"row": r, "chars": int(chars[r]), "tokens": int(tokens[r]), "text": t}
        for r, t in zip(rows, texts, strict=True)
    ]
