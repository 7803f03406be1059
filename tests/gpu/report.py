"""scripts/gpu-check's Python side: what the machine has, leftover workers, the summary table.

    python -m tests.gpu.report preflight CUDA_FILE   # versions, unmet requirements; CUDA_FILE gets yes/no
    python -m tests.gpu.report reap FOLDER           # kill workers of runs under FOLDER still alive
    python -m tests.gpu.report summary OUT_DIR ELAPSED_S BUDGET_S

Standard library only at module scope: it runs before anything is known to be installed.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

# What the GPU check imports, and what the project declares (pyproject): shown with versions.
PACKAGES = (
    "torch",
    "transformers",
    "peft",
    "trl",
    "accelerate",
    "bitsandbytes",
    "datasets",
    "evaluate",
    "tokenizers",
    "huggingface-hub",
    "safetensors",
    "pyarrow",
    "textual",
    "textual-plotext",
    "rich",
    "tomlkit",
    "typer",
    "nvidia-ml-py",
    "psutil",
    "datasketch",
    "rouge-score",
    "nltk",
    "sacrebleu",
    "scikit-learn",
    "pytest",
    "pytest-asyncio",
)
# Whose own requirements are checked against what is installed (a version clash shows here, not
# as an ImportError deep in a test).
CHECKED = ("tuner-tui", "transformers", "peft", "trl", "datasets", "evaluate", "textual", "bitsandbytes")


def _version(name: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def unmet_requirements() -> list[str]:
    """'pkg needs req (found x)' for each requirement of CHECKED that the installed versions miss."""
    import importlib.metadata

    try:
        from packaging.requirements import Requirement
    except ImportError:
        return ["(packaging is not installed: requirements not checked)"]
    found = []
    for name in CHECKED:
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for text in requires:
            requirement = Requirement(text)
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                continue
            have = _version(requirement.name)
            if have is None:
                found.append(f"{name} needs {requirement} (not installed)")
            elif requirement.specifier and not requirement.specifier.contains(have, prereleases=True):
                found.append(f"{name} needs {requirement} (found {have})")
    return found


def preflight(cuda_file: Path) -> int:
    """Print the machine's Python, GPU and library versions and what does not fit; write 'yes' to
    `cuda_file` when torch sees a CUDA GPU."""
    print(f"python {sys.version.split()[0]} ({sys.executable})")
    width = max(len(n) for n in PACKAGES)
    for name in PACKAGES:
        print(f"  {name:{width}}  {_version(name) or 'MISSING'}")
    cuda = False
    try:
        import torch

        cuda = torch.cuda.is_available()
        if cuda:
            props = torch.cuda.get_device_properties(0)
            print(
                f"GPU 0: {props.name}, {props.total_memory / 2**30:.0f} GiB, compute capability "
                f"{props.major}.{props.minor}; torch {torch.__version__}, CUDA {torch.version.cuda}"
            )
        else:
            print(f"no CUDA GPU: torch {torch.__version__} (CUDA build: {torch.version.cuda}) sees none")
    except Exception as exc:  # torch missing or broken: the tests cannot run at all
        print(f"torch does not import: {type(exc).__name__}: {exc}")
    problems = unmet_requirements()
    try:
        training_arguments_build(cuda)
    except Exception as exc:  # e.g. a keyword this transformers does not know: every run fails so
        problems.append(
            f"tuner's TrainingArguments do not build with this transformers: {type(exc).__name__}: {exc}"
        )
    for module in ("tuner_tui.training.run", "tuner_tui.app", "tuner_tui.screens.training"):
        try:
            __import__(module)
        except Exception as exc:
            problems.append(f"{module} does not import: {type(exc).__name__}: {exc}")
    for problem in problems:
        print(f"WARNING: {problem}")
    cuda_file.write_text("yes" if cuda else "no", encoding="utf-8")
    return 0


def training_arguments_build(cuda: bool) -> None:
    """Build TrainingArguments from tuner's own `training_values` for a default recipe, as every
    run does first (a keyword the installed transformers lacks raises here, in a second)."""
    import tempfile

    from transformers import TrainingArguments

    from tuner_tui.recipe import Recipe
    from tuner_tui.runs.layout import RunDir
    from tuner_tui.training.run import training_values

    with tempfile.TemporaryDirectory() as folder:
        TrainingArguments(**training_values(Recipe(), RunDir(Path(folder)), "cuda" if cuda else "cpu", True))


def reap(folder: Path) -> int:
    """SIGKILL the live workers of runs under `folder` (a test stopped by the time limit leaves its
    detached workers running; they would share the GPU with the benchmark)."""
    for state_file in folder.rglob("state.json"):
        try:
            pid = int(json.loads(state_file.read_text(encoding="utf-8")).get("pid") or 0)
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError, TypeError):
            continue
        if pid and "tuner_tui" in command:
            print(f"gpu-check: killing worker {pid} left running ({state_file.parent})")
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    return 0


def _test_rows(junit: Path) -> list[tuple[str, str, float, str]]:
    rows = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
        outcome, note = "passed", ""
        for tag in ("failure", "error", "skipped"):
            found = case.find(tag)
            if found is not None:
                outcome = {"failure": "FAILED", "error": "ERROR", "skipped": "skipped"}[tag]
                note = (found.get("message") or found.text or "").strip().splitlines()[0:1]
                note = note[0] if note else ""
                break
        rows.append((name, outcome, float(case.get("time") or 0), note))
    return rows


def _measurement_lines(found: dict[str, Any]) -> list[str]:
    lines = []
    for method in ("lora", "qlora"):
        m = found.get(f"estimate_{method}")
        if m:
            lines.append(
                f"estimate {method}: {m['estimate_tensors_gib']:.2f} GiB of tensors estimated vs "
                f"{m['measured_peak_allocated_gib']:.2f} GiB max_memory_allocated ({m['error']:+.1%}; "
                f"total with overhead {m['estimate_total_gib']:.2f} GiB, reserved "
                f"{m['measured_peak_reserved_gib']:.2f} GiB)"
            )
    if m := found.get("resume"):
        lines.append(
            f"resume after SIGKILL at step {m['killed_at_step']}: bit-identical {m['bit_identical']}, "
            f"max relative L2 {m['max_relative_l2']:.2e}, max |loss difference| "
            f"{m['max_abs_loss_difference_after_resume']:.2e}"
        )
    if m := found.get("qlora_reload"):
        lines.append(
            f"qlora reload: max |logit difference| {m['max_abs_logit_difference']:.2e}; on the bf16 base "
            f"(tuner's evaluation) {m['bf16_base_max_abs_logit_difference']:.2e}, top-1 agreement "
            f"{m['bf16_base_top1_agreement']:.1%}"
        )
    if m := found.get("lora_bf16"):
        lines.append(f"bf16 lora: loss {m['loss_first5']:.2f} -> {m['loss_last5']:.2f} (mean of 5 steps)")
    if m := found.get("dpo"):
        lines.append(
            f"dpo: preference accuracy {m['base_preference_accuracy']:.2f} -> "
            f"{m['tuned_preference_accuracy']:.2f}, reward margin {m['reward_margin_first']:.2f} -> "
            f"{m['reward_margin_last']:.2f}"
        )
    if m := found.get("telemetry"):
        lines.append(
            f"telemetry: {m.get('name')} util {m.get('util')}%, {m.get('memory_used', 0) / 2**30:.1f} / "
            f"{m.get('memory_total', 0) / 2**30:.1f} GiB, {m.get('temperature')} °C, {m.get('power_w')} W"
        )
    return lines


def _benchmark_line(result: dict[str, Any]) -> str:
    if "skipped" in result:
        return f"skipped: {result['skipped']}"
    mfu = f"MFU unknown ({result.get('peak_source')})"
    if result.get("mfu"):
        mfu = f"MFU {result['mfu']:.1%} of {result['bf16_peak_tflops']:.0f} TFLOP/s bf16 dense"
    memory = "no CUDA memory figures"
    if result.get("peak_allocated_gib") is not None:
        memory = (
            f"peak {result['peak_allocated_gib']:.1f} GiB allocated, "
            f"{result['peak_reserved_gib']:.1f} GiB reserved"
        )
    settings = result["settings"]
    return (
        f"{result['device']}: {result['tokens_per_s']:,.0f} tokens/s, {result['achieved_tflops']:.1f} "
        f"TFLOP/s, {mfu}; {memory} ({settings['batch_size']} x up to {settings['max_length']} "
        f"tokens packed, attention {settings['attention']})"
    )


def summary(out: Path, elapsed: int, budget: int) -> int:
    """The one table: each test's outcome, the tests' measurements, the benchmark's numbers."""
    lines = [f"GPU check summary ({elapsed} s of a {budget} s budget; files in {out})", ""]
    junit = out / "junit.xml"
    if junit.exists():
        rows = _test_rows(junit)
        width = max([len(r[0]) for r in rows] + [4])
        lines.append(f"{'test':{width}}  {'result':7}  {'time':>6}  note")
        for name, outcome, seconds, note in rows:
            lines.append(f"{name:{width}}  {outcome:7}  {seconds:5.1f}s  {note[:100]}")
        counts: dict[str, int] = {}
        for row in rows:
            counts[row[1]] = counts.get(row[1], 0) + 1
        lines.append("tests: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    else:
        lines.append("tests: no junit.xml (pytest did not finish: see pytest.log)")
    measured = out / "gpu-tests.json"
    if measured.exists():
        lines += ["", "measurements:"] + [
            f"  {x}" for x in _measurement_lines(json.loads(measured.read_text()))
        ]
    bench = out / "gpu_throughput.json"
    lines.append("")
    if bench.exists():
        lines.append(
            "benchmark (benchmarks/gpu_throughput.py): " + _benchmark_line(json.loads(bench.read_text()))
        )
    else:
        lines.append("benchmark: no result (did not run or did not finish: see benchmark.log)")
    text = "\n".join(lines) + "\n"
    (out / "summary.txt").write_text(text, encoding="utf-8")
    print(text, end="")
    return 0


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "preflight":
        return preflight(Path(argv[1]))
    if len(argv) == 2 and argv[0] == "reap":
        return reap(Path(argv[1]))
    if len(argv) == 4 and argv[0] == "summary":
        return summary(Path(argv[1]), int(argv[2]), int(argv[3]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
