"""One shape for every benchmark's findings, so `run_all.py` can print them as one table.

Each benchmark keeps printing its own detailed lines; given `--results FILE` it also writes its
headline measures there as JSON: a list of `Result`s.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Result:
    """One measure against its baseline (measured in the same run) and its target."""

    measure: str
    value: float
    unit: str
    baseline: float | None = None
    """The same measure for the baseline (a plain script, a minimal app), when there is one."""
    ratio: float | None = None
    """value / baseline, or the figure the target is stated in."""
    target: str = ""
    """In words, e.g. '>= 0.98' (on the ratio when there is one, else on the value)."""
    ok: bool | None = None
    """None: informational, no target."""


def add_results_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", type=Path, help="Also write the headline measures as JSON here.")


def write_results(path: Path | None, results: list[Result]) -> None:
    if path is not None:
        path.write_text(json.dumps([asdict(r) for r in results], indent=2), encoding="utf-8")


def read_results(path: Path) -> list[Result]:
    return [Result(**row) for row in json.loads(path.read_text(encoding="utf-8"))]
