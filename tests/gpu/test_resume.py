"""Resume on the GPU: a run SIGKILLed mid-training and resumed ends where the same run, never
interrupted, ends.

Compared within a stated tolerance, not bit for bit: tuner trains on CUDA without torch's
deterministic algorithms (`training_values` sets `full_determinism` on the CPU only; CUDA runs
are seeded but use the fast kernels), and those kernels are not bitwise reproducible (SDPA's
fused backward accumulates with atomics). So each adapter tensor of the resumed run must be
within a relative L2 difference of RESUME_TOLERANCE of the uninterrupted run's, and whether it
came out bit-identical anyway is recorded (scripts/gpu-check prints it). On the CPU dry run the
check is exact, as tests/runs/test_worker.py's is.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from tests.gpu.helpers import GPU_MODULE, ON_GPU, gpu_recipe, seq, wait_while_running
from tests.runs.test_worker import adapter_tensors, wait_until_done
from tests.waiting import events_of
from tuner_tui.runs.launcher import resume_run, start_run
from tuner_tui.runs.state import read_raw_state

pytestmark = GPU_MODULE
RESUME_TOLERANCE = 5e-2
STEPS, EVERY, KILL_AFTER = 64, 8, 16


def relative_differences(a: dict, b: dict) -> dict[str, float]:
    """||a - b|| / ||b|| per tensor (b all zeros: the plain ||a - b||)."""
    assert a.keys() == b.keys()
    found = {}
    for key in b:
        x, y = a[key].double(), b[key].double()
        scale = y.norm().item() or 1.0
        found[key] = (x - y).norm().item() / scale
    return found


def test_sigkilled_run_resumes_to_the_uninterrupted_result(
    llama_1b: Path, gpu_data: dict[str, Path], tmp_path: Path, measurements: dict
) -> None:
    recipe = gpu_recipe(
        tmp_path / "recipe.toml",
        llama_1b,
        gpu_data["long"],
        max_steps=STEPS,
        save_every_steps=EVERY,
        max_length=seq(256, 64),
    )
    # Side by side on the one GPU: the reference and the run to interrupt.
    reference = start_run(recipe, tmp_path / "reference")
    run = start_run(recipe, tmp_path / "interrupted")
    wait_while_running(
        run, lambda: any(c["step"] >= KILL_AFTER for c in events_of(run, "checkpoint")), 300, "a checkpoint"
    )
    os.kill(read_raw_state(run.state)["pid"], signal.SIGKILL)
    state = wait_until_done(run, timeout=30)
    assert state["phase"] == "crashed" and state["step"] < STEPS, state
    killed_at = state["step"]
    resume_run(run.root)
    assert wait_until_done(run, timeout=300)["phase"] == "completed", run.log.read_text()[-3000:]
    assert wait_until_done(reference, timeout=300)["phase"] == "completed", reference.log.read_text()[-3000:]
    logs = [e.get("message", "") for e in events_of(run, "log")]
    assert any("Resuming from checkpoint-" in m for m in logs), logs

    resumed, expected = adapter_tensors(run.adapter), adapter_tensors(reference.adapter)
    differences = relative_differences(resumed, expected)
    identical = all(d == 0 for d in differences.values())
    worst = max(differences, key=differences.__getitem__)
    losses = {m["step"]: m["loss"] for m in events_of(reference, "metric")}
    after = [m for m in events_of(run, "metric") if m["step"] > killed_at]
    measurements["resume"] = {
        "killed_at_step": killed_at,
        "bit_identical": identical,
        "max_relative_l2": differences[worst],
        "worst_tensor": worst,
        "max_abs_loss_difference_after_resume": max(abs(m["loss"] - losses[m["step"]]) for m in after),
    }
    if ON_GPU:
        assert differences[worst] <= RESUME_TOLERANCE, (worst, differences[worst])
    else:
        assert identical, (worst, differences[worst])
