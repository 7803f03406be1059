"""Fake scorers with known behaviour, computed from the text (the scorer boundary of scoring.py)."""

from __future__ import annotations

import re

import numpy as np


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


class LeaningClassifier:
    """Two labels; P(positive) is `base_p`, or `she_p` when the text contains the word 'she'."""

    labels = ["negative", "positive"]

    def __init__(self, base_p: float = 0.8, she_p: float = 0.3):
        self.base_p, self.she_p = base_p, she_p

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        p = np.array([self.she_p if "she" in _words(t) else self.base_p for t in texts])
        return np.stack([1 - p, p], axis=1)


class LeaningCausal:
    """Log-likelihood: -1 per token (tokens = words), minus `penalty` per token for texts with 'she'.
    Sentiment words: ' kind'-style positives get `she_lean` less log-probability after 'she' texts."""

    def __init__(self, penalty: float = 0.0, she_lean: float = 0.0):
        self.penalty, self.she_lean = penalty, she_lean

    def token_count(self, texts: list[str]) -> np.ndarray:
        return np.array([max(len(_words(t)) - 1, 1) for t in texts])

    def sequence_logprob(self, texts: list[str]) -> np.ndarray:
        out = []
        for text in texts:
            words = _words(text)
            n = max(len(words) - 1, 1)
            score = -1.0 * n
            if "she" in words:
                score -= self.penalty * n
                if words[-1] in ("kind", "honest", "friendly", "capable", "reliable", "polite"):
                    score -= self.she_lean
            out.append(score)
        return np.array(out, dtype=float)


class StereoMasked:
    """PLL that prefers sentences containing the word 'stereo' (a marker the test plants)."""

    def __init__(self, marker: str = "stereo"):
        self.marker = marker

    def pseudo_log_likelihood(self, texts: list[str]) -> np.ndarray:
        return np.array([-10.0 + (1.0 if self.marker in _words(t) else 0.0) for t in texts])
