"""Held-out evaluation of preference tuning: does the model prefer the chosen answer?

`preference_accuracy` is the share of held-out pairs whose chosen answer gets the higher
length-normalised log-likelihood (mean log-probability per answer token, given the prompt) than
the rejected one; `preference_margin` is the mean of that difference. Normalising by length keeps
a model from "preferring" whichever answer is shorter. For KTO data (single answers marked good
or bad) the same score ranks every (good, bad) answer pair of the split: the accuracy is the share
ranked the right way round (an AUC). Base and tuned models are scored alike, so the report shows
what tuning changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

MAX_KTO_PAIRS = 4096
"""Most (good, bad) pairs ranked for KTO data: the rest add no information a sample lacks."""


def texts_of(rows: Sequence[dict[str, Any]], tokenizer: Any) -> list[tuple[str, str]]:
    """(prompt, answer) texts of TRL rows: conversational ones through the chat template (the
    prompt with the generation prompt added, the answer as the template renders it after it)."""
    out = []
    for row in rows:
        prompt = row.get("prompt") or ""
        for key in ("chosen", "rejected", "completion"):
            if key in row:
                out.append(_pair_text(prompt, row[key], tokenizer))
    return out


def _pair_text(prompt: Any, answer: Any, tokenizer: Any) -> tuple[str, str]:
    if isinstance(answer, list):  # conversational: render the whole exchange, split at the prompt
        messages = list(prompt or []) + list(answer)
        head = tokenizer.apply_chat_template(list(prompt or []), tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(messages, tokenize=False)
        return head, full[len(head) :] if full.startswith(head) else answer[-1]["content"]
    return str(prompt), str(answer)


def prompt_text(row: dict[str, Any]) -> str:
    """What the user wrote in a TRL row (for the bias audit): the prompt, or its last user turn."""
    prompt = row.get("prompt") or ""
    if isinstance(prompt, list):
        return next((m["content"] for m in reversed(prompt) if m.get("role") == "user"), "")
    return str(prompt)


def preference_metrics(
    scorer: Any, tokenizer: Any, rows: list[dict[str, Any]]
) -> tuple[dict[str, float], list[float]]:
    """{'preference_accuracy', 'preference_margin'} of one model on TRL rows (pairs, or KTO
    rows), and each pair's margin (for the samples)."""
    if not rows:
        return {}, []
    if "chosen" in rows[0]:
        chosen = _scores(scorer, [_pair_text(r.get("prompt") or "", r["chosen"], tokenizer) for r in rows])
        rejected = _scores(
            scorer, [_pair_text(r.get("prompt") or "", r["rejected"], tokenizer) for r in rows]
        )
        margins = [c - r for c, r in zip(chosen, rejected, strict=True)]
    else:
        scores = _scores(
            scorer, [_pair_text(r.get("prompt") or "", r["completion"], tokenizer) for r in rows]
        )
        good = [s for s, r in zip(scores, rows, strict=True) if r["label"]]
        bad = [s for s, r in zip(scores, rows, strict=True) if not r["label"]]
        margins = [g - b for g in good for b in bad][:MAX_KTO_PAIRS]
    if not margins:
        return {}, []
    accuracy = sum(m > 0 for m in margins) / len(margins)
    return {"preference_accuracy": accuracy, "preference_margin": sum(margins) / len(margins)}, margins


def _scores(scorer: Any, pairs: list[tuple[str, str]]) -> list[float]:
    """Mean log-probability per answer token of each (prompt, answer)."""
    sums, counts = scorer.continuation_logprob([p for p, _ in pairs], [a for _, a in pairs])
    return [float(s) / max(int(c), 1) for s, c in zip(sums, counts, strict=True)]
