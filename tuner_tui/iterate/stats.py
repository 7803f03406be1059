"""Paired statistics for comparing two models on the same rows: pure functions over numpy arrays.

Every metric here is a function of per-row *sufficient statistics* summed over rows: accuracy is
the sum of 0/1 hits over n, perplexity exp(sum of NLL / sum of tokens), macro F1 a function of
per-class true positives, predicted and reference counts. A metric is given as per-row feature
matrices for A and B (n x m) and the function `g` from column sums to the metric value. That
makes both resampling schemes a matrix product:

- the paired bootstrap draws rows with replacement: multinomial weights W (R x n), sums W @ F;
  the 95% interval is the percentile interval of g(W @ F_B) - g(W @ F_A);
- the paired permutation test swaps A's and B's outputs on a random subset of rows, S (R x n)
  of 0/1: A's sums become F_A.sum + S @ (F_B - F_A); the two-sided p-value counts resampled
  |differences| at least the observed one, (1 + count) / (1 + R).

For accuracy on the same rows, McNemar's exact test: under no difference, each discordant row
(one right, the other wrong) is equally likely to favour either, so the count favouring B is
Binomial(discordant, 1/2); the two-sided p-value doubles the smaller tail (capped at 1).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

RESAMPLES = 2000
"""Bootstrap resamples and permutations per metric (the issue asks for at least 2,000)."""
SEED = 0
LEVEL = 0.95
ALPHA = 0.05
_CHUNK = 250  # resamples per matrix product: memory R x n stays bounded for large test sets

Statistic = Callable[[np.ndarray], np.ndarray]
"""Column sums (k x m) -> metric values (k,)."""


@dataclass(frozen=True)
class PairedMetric:
    """A metric of A and B on the same n rows, as per-row features and the statistic of their sums."""

    name: str
    features_a: np.ndarray
    features_b: np.ndarray
    statistic: Statistic

    @property
    def n(self) -> int:
        return int(self.features_a.shape[0])

    def values(self) -> tuple[float, float]:
        a = self.statistic(self.features_a.sum(axis=0, keepdims=True))[0]
        b = self.statistic(self.features_b.sum(axis=0, keepdims=True))[0]
        return float(a), float(b)


@dataclass(frozen=True)
class PairedResult:
    a: float
    b: float
    difference: float
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    n: int
    test: str


# -- metrics as sufficient statistics -------------------------------------------------------------


def _column(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).reshape(-1, 1)


def mean_metric(name: str, a: np.ndarray, b: np.ndarray) -> PairedMetric:
    """A metric that is the mean of a per-row value (accuracy: 0/1 hits; rouge: per-row scores)."""
    n = len(a)
    return PairedMetric(name, _column(a), _column(b), lambda s: s[:, 0] / n)


def perplexity_metric(
    name: str, nll_a: np.ndarray, nll_b: np.ndarray, tokens: np.ndarray, exponentiate: bool = True
) -> PairedMetric:
    """exp(sum NLL / sum tokens) (perplexity) or the ratio itself (loss): the token-weighted
    corpus figure, recomputed on each resample."""
    tok = np.asarray(tokens, dtype=np.float64)

    def statistic(s: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            ratio = s[:, 0] / s[:, 1]
            return np.exp(np.minimum(ratio, 700.0)) if exponentiate else ratio

    a = np.column_stack([np.asarray(nll_a, dtype=np.float64), tok])
    b = np.column_stack([np.asarray(nll_b, dtype=np.float64), tok])
    return PairedMetric(name, a, b, statistic)


def change_metric(
    name: str,
    base_a: np.ndarray,
    tuned_a: np.ndarray,
    base_b: np.ndarray,
    tuned_b: np.ndarray,
    tokens: np.ndarray,
) -> PairedMetric:
    """Perplexity of the tuned model relative to its base, minus 1 (general_perplexity_change)."""
    tok = np.asarray(tokens, dtype=np.float64)

    def statistic(s: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return np.exp(np.minimum((s[:, 1] - s[:, 0]) / s[:, 2], 700.0)) - 1.0

    a = np.column_stack([np.asarray(base_a, float), np.asarray(tuned_a, float), tok])
    b = np.column_stack([np.asarray(base_b, float), np.asarray(tuned_b, float), tok])
    return PairedMetric(name, a, b, statistic)


def macro_metric(
    name: str, kind: str, pred_a: np.ndarray, pred_b: np.ndarray, reference: np.ndarray, labels: int
) -> PairedMetric:
    """Macro precision, recall or F1 over `labels` classes (codes 0..labels-1), each class
    counted (sklearn's average='macro', zero_division=0)."""
    if kind not in ("precision", "recall", "f1"):
        raise ValueError(kind)
    eye = np.eye(labels)
    ref = eye[np.asarray(reference, dtype=np.int64)]

    def features(pred: np.ndarray) -> np.ndarray:
        hot = eye[np.asarray(pred, dtype=np.int64)]
        return np.hstack([hot * ref, hot, ref])  # true positives, predicted, reference per class

    def statistic(s: np.ndarray) -> np.ndarray:
        tp, predicted, actual = s[:, :labels], s[:, labels : 2 * labels], s[:, 2 * labels :]
        denominator = {"precision": predicted, "recall": actual, "f1": (predicted + actual) / 2}[kind]
        with np.errstate(divide="ignore", invalid="ignore"):
            per_class = np.where(denominator > 0, tp / denominator, 0.0)
        return per_class.mean(axis=1)

    return PairedMetric(name, features(pred_a), features(pred_b), statistic)


# -- tests ------------------------------------------------------------------------------------------


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> tuple[float, int, int]:
    """McNemar's exact test on paired 0/1 outcomes: (two-sided p, rows only A got right, rows only
    B got right)."""
    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    only_a = int(np.sum(a & ~b))
    only_b = int(np.sum(~a & b))
    return binomial_two_sided(min(only_a, only_b), only_a + only_b), only_a, only_b


def binomial_two_sided(k: int, n: int) -> float:
    """P(X <= k) doubled, capped at 1, for X ~ Binomial(n, 1/2) and k <= n/2 (exact, in log space)."""
    if n == 0:
        return 1.0
    k = min(k, n - k)
    log_half = n * math.log(0.5)
    terms = [
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + log_half for i in range(k + 1)
    ]
    top = max(terms)
    tail = math.exp(top) * sum(math.exp(t - top) for t in terms)
    return min(1.0, 2.0 * tail)


def bootstrap_interval(
    metric: PairedMetric, resamples: int = RESAMPLES, seed: int = SEED, level: float = LEVEL
) -> tuple[float, float]:
    """Percentile interval of B - A over paired bootstrap resamples of the rows (seeded)."""
    rng = np.random.default_rng(seed)
    n = metric.n
    diffs = []
    probabilities = np.full(n, 1.0 / n)
    for start in range(0, resamples, _CHUNK):
        weights = rng.multinomial(n, probabilities, size=min(_CHUNK, resamples - start)).astype(np.float64)
        diffs.append(
            metric.statistic(weights @ metric.features_b) - metric.statistic(weights @ metric.features_a)
        )
    values = np.concatenate(diffs)
    values = values[np.isfinite(values)]
    if not len(values):
        return float("nan"), float("nan")
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def permutation_p_value(metric: PairedMetric, resamples: int = RESAMPLES, seed: int = SEED) -> float:
    """Two-sided paired permutation p-value: A's and B's outputs swapped on random rows."""
    rng = np.random.default_rng(seed + 1)
    a, b = metric.values()
    observed = abs(b - a)
    total_a, total_b = metric.features_a.sum(axis=0), metric.features_b.sum(axis=0)
    delta = metric.features_b - metric.features_a
    extreme = 0
    for start in range(0, resamples, _CHUNK):
        swaps = rng.integers(0, 2, size=(min(_CHUNK, resamples - start), metric.n)).astype(np.float64)
        moved = swaps @ delta
        diff = metric.statistic(total_b - moved) - metric.statistic(total_a + moved)
        # a tolerance for floating-point ties (the identity permutation reproduces `observed`)
        extreme += int(np.sum(np.abs(diff) >= observed - 1e-12 * max(1.0, observed)))
    return (1 + extreme) / (1 + resamples)


def compare_metric(
    metric: PairedMetric,
    mcnemar: tuple[np.ndarray, np.ndarray] | None = None,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> PairedResult:
    """a, b, B - A, its bootstrap interval and the p-value: McNemar's exact test when the 0/1
    outcomes are given (accuracy), else the paired permutation test."""
    a, b = metric.values()
    if metric.n == 0:
        return PairedResult(a, b, b - a, None, None, None, 0, "none")
    low, high = bootstrap_interval(metric, resamples, seed)
    if mcnemar is not None:
        p, _, _ = mcnemar_exact(*mcnemar)
        test = "mcnemar_exact"
    else:
        p = permutation_p_value(metric, resamples, seed)
        test = "paired_permutation"
    return PairedResult(a, b, b - a, low, high, p, metric.n, test)


NO_DIFFERENCE = "no detectable difference at 5%"


def verdict(result: PairedResult, higher_is_better: bool, alpha: float = ALPHA) -> str:
    """'B better', 'A better' or 'no detectable difference at 5%'."""
    if result.p_value is None or not math.isfinite(result.difference) or result.p_value >= alpha:
        return NO_DIFFERENCE
    if result.difference == 0:
        return NO_DIFFERENCE
    b_higher = result.difference > 0
    return "B better" if b_higher == higher_is_better else "A better"
