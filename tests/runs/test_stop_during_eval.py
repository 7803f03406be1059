"""Stop requests while evaluating: `tuner stop` and SIGTERM end a run that is evaluating as
`stopped` within moments, keeping the trained adapter; `tuner eval` then evaluates it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.tiny import alpaca_rows, write_jsonl, write_recipe
from tests.waiting import wait_for
from tuner_tui.evaluation.scoring import CausalScorer, EvaluationStopped
from tuner_tui.runs import control
from tuner_tui.runs.events import read_events
from tuner_tui.runs.launcher import start_run
from tuner_tui.runs.layout import RunDir
from tuner_tui.runs.state import TERMINAL_PHASES, read_raw_state, read_state, worker_alive

TUNER = [sys.executable, "-m", "tuner_tui.cli"]
STOP_WITHIN_S = 30.0  # generous: it takes about a second; the evaluation alone takes minutes


def _long_evaluation_recipe(folder: Path, tiny_assets: dict[str, Path]) -> Path:
    """2 training steps, then an evaluation of 600 rows with generation for base and tuned
    models (minutes on CPU)."""
    data = write_jsonl(folder / "data.jsonl", alpaca_rows(1200))
    recipe = write_recipe(folder / "recipe.toml", data, tiny_assets["model"], max_steps=2, save_every_steps=2)
    text = recipe.read_text(encoding="utf-8")
    for old, new in (
        ("test_fraction = 0.1", "test_fraction = 0.5"),
        ("max_samples = 8", "max_samples = 600"),
        ("max_new_tokens = 16", "max_new_tokens = 256"),
    ):
        assert old in text
        text = text.replace(old, new)
    recipe.write_text(text, encoding="utf-8")
    return recipe


def _kill(run: RunDir) -> None:
    state = read_raw_state(run.state)
    if worker_alive(state):
        os.kill(state["pid"], signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["tuner stop", "SIGTERM"])
def test_stop_while_evaluating_ends_stopped_with_the_adapter_kept(
    tiny_assets, tmp_path: Path, how: str
) -> None:
    run = start_run(_long_evaluation_recipe(tmp_path, tiny_assets), tmp_path / "runs")
    try:
        wait_for(
            lambda: read_state(run.state).get("phase") in {"evaluating"} | TERMINAL_PHASES | {"crashed"},
            300,
            "the evaluating phase",
        )
        assert read_state(run.state)["phase"] == "evaluating", run.log.read_text()[-3000:]
        pid = read_raw_state(run.state)["pid"]
        if how == "SIGTERM":
            os.kill(pid, signal.SIGTERM)
        else:
            result = subprocess.run(
                [*TUNER, "stop", str(run.root)], capture_output=True, text=True, timeout=120
            )
            assert result.returncode == 0, result.stdout + result.stderr
        took = wait_for(
            lambda: not worker_alive(read_raw_state(run.state)),
            STOP_WITHIN_S,
            "the worker to end after the stop",
        )
    finally:
        _kill(run)
    state = read_state(run.state)
    assert state["phase"] == "stopped", (state, run.log.read_text()[-3000:])
    assert state["stopped_in"] == "evaluating" and state["step"] == 2
    assert (run.adapter / "adapter_model.safetensors").is_file()
    assert not (run.report / "report.json").exists()
    events = read_events(run.events)[0]
    assert [e["phase"] for e in events if e["type"] == "status"][-2:] == ["evaluating", "stopped"]
    assert not [e for e in events if e["type"] == "error"]
    (said,) = [e for e in events if e["type"] == "log" and "Stopped during evaluation" in e["message"]]
    assert f"tuner eval {run.root}" in said["message"]
    print(f"{how}: the worker ended {took:.2f}s after the stop request")
    if how == "SIGTERM":
        return
    # `tuner eval` redoes the evaluation (made small here, so the test stays short).
    text = run.recipe.read_text(encoding="utf-8")
    run.recipe.write_text(
        text.replace("max_samples = 600", "max_samples = 8").replace(
            "max_new_tokens = 256", "max_new_tokens = 8"
        )
    )
    result = subprocess.run([*TUNER, "eval", str(run.root)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert read_state(run.state)["phase"] == "completed"
    assert json.loads((run.report / "report.json").read_text())["examples"] == 8


def test_generation_stops_within_a_few_tokens_of_a_request(tiny_assets) -> None:
    """A long generation does not run on to max_new_tokens once a stop is requested."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_assets["model"])
    model.generation_config.eos_token_id = None  # never ends by itself: only max_new_tokens or the stop
    tokenizer = AutoTokenizer.from_pretrained(tiny_assets["model"])
    asked = 0

    def should_stop() -> bool:
        nonlocal asked
        asked += 1
        return asked > 5

    scorer = CausalScorer(model, tokenizer, should_stop=should_stop)
    with pytest.raises(EvaluationStopped):
        scorer.generate(["Capital of France?"] * 3, max_new_tokens=5000)
    assert asked < 10  # asked before the batch, then after each new token: stopped after ~5 tokens
    with pytest.raises(EvaluationStopped):
        scorer.continuation_logprob(["Capital of France?"], [" Paris"])


def test_stop_requests_come_from_the_control_file_or_a_signal(tmp_path: Path) -> None:
    signalled = threading.Event()
    asked = control.StopRequests(tmp_path, signalled, poll_s=0)
    assert not asked()
    control.request(tmp_path, "stop", by="test")
    assert asked() and not (tmp_path / "stop").exists()  # consumed, and remembered
    assert asked()
    other = control.StopRequests(tmp_path, signalled, poll_s=0)
    assert not other()
    signalled.set()
    assert other()
