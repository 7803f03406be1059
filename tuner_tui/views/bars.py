"""Bars of unicode blocks and the bin labels of a length histogram: drawn the same way by the
CLI (`tuner inspect`, views/data_report.py) and the wizard (widgets/histogram.py, the Data step)."""

from __future__ import annotations

from typing import Any

_BLOCKS = " ▏▎▍▌▋▊▉█"


def bar(value: float, largest: float, width: int) -> str:
    """A bar of unicode blocks, eighth-cell precise; `width` cells stand for `largest`."""
    if largest <= 0 or value <= 0:
        return ""
    eighths = max(1, round(value / largest * width * 8))  # a non-empty bin never looks empty
    full, rest = divmod(eighths, 8)
    return "█" * full + (_BLOCKS[rest] if rest else "")


def bin_labels(histogram: dict[str, Any]) -> list[str]:
    """'lo–hi' for each bin of a `length_summary` histogram; the last bin, which also holds
    everything above the 99th percentile, reads '≥lo'."""
    edges, counts = histogram["edges"], histogram["counts"]
    return [
        f"≥{edges[i]:,.0f}" if i == len(counts) - 1 else f"{edges[i]:,.0f}–{edges[i + 1]:,.0f}"
        for i in range(len(counts))
    ]
