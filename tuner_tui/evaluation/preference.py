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
from dataclasses import dataclass
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


@dataclass(frozen=True)
class AnswerScores:
    """One model's log-probabilities of the held-out answers: per answer, the summed log p of its
    tokens given the prompt and how many tokens that is (0: cut off by max_length)."""

    sums: dict[str, list[float]]
    counts: dict[str, list[int]]

    def mean(self, key: str) -> list[float | None]:
        return [s / c if c > 0 else None for s, c in zip(self.sums[key], self.counts[key], strict=True)]


def score_answers(scorer: Any, tokenizer: Any, rows: list[dict[str, Any]]) -> AnswerScores:
    """Score every answer of TRL rows (chosen and rejected, or the KTO completion) once."""
    keys = ("chosen", "rejected") if rows and "chosen" in rows[0] else ("completion",)
    sums: dict[str, list[float]] = {}
    counts: dict[str, list[int]] = {}
    for key in keys:
        pairs = [_pair_text(r.get("prompt") or "", r[key], tokenizer) for r in rows]
        s, c = scorer.continuation_logprob([p for p, _ in pairs], [a for _, a in pairs])
        sums[key], counts[key] = [float(x) for x in s], [int(x) for x in c]
    return AnswerScores(sums, counts)


def preference_metrics(
    scores: AnswerScores, rows: list[dict[str, Any]]
) -> tuple[dict[str, float], list[float | None]]:
    """{'preference_accuracy', 'preference_margin', 'pairs_scored', 'pairs_cut'} of one model,
    and each pair's margin (None where it could not be scored).

    A pair whose answer has no token left within max_length (a long prompt) cannot be scored: it
    is counted in `pairs_cut`, not as a loss. A tie counts half."""
    if not rows:
        return {}, []
    margins: list[float | None]
    if "chosen" in scores.sums:
        margins = [
            c - r if c is not None and r is not None else None
            for c, r in zip(scores.mean("chosen"), scores.mean("rejected"), strict=True)
        ]
        cut = sum(m is None for m in margins)
    else:
        means = scores.mean("completion")
        good = [s for s, r in zip(means, rows, strict=True) if r["label"] and s is not None]
        bad = [s for s, r in zip(means, rows, strict=True) if not r["label"] and s is not None]
        ranked = [g - b for g in good for b in bad][:MAX_KTO_PAIRS]
        margins = [m for m in ranked]
        cut = sum(s is None for s in means)
    scored = [m for m in margins if m is not None]
    if not scored:
        return {"pairs_scored": 0, "pairs_cut": cut}, margins
    return {
        "preference_accuracy": _share_right(scored),
        "preference_margin": sum(scored) / len(scored),
        "pairs_scored": len(scored),
        "pairs_cut": cut,
    }, margins


def implicit_reward_accuracy(tuned: AnswerScores, reference: AnswerScores) -> float | None:
    """DPO's own yardstick: the share of pairs whose chosen answer gains more log-likelihood from
    tuning (tuned minus reference, summed over its tokens) than the rejected one. None for KTO
    rows or when no pair could be scored."""
    if "chosen" not in tuned.sums:
        return None
    rewards = []
    for i in range(len(tuned.sums["chosen"])):
        if min(tuned.counts["chosen"][i], tuned.counts["rejected"][i]) == 0:
            continue
        chosen = tuned.sums["chosen"][i] - reference.sums["chosen"][i]
        rejected = tuned.sums["rejected"][i] - reference.sums["rejected"][i]
        rewards.append(chosen - rejected)
    return _share_right(rewards) if rewards else None


def _share_right(margins: list[float]) -> float:
    return sum(1.0 if m > 0 else 0.5 if m == 0 else 0.0 for m in margins) / len(margins)
