"""Per-example outputs of an evaluation: `report/predictions.jsonl`, one JSON object per example.

The contract (read by `tuner compare` and by `tuner serve --check`):

    {"row_id": "<stable id>", "reference": ...,
     "tuned": {"prediction": ..., "correct": bool | null, "score": float | null, ...},
     "base": {...same keys...}}          # only when [evaluation] compare_base

in evaluation order. `prediction` is the label for classifiers and the generated completion for
causal LMs (null when nothing was generated); `score` is the model's probability of the
reference label (classifiers), the mean log-likelihood per reference token (causal LMs) or the
preference margin (preference pairs). Causal LMs add `nll` and `tokens` (the reference's summed
negative log-likelihood and its token count, so perplexity can be recomputed on any subset of
rows) and `metrics` (the per-example values of rouge1, rouge2, rouge_l and exact_match).

A row's id is a hash of its contents alone (every column but `split`), so the same data cleaned
and split by the same recipe gives the same ids, whatever the file order; identical rows are told
apart by their occurrence (`<hash>-2`). report.json's `predictions` entry records the file, the
number of rows, the data's content fingerprint and a digest of the ordered ids, so two reports
prove they were scored on the same rows without reading both files.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner_tui.errors import TunerError

if TYPE_CHECKING:
    from datasets import Dataset

PREDICTIONS_FILE = "predictions.jsonl"
MODEL_KEYS = ("prediction", "correct", "score")
"""The keys every model entry has (values may be null)."""


def row_ids(dataset: Dataset) -> list[str]:
    """A stable id per row of `dataset`, from its contents (see the module docstring)."""
    from tuner_tui.data.split import row_keys

    keys = row_keys(dataset, 0, purpose="row id")
    seen: dict[str, int] = {}
    ids = []
    for key in keys.tolist():
        base = f"{int(key):016x}"
        seen[base] = seen.get(base, 0) + 1
        ids.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    return ids


def ids_digest(ids: Iterable[str]) -> str:
    """sha256 of the ordered row ids: equal digests, equal rows in equal order."""
    return "sha256:" + hashlib.sha256("\n".join(ids).encode()).hexdigest()


def write_predictions(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write predictions.jsonl atomically (non-finite floats become null)."""
    from tuner_tui.evaluation.report import _json_safe
    from tuner_tui.runs.state import atomic_write_text

    text = "".join(json.dumps(_json_safe(row), ensure_ascii=False) + "\n" for row in rows)
    atomic_write_text(Path(path), text)


def read_predictions(path: Path) -> list[dict[str, Any]]:
    """The rows of a predictions.jsonl, in order.

    Raises:
        TunerError: the file is missing or a line is not a JSON object with a row_id.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise TunerError(
            f"{path} does not exist: this run was evaluated before per-example outputs were written. "
            f"Evaluate it again (tuner eval {path.parent.parent}), then compare."
        ) from None
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise TunerError(
                f"{path}:{number} is not valid JSON ({exc}): evaluate the run again to rewrite it."
            ) from None
        if not isinstance(row, dict) or not isinstance(row.get("row_id"), str):
            raise TunerError(f"{path}:{number} has no row_id: evaluate the run again to rewrite it.")
        rows.append(row)
    return rows
