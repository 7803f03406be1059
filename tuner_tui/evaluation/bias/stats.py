"""Small statistics helpers shared by the bias report parts."""

from __future__ import annotations

import math


def wilson_interval(successes: int, n: int, z: float = 1.96) -> list[float] | None:
    """95% Wilson score interval for a proportion, or None when n == 0.

    Wilson rather than the normal approximation because it stays inside [0, 1] and is honest for
    the small counts (tens of pairs) a bias probe often has.
    """
    if n == 0:
        return None
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return [round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)]


def r(value: float, digits: int = 4) -> float:
    """A plain, rounded float (numpy scalars are not JSON-serialisable)."""
    return round(float(value), digits)


def pct(value: float | None) -> str:
    """0.1234 -> '12.3%'."""
    if value is None:
        return "n/a"
    # Small non-zero shares keep two decimals so 36 rows in 100,000 do not read as 0.0%.
    return f"{100 * value:.2f}%" if 0 < abs(value) < 0.01 else f"{100 * value:.1f}%"
