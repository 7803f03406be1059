"""The paired statistics against scipy and statsmodels on fixed inputs, and interval coverage."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats

from tuner_tui.iterate import stats


def outcomes(seed: int = 1, n: int = 150) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random(n) < 0.6, rng.random(n) < 0.75


def test_mcnemar_exact_matches_scipy_and_statsmodels() -> None:
    mcnemar = pytest.importorskip("statsmodels.stats.contingency_tables").mcnemar
    a, b = outcomes()
    p, only_a, only_b = stats.mcnemar_exact(a, b)
    table = [[np.sum(a & b), np.sum(a & ~b)], [np.sum(~a & b), np.sum(~a & ~b)]]
    assert p == pytest.approx(mcnemar(table, exact=True).pvalue, rel=1e-9)
    assert p == pytest.approx(
        scipy_stats.binomtest(min(only_a, only_b), only_a + only_b, 0.5).pvalue, rel=1e-9
    )
    assert stats.mcnemar_exact(a, a)[0] == 1.0
    assert stats.binomial_two_sided(0, 0) == 1.0


def test_bootstrap_interval_matches_scipy() -> None:
    a, b = outcomes()
    metric = stats.mean_metric("accuracy", a.astype(float), b.astype(float))
    low, high = stats.bootstrap_interval(metric, resamples=4000)
    reference = scipy_stats.bootstrap(
        (a.astype(float), b.astype(float)),
        lambda x, y, axis: np.mean(y, axis=axis) - np.mean(x, axis=axis),
        paired=True, n_resamples=20000, method="percentile", random_state=0,
    ).confidence_interval  # fmt: skip
    assert low == pytest.approx(reference.low, abs=0.015)
    assert high == pytest.approx(reference.high, abs=0.015)
    assert stats.bootstrap_interval(metric) == stats.bootstrap_interval(metric)  # seeded


def test_permutation_p_matches_scipy() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, 60)
    y = x + rng.normal(0.35, 1, 60)
    ours = stats.permutation_p_value(stats.mean_metric("score", x, y), resamples=4000)
    theirs = scipy_stats.permutation_test(
        (x, y), lambda u, v, axis: np.mean(v, axis=axis) - np.mean(u, axis=axis),
        permutation_type="samples", n_resamples=20000, random_state=0,
    ).pvalue  # fmt: skip
    assert ours == pytest.approx(theirs, abs=0.01)


def test_macro_and_perplexity_statistics_match_direct_computation() -> None:
    from sklearn.metrics import precision_recall_fscore_support

    rng = np.random.default_rng(5)
    ref, pa, pb = (rng.integers(0, 3, 80) for _ in range(3))
    for i, kind in enumerate(("precision", "recall", "f1")):
        a, b = stats.macro_metric(kind, kind, pa, pb, ref, 3).values()
        want_a = precision_recall_fscore_support(ref, pa, labels=[0, 1, 2], average="macro", zero_division=0)[
            i
        ]
        want_b = precision_recall_fscore_support(ref, pb, labels=[0, 1, 2], average="macro", zero_division=0)[
            i
        ]
        assert (a, b) == pytest.approx((want_a, want_b))
    nll_a, nll_b, tokens = rng.random(40) * 30, rng.random(40) * 30, rng.integers(5, 15, 40)
    a, b = stats.perplexity_metric("perplexity", nll_a, nll_b, tokens).values()
    assert a == pytest.approx(np.exp(nll_a.sum() / tokens.sum()))
    assert b == pytest.approx(np.exp(nll_b.sum() / tokens.sum()))


def test_bootstrap_interval_covers_a_known_difference() -> None:
    """Paired 0/1 outcomes with a true accuracy difference of 0.10: the 95% interval holds it in
    about 95% of simulated test sets."""
    rng = np.random.default_rng(11)
    covered, simulations, n = 0, 200, 200
    for i in range(simulations):
        shared = rng.random(n)
        a = shared < 0.70
        b = shared < 0.80  # B right wherever A is, and on 10% more rows: difference 0.10
        metric = stats.mean_metric("accuracy", a.astype(float), b.astype(float))
        low, high = stats.bootstrap_interval(metric, resamples=1000, seed=i)
        covered += low <= 0.10 <= high
    assert 0.90 <= covered / simulations <= 0.99, covered / simulations


def test_verdict_words() -> None:
    result = stats.PairedResult(0.7, 0.8, 0.1, 0.05, 0.15, 0.01, 100, "mcnemar_exact")
    assert stats.verdict(result, higher_is_better=True) == "B better"
    assert stats.verdict(result, higher_is_better=False) == "A better"
    unsure = stats.PairedResult(0.7, 0.72, 0.02, -0.03, 0.07, 0.4, 100, "mcnemar_exact")
    assert stats.verdict(unsure, True) == stats.NO_DIFFERENCE == "no detectable difference at 5%"
