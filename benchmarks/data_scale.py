"""Data step at scale: load, inspect, dedup and PII redaction on generated chat JSONL.

    python benchmarks/data_scale.py [--rows 1000000]

Each stage runs in its own subprocess with its own datasets cache (so nothing is a cache hit and
peak RSS is the stage's own); the bare `datasets.load_dataset("json")` baseline is measured in the
same run, on the same file.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.results import Result, add_results_option, write_results  # noqa: E402

LOAD_INSPECT_TARGET = 1.5  # issue 20

WORDS = (
    "account billing invoice refund order shipping delivery password reset login error update install "
    "device battery screen network router signal payment card subscription plan upgrade cancel support "
    "ticket agent customer question answer issue problem solution please thanks help today tomorrow "
    "week month price discount coupon store online mobile app version settings profile email message"
).split()
PII = ["jane.doe{}@example.com", "(212) 555-{:04d}", "4111 1111 1111 1111", "10.0.{}.7"]


def _sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


def generate(path: Path, rows: int, seed: int = 0) -> None:
    """Chat rows of ~300 characters: 10% exact duplicates, 5% near duplicates, ~3% with PII."""
    rng = random.Random(seed)
    recent: list[dict] = []
    with open(path, "w", encoding="utf-8") as f:
        for i in range(rows):
            roll = rng.random()
            if roll < 0.10 and recent:
                row = rng.choice(recent)
            elif roll < 0.15 and recent:
                base = rng.choice(recent)
                words = base["messages"][1]["content"].split()
                words[rng.randrange(len(words))] = rng.choice(WORDS)
                row = {"messages": [base["messages"][0], {"role": "assistant", "content": " ".join(words)}]}
            else:
                user = _sentence(rng, rng.randint(8, 16))
                if rng.random() < 0.03:
                    user += " Reach me at " + rng.choice(PII).format(i % 10000) + "."
                answer = " ".join(_sentence(rng, rng.randint(6, 12)) for _ in range(rng.randint(2, 4)))
                row = {
                    "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
                }
                recent = (recent + [row])[-1000:]
            f.write(json.dumps(row) + "\n")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_stage(stage: str, path: str) -> dict:
    """One stage, in this (child) process; returns seconds and peak RSS."""
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()
    import datasets

    from tuner_tui.data.clean import apply_cleaning
    from tuner_tui.data.formats import Detection
    from tuner_tui.data.load import load_data
    from tuner_tui.data.report import inspect_dataset

    chat = Detection("messages", {"messages": "messages"})
    start = time.perf_counter()
    if stage == "bare_load":
        datasets.load_dataset("json", data_files=path, split="train")
        return {"seconds": time.perf_counter() - start, "peak_rss_mb": _peak_rss_mb()}
    dataset, _ = load_data(path)
    load_seconds = time.perf_counter() - start
    start = time.perf_counter()
    result: dict = {"load_seconds": load_seconds}
    if stage == "load":
        pass
    elif stage == "inspect":
        inspect_dataset(dataset, find_near_duplicates=False)
    elif stage == "inspect_with_near_dup":
        report = inspect_dataset(dataset)
        result["near_duplicate_clusters"] = report.near_duplicate_clusters
        result["exact_duplicates"] = report.exact_duplicates
        result["pii"] = report.pii
    else:
        op = {"exact_dedup": "dedup_exact", "near_dedup": "dedup_near", "pii_redaction": "redact_pii"}[stage]
        cleaned, reports = apply_cleaning(dataset, [{"op": op}], chat)
        result["rows_after"] = len(cleaned)
        result["details"] = reports[0].details
    result["seconds"] = time.perf_counter() - start if stage != "load" else load_seconds
    result["peak_rss_mb"] = _peak_rss_mb()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    add_results_option(parser)
    args = parser.parse_args()
    if args.stage:
        print(json.dumps(run_stage(args.stage, args.file)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "chat.jsonl"
        start = time.perf_counter()
        generate(path, args.rows)
        size_mb = path.stat().st_size / 2**20
        per_row = size_mb * 2**20 / args.rows
        print(f"generated {args.rows:,} rows, {size_mb:,.0f} MB ({per_row:.0f} bytes/row) "
              f"in {time.perf_counter() - start:.1f}s; cpus: {os.cpu_count()}")  # fmt: skip
        results = {}
        stages = (
            "bare_load",
            "load",
            "inspect",
            "exact_dedup",
            "pii_redaction",
            "near_dedup",
            "inspect_with_near_dup",
        )
        for stage in stages:
            env = {**os.environ, "HF_DATASETS_CACHE": str(Path(tmp) / f"cache-{stage}")}
            out = subprocess.run(
                [sys.executable, __file__, "--stage", stage, "--file", str(path)],
                env=env, capture_output=True, text=True, check=True,
            )  # fmt: skip
            results[stage] = json.loads(out.stdout.strip().splitlines()[-1])
            r = results[stage]
            extra = {k: v for k, v in r.items() if k not in ("seconds", "peak_rss_mb", "load_seconds")}
            print(f"{stage:>22}: {r['seconds']:7.2f}s  {args.rows / r['seconds']:>11,.0f} rows/s  "
                  f"peak RSS {r['peak_rss_mb']:6,.0f} MB  {extra or ''}")  # fmt: skip
        overall = sum(results[s]["seconds"] for s in ("load", "inspect", "exact_dedup", "pii_redaction"))
        bare = results["bare_load"]["seconds"]
        load_inspect = results["load"]["seconds"] + results["inspect"]["seconds"]
        peak = max(r["peak_rss_mb"] for r in results.values())
        print(f"load+inspect+exact dedup+PII: {args.rows / overall:,.0f} rows/s (target >= 100,000)")
        print(f"near dedup: {args.rows / results['near_dedup']['seconds']:,.0f} rows/s (target >= 10,000)")
        print(f"peak RSS over all stages: {peak:,.0f} MB (target <= 2048)")
        print(f"load / bare load_dataset: {results['load']['seconds'] / bare:.2f}x")
        print(
            f"(load+inspect) / bare load_dataset: {load_inspect / bare:.2f}x "
            f"(target <= {LOAD_INSPECT_TARGET}x)"
        )
        rows = f"{args.rows:,} rows"
        write_results(
            args.results,
            [
                Result(
                    f"(load + inspect) / bare load_dataset, {rows}",
                    load_inspect,
                    "s",
                    bare,
                    load_inspect / bare,
                    f"<= {LOAD_INSPECT_TARGET}",
                    load_inspect / bare <= LOAD_INSPECT_TARGET,
                ),
                Result(f"data stages peak RSS, {rows}", peak, "MB", None, None, "<= 2048 MB", peak <= 2048),
                Result(
                    f"load+inspect+dedup+PII rows/s, {rows}",
                    args.rows / overall,
                    "rows/s",
                    None,
                    None,
                    ">= 100,000",
                    args.rows / overall >= 100_000,
                ),
            ],
        )


if __name__ == "__main__":
    main()
