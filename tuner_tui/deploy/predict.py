"""`tuner predict`: batch inference over a file with a completed run's tuned model.

Input: JSON Lines, JSON, CSV/TSV or Parquet (read as the data step reads files). The column fed to
the model is `--field`, else the recipe's field mapping (a classifier's `text` role; a causal LM's
`prompt` or `instruction` role, or a conversation column), else the role's usual column name.
Output: JSON Lines, one object per input row, in input order:

    classifier  {"row": 0, "label": "billing", "probabilities": {"billing": 0.93, ...}}
    causal LM   {"row": 0, "completion": "..."}

(plus the row's `id` when the input has an `id` column). Resumable: the rows already in `--out`
(by `row`) are skipped, and a last line cut off by a kill is dropped first, so running the same
command again finishes the file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuner_tui.errors import TunerError

CHAT_COLUMNS = ("messages", "conversations")


@dataclass(frozen=True)
class PredictSummary:
    out: Path
    rows: int
    skipped: int
    written: int
    column: str


def default_out(input_path: Path) -> Path:
    """`<input>.predictions.jsonl` beside the input."""
    path = Path(input_path)
    return path.with_name(f"{path.stem}.predictions.jsonl")


def input_column(task: str, fields: dict[str, str], columns: list[str], field: str | None) -> str:
    """The input column to feed the model.

    Raises:
        TunerError: `--field` names no column, or no candidate column exists.
    """
    if field:
        if field not in columns:
            raise TunerError(
                f"--field {field}: the input has no such column. Its columns: {', '.join(columns)}. "
                "Pass the column that holds the text to predict on."
            )
        return field
    if task == "sequence_classification":
        candidates = [fields.get("text"), "text"]
    else:
        candidates = [fields.get("prompt"), fields.get("instruction"), fields.get("messages"),
                      fields.get("conversations"), "prompt", "instruction", *CHAT_COLUMNS, "question",
                      "text", "input"]  # fmt: skip
    for name in candidates:
        if name and name in columns:
            return name
    wanted = next(n for n in candidates if n)
    raise TunerError(
        f"The input has no '{wanted}' column (columns: {', '.join(columns)}): name the column that "
        "holds the text to predict on with --field COLUMN."
    )


def row_messages(row: dict[str, Any], column: str, fields: dict[str, str]) -> list[dict[str, str]]:
    """A row's prompt as chat messages: a conversation column up to its last user turn, or the
    text (an alpaca instruction with its `input`) as one user turn."""
    from tuner_tui.data.formats import turn_message

    value = row.get(column)
    if isinstance(value, list):
        turns = [turn_message(t) for t in value if isinstance(t, dict)]
        while turns and turns[-1]["role"] == "assistant":
            turns.pop()
        return turns or [{"role": "user", "content": ""}]
    text = "" if value is None else str(value)
    extra = (
        row.get(fields.get("input", "input")) if column == fields.get("instruction", "instruction") else None
    )
    if extra:
        text = f"{text}\n\n{extra}"
    return [{"role": "user", "content": text}]


def done_rows(out: Path) -> set[int]:
    """Rows already written to `out`; a last line without its newline (a kill mid-write) is cut
    off the file first."""
    if not out.exists():
        return set()
    data = out.read_bytes()
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        with open(out, "r+b") as f:
            f.truncate(keep)
        data = data[:keep]
    rows = set()
    for number, line in enumerate(data.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)["row"]
        except (ValueError, KeyError, TypeError):
            raise TunerError(
                f"{out}:{number} is not a line tuner predict wrote (no 'row'): pass another --out, or "
                "remove the file to start over."
            ) from None
        rows.add(int(row))
    return rows


def predict_file(
    run_dir: Path | str,
    input_path: Path,
    out: Path | None = None,
    batch_size: int = 16,
    field: str | None = None,
    progress: Callable[[int, int], object] = lambda done, total: None,
    device: str = "cpu",
) -> PredictSummary:
    """Predict every row of `input_path` not yet in `out`; see the module docstring.

    Args:
        progress: Called with (rows done, rows in all) after each batch (and once at the start).

    Raises:
        TunerError: the run is not completed, the input cannot be read or has no such column,
            `out` holds lines of something else, or `batch_size` < 1.
    """
    from transformers import set_seed

    from tuner_tui.data.load import load_any
    from tuner_tui.deploy.artifacts import completed_run, load_run_tokenizer, render_prompt
    from tuner_tui.modeling.export import load_tuned_model, read_id2label

    if batch_size < 1:
        raise TunerError(f"--batch-size {batch_size} must be at least 1.")
    run, recipe = completed_run(run_dir, "predict with")
    input_path = Path(input_path)
    out = Path(out) if out is not None else default_out(input_path)
    dataset = load_any(str(input_path))
    column = input_column(recipe.model.task, recipe.data.fields, list(dataset.column_names), field)
    done = done_rows(out)
    todo = [i for i in range(len(dataset)) if i not in done]
    total = len(dataset)
    progress(total - len(todo), total)
    if not todo:
        return PredictSummary(out, total, len(done), 0, column)
    tokenizer = load_run_tokenizer(run, recipe)
    set_seed(recipe.project.seed)
    model = load_tuned_model(recipe, run.adapter, device=device)
    classify = recipe.model.task == "sequence_classification"
    if classify:
        from tuner_tui.evaluation.scoring import ClassifierScorer

        id2label = read_id2label(run.adapter) or {}
        scorer: Any = ClassifierScorer(model, tokenizer, id2label, max_length=recipe.training.max_length,
                                       batch_size=batch_size)  # fmt: skip
    else:
        from tuner_tui.deploy.generate import recipe_settings
        from tuner_tui.evaluation.scoring import CausalScorer

        scorer = CausalScorer(model, tokenizer, max_length=recipe.training.max_length, batch_size=batch_size)
        settings = recipe_settings(recipe)
    has_id = "id" in dataset.column_names
    out.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with open(out, "a", encoding="utf-8") as sink:
        for start in range(0, len(todo), batch_size):
            indices = todo[start : start + batch_size]
            rows = dataset.select(indices).to_list()
            if classify:
                texts = ["" if r.get(column) is None else str(r[column]) for r in rows]
                probs = scorer.predict_proba(texts)
                results: list[dict[str, Any]] = [
                    {
                        "label": id2label[int(p.argmax())],
                        "probabilities": {id2label[k]: round(float(v), 6) for k, v in enumerate(p)},
                    }
                    for p in probs
                ]
            else:
                prompts = [render_prompt(tokenizer, recipe, row_messages(r, column, recipe.data.fields))
                           for r in rows]  # fmt: skip
                completions = scorer.generate(
                    prompts,
                    max_new_tokens=settings.max_new_tokens,
                    do_sample=settings.do_sample,
                    temperature=settings.temperature,
                    top_p=settings.top_p,
                )
                results = [{"completion": c.strip()} for c in completions]
            lines = []
            for index, row, result in zip(indices, rows, results, strict=True):
                record: dict[str, Any] = {"row": index}
                if has_id:
                    record["id"] = row["id"]
                lines.append(json.dumps({**record, **result}, ensure_ascii=False) + "\n")
            sink.write("".join(lines))
            sink.flush()
            os.fsync(sink.fileno())
            written += len(indices)
            progress(total - len(todo) + written, total)
    return PredictSummary(out, total, len(done), written, column)
