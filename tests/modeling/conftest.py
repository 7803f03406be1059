"""The time estimate's device calibration is faked in every modeling test: a fixed 10 GFLOP/s."""

from __future__ import annotations

import pytest

from tuner_tui.modeling import estimate

REAL_MEASURE_THROUGHPUT = estimate.measure_throughput


@pytest.fixture(autouse=True)
def fake_device_calibration(monkeypatch) -> None:
    monkeypatch.setattr(estimate, "measure_throughput", lambda device, dtype: 1e10)
