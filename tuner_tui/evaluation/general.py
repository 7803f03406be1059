"""Forgetting: what tuning cost outside the domain, as perplexity on general-domain texts.

`[evaluation] general_data` names a held-out set of general texts: a JSONL file whose rows carry a
`text` field (else the first string field), or a plain-text file of one text per line. Base and
tuned model score the same texts; the report gives both perplexities and the change as a fraction
of the base's (`general_perplexity_change`: 0.10 = the tuned model is 10% more perplexed by
general text), which objectives can bound (`<= 0.10`).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from pathlib import Path
from typing import Any

from tuner_tui.errors import TunerError

GENERAL_FILE = "general.jsonl"
"""Per-text figures of the forgetting check, beside predictions.jsonl: {row_id, tokens, base_nll,
tuned_nll}, so `tuner compare` can bootstrap the change over texts."""


def load_general_texts(path: Path) -> list[str]:
    """The texts of a general-data file (JSONL with a text field, or one text per line).

    Raises:
        TunerError: missing file, bad JSON, no text field, or no texts at all.
    """
    path = Path(path)
    where = "[evaluation] general_data"
    if not path.is_file():
        raise TunerError(
            f"{where} = '{path}' does not exist (or is not a file): point it at a JSONL file with a "
            "'text' field or a .txt file of one text per line, or set general_data = '' to skip the "
            "forgetting check."
        )
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    texts: list[str] = []
    if path.suffix.lower() in (".jsonl", ".json"):
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise TunerError(
                    f"{where}: {path}:{number} is not valid JSON ({exc.args[0]}): each line must be one "
                    "object with a 'text' field, or use a .txt file of one text per line."
                ) from None
            text = _text_of(row)
            if text is None:
                raise TunerError(
                    f"{where}: {path}:{number} has no text: each line must be a JSON object with a "
                    "'text' field (a string)."
                )
            texts.append(text)
    else:
        texts = [line.strip() for line in lines if line.strip()]
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise TunerError(f"{where}: {path} holds no texts. Add general-domain texts, one per line.")
    return texts


def _text_of(row: Any) -> str | None:
    if not isinstance(row, dict):
        return None
    if isinstance(row.get("text"), str):
        return row["text"]
    return next((v for v in row.values() if isinstance(v, str) and v.strip()), None)


def file_fingerprint(path: Path) -> str:
    return "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()


def sample_texts(texts: list[str], limit: int, seed: int) -> list[tuple[int, str]]:
    """At most `limit` (index, text) pairs, a seeded sample in file order (never the first rows)."""
    if len(texts) <= limit:
        return list(enumerate(texts))
    picked = sorted(random.Random(f"tuner general {seed}").sample(range(len(texts)), limit))
    return [(i, texts[i]) for i in picked]


def text_id(text: str, index: int) -> str:
    return hashlib.blake2b(f"{index}\x1f{text}".encode(), digest_size=8).hexdigest()


def forgetting(
    path: Path, scorers: dict[str, Any], limit: int, seed: int
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Base and tuned perplexity on the general texts and the change; and the per-text rows.

    `scorers` maps "base" and "tuned" to CausalScorers."""
    texts = sample_texts(load_general_texts(path), limit, seed)
    just_texts = [t for _, t in texts]
    nll: dict[str, list[float]] = {}
    tokens = scorers["tuned"].token_count(just_texts).tolist()
    for which in ("base", "tuned"):
        nll[which] = (-scorers[which].sequence_logprob(just_texts)).tolist()
    total = sum(tokens)
    figures: dict[str, Any] = {
        "general_data": str(path),
        "fingerprint": file_fingerprint(path),
        "texts": len(texts),
        "tokens": int(total),
    }
    for which in ("base", "tuned"):
        loss = sum(nll[which]) / total if total else float("nan")
        figures[f"{which}_perplexity"] = math.exp(min(loss, 700.0)) if total else float("nan")
    base, tuned = figures["base_perplexity"], figures["tuned_perplexity"]
    change = (tuned - base) / base if base and math.isfinite(base) else float("nan")
    figures["general_perplexity_change"] = change
    figures["change_percent"] = 100.0 * change
    rows = [
        {"row_id": text_id(t, i), "tokens": int(n), "base_nll": b, "tuned_nll": u}
        for (i, t), n, b, u in zip(texts, tokens, nll["base"], nll["tuned"], strict=True)
    ]
    return figures, rows
