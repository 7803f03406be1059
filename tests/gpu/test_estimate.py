"""`tuner estimate` against what CUDA's allocator saw a real training take, LoRA and QLoRA.

The quantity compared: the estimate's tensor bytes (its total less `overhead`, which is the CUDA
context and allocator fragmentation that `max_memory_allocated` cannot see) against
`torch.cuda.max_memory_allocated` during training, less what was allocated before it started.
It is the GPU counterpart of benchmarks/memory_estimate.py's `tensors` column on the CPU. The
batches are full length (rows longer than max_length), as the estimate assumes.
"""

from __future__ import annotations

import json

import pytest

from tests.gpu.helpers import GPU_MODULE, bitsandbytes_missing, cuda_only

pytestmark = [*GPU_MODULE, cuda_only]
TOLERANCE = 0.15
GIB = 2**30


def tuner_estimate(recipe) -> dict:
    """`tuner estimate RECIPE --json`, the command itself (in this process: CUDA is here)."""
    from typer.testing import CliRunner

    from tuner_tui.cli import app

    result = CliRunner().invoke(app, ["estimate", str(recipe), "--json"])
    assert result.exit_code == 0, result.output
    text = result.stdout  # may hold stderr too (older click): the JSON starts at its first key
    found, _ = json.JSONDecoder().raw_decode(text[text.index('{\n  "total_bytes"') :])
    return found


@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_estimate_is_within_15_percent_of_the_cuda_peak(method: str, trained, measurements) -> None:
    if method == "qlora" and (why := bitsandbytes_missing()):
        pytest.skip(why)
    done = trained(method)
    estimate = tuner_estimate(done.recipe)
    assert estimate["device_label"].startswith("GPU 0"), estimate["device_label"]
    tensors = estimate["total_bytes"] - estimate["breakdown"]["overhead"]
    error = tensors / done.peak_bytes - 1
    measurements[f"estimate_{method}"] = {
        "estimate_tensors_gib": tensors / GIB,
        "estimate_total_gib": estimate["total_bytes"] / GIB,
        "measured_peak_allocated_gib": done.peak_bytes / GIB,
        "measured_peak_reserved_gib": done.peak_reserved_bytes / GIB,
        "error": error,
        "peak_phase": estimate["peak_phase"],
        "breakdown_gib": {k: v / GIB for k, v in estimate["breakdown"].items()},
    }
    assert abs(error) <= TOLERANCE, (
        f"{method}: estimate {tensors / GIB:.2f} GiB of tensors vs {done.peak_bytes / GIB:.2f} GiB "
        f"measured ({error:+.1%}); breakdown {estimate['breakdown']}"
    )
