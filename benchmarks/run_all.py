"""Every benchmark, one table: measure, value, baseline, ratio, target, ok or missed.

Each benchmark runs in its own subprocess (as `python benchmarks/NAME.py ... --results FILE`),
one after another, its own output going to a log file; the table is printed at the end with the
machine it ran on and whether that machine looked busy (load average before and after: the
ratios are measured against baselines in the same run, but a busy machine still adds noise).

    python benchmarks/run_all.py [--quick] [--only train_overhead,ui] [--log-dir DIR]

`--quick` runs smaller versions (fewer steps, rows and repeats: about 5 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from benchmarks.results import Result, read_results  # noqa: E402

# name -> (full arguments, --quick arguments)
BENCHMARKS: dict[str, tuple[list[str], list[str]]] = {
    "train_overhead": (["--steps", "40", "--repeats", "3"], ["--steps", "10", "--repeats", "1"]),
    "preference": (["--steps", "30", "--repeats", "2"], ["--steps", "8", "--repeats", "1"]),
    "packing": ([], ["--steps", "4"]),
    "data_scale": (["--rows", "1000000"], ["--rows", "100000"]),
    "ui": (["--runs", "5"], ["--runs", "3", "--seconds", "5"]),
    "memory_estimate": ([], ["--only", "lora r16 b4"]),
    "viewer_memory": (["--events", "1000000"], ["--events", "100000"]),
}


def _torch_threads() -> str:
    probe = "import torch; print(torch.get_num_threads())"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False)
    return out.stdout.strip() or "?"


def _busy(load: float, cores: int) -> str:
    return "busy" if load > 0.5 * cores else "quiet"


def _cell(value: float | None, unit: str = "") -> str:
    if value is None:
        return ""
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return f"{text} {unit}".strip()


def print_table(rows: list[tuple[str, Result | str]]) -> None:
    header = ("benchmark", "measure", "value", "baseline", "ratio", "target", "result")
    lines = [header]
    for name, row in rows:
        if isinstance(row, str):  # the benchmark failed: say how
            lines.append((name, row, "", "", "", "", "FAILED"))
            continue
        result = "" if row.ok is None else "ok" if row.ok else "missed"
        lines.append(
            (
                name,
                row.measure,
                _cell(row.value, row.unit),
                _cell(row.baseline, row.unit),
                _cell(row.ratio),
                row.target,
                result,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for i, line in enumerate(lines):
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * width for width in widths))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="Smaller versions (about 5 minutes).")
    parser.add_argument("--only", default="", help="Comma-separated benchmark names to run.")
    parser.add_argument("--log-dir", type=Path, help="Keep each benchmark's output here.")
    args = parser.parse_args()
    chosen = [name for name in BENCHMARKS if not args.only or name in args.only.split(",")]
    unknown = set(filter(None, args.only.split(","))) - set(BENCHMARKS)
    if unknown:
        raise SystemExit(
            f"unknown benchmark(s) {', '.join(sorted(unknown))}; choose from {', '.join(BENCHMARKS)}"
        )
    logs = args.log_dir or Path(tempfile.mkdtemp(prefix="tuner-bench-"))
    logs.mkdir(parents=True, exist_ok=True)
    cores = os.cpu_count() or 1
    before = os.getloadavg()[0]
    rows: list[tuple[str, Result | str]] = []
    started = time.monotonic()
    for name in chosen:
        full, quick = BENCHMARKS[name]
        results = logs / f"{name}.json"
        log = logs / f"{name}.log"
        print(f"running {name} ... (output: {log})", flush=True)
        t0 = time.monotonic()
        with log.open("w", encoding="utf-8") as out:
            code = subprocess.run(
                [
                    sys.executable,
                    str(HERE / f"{name}.py"),
                    *(quick if args.quick else full),
                    "--results",
                    str(results),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=logs,
                check=False,
            ).returncode
        print(f"  {name}: {time.monotonic() - t0:.0f} s, exit code {code}", flush=True)
        if code != 0 or not results.exists():
            tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:] or [
                "no output"
            ]
            rows.append((name, f"exit code {code}: {tail[0][:80]}"))
            continue
        rows += [(name, row) for row in read_results(results)]
    after = os.getloadavg()[0]
    print()
    print(
        f"machine: {cores} cores, torch threads {_torch_threads()}, python {sys.version.split()[0]}; "
        f"load average {before:.2f} before ({_busy(before, cores)}), "
        f"{after:.2f} after ({_busy(after, cores)}); "
        f"{'quick' if args.quick else 'full'} run, {time.monotonic() - started:.0f} s"
    )
    print_table(rows)
    missed = [row for _, row in rows if isinstance(row, str) or row.ok is False]
    print(f"\n{len(missed)} missed or failed of {len(rows)} rows; logs in {logs}")


if __name__ == "__main__":
    main()
