"""Re-evaluation (`tuner eval`, the wizard's Re-evaluate) runs as a detached process through the
launcher, under the run's lock, and is followed like a run (issue 13, point 8).

The runs here are finished the way a worker leaves them (a frozen recipe, an adapter of the tiny
Llama, a report, phase `completed`) without training: the adapter is an untrained LoRA, which is
what evaluation loads either way.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.tiny import alpaca_rows, write_jsonl, write_recipe
from tuner_tui.errors import EXIT_INVALID_INPUT, EXIT_OBJECTIVES_FAILED, EXIT_RUN_FAILED
from tuner_tui.runs import control
from tuner_tui.runs.events import read_events
from tuner_tui.runs.launcher import create_run, resume_run, start_evaluation
from tuner_tui.runs.layout import RunDir
from tuner_tui.runs.state import RunBusy, read_raw_state, read_state, worker_alive, write_state

pytestmark = pytest.mark.slow
TUNER = [sys.executable, "-m", "tuner_tui.cli"]
HEAVY = ("torch", "transformers", "peft", "datasets", "evaluate")
OBJECTIVES = (
    '[[objectives]]\nmetric = "perplexity"\ntarget = 1000000.0\n'
    '[[objectives]]\nmetric = "exact_match"\ntarget = 0.99\n'
)
OLD_REPORT = {"run_id": "old", "verdict": "old", "objectives": []}


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


def finished_run(folder: Path, tiny_assets: dict[str, Path], *, long: bool = False) -> RunDir:
    """A run as a worker leaves it after training and evaluation. `long`: an evaluation of 600
    rows with 256 generated tokens for base and tuned (minutes on CPU), to be stopped."""
    data = write_jsonl(folder / "data.jsonl", alpaca_rows(1200 if long else 64))
    recipe = write_recipe(folder / "recipe.toml", data, tiny_assets["model"], OBJECTIVES, max_steps=2)
    if long:
        text = recipe.read_text(encoding="utf-8")
        for old, new in (
            ("test_fraction = 0.1", "test_fraction = 0.5"),
            ("max_samples = 8", "max_samples = 600"),
            ("max_new_tokens = 16", "max_new_tokens = 256"),
        ):
            text = text.replace(old, new)
        recipe.write_text(text, encoding="utf-8")
    run = create_run(recipe, folder / "runs")
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_assets["model"])
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    get_peft_model(base, lora).save_pretrained(str(run.adapter))
    (run.report / "report.json").write_text(json.dumps(OLD_REPORT), encoding="utf-8")
    (run.report / "report.md").write_text("# the old report\n", encoding="utf-8")
    write_state(run.state, phase="completed", step=2, verdict="old")
    return run


def statuses(run: RunDir) -> list[dict]:
    return [e for e in read_events(run.events)[0] if e["type"] == "status"]


def _kill(run: RunDir) -> None:
    state = read_raw_state(run.state)
    if worker_alive(state):
        os.kill(state["pid"], signal.SIGKILL)


def test_tuner_eval_evaluates_in_a_detached_process_and_prints_the_table(tiny_assets, tmp_path: Path) -> None:
    run = finished_run(tmp_path, tiny_assets)
    command = subprocess.Popen(
        [*TUNER, "eval", str(run.root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        out, err = command.communicate(timeout=600)
    finally:
        _kill(run)
    assert command.returncode == EXIT_OBJECTIVES_FAILED, out + err
    assert "perplexity" in out and "pass" in out and "FAIL" in out and "Verdict: fail" in out
    report = json.loads((run.report / "report.json").read_text(encoding="utf-8"))
    assert report["verdict"] == "fail" and report["run_id"] == run.run_id  # a new report
    state = read_state(run.state)
    assert state["phase"] == "completed" and state["verdict"] == "fail"
    # The evaluation ran in a process of its own, not in `tuner eval`.
    assert state["pid"] != command.pid
    started, ended = statuses(run)[-2:]
    assert (started["phase"], started["reevaluation"], started["by"]) == ("evaluating", True, "tuner eval")
    assert ended["phase"] == "completed" and ended["verdict"] == "fail"
    assert [e["model"] for e in read_events(run.events)[0] if e["type"] == "eval"] == ["base", "tuned"]


def test_a_second_evaluation_is_refused_and_a_stop_keeps_the_old_report(tiny_assets, tmp_path: Path) -> None:
    run = finished_run(tmp_path, tiny_assets, long=True)
    started = start_evaluation(run.root, by="test")
    try:
        assert read_state(run.state)["phase"] == "evaluating"
        second = subprocess.run([*TUNER, "eval", str(run.root)], capture_output=True, text=True, timeout=300)
        assert second.returncode == EXIT_INVALID_INPUT, second.stdout + second.stderr
        assert f"in use by pid {started.pid}" in " ".join(second.stderr.split())
        with pytest.raises(RunBusy, match=f"pid {started.pid}"):
            resume_run(run.root)  # nor may anything else start on the run
        with pytest.raises(RunBusy, match=f"pid {started.pid}"):
            start_evaluation(run.root)
        assert read_raw_state(run.state)["pid"] == started.pid  # the refusals wrote nothing
        control.request(run.control, "stop", by="test")
        wait_for(lambda: not worker_alive(read_raw_state(run.state)), 300, "the evaluation to stop")
    finally:
        _kill(run)
    state = read_state(run.state)
    assert state["phase"] == "stopped" and state["stopped_in"] == "evaluating", run.log.read_text()[-3000:]
    assert json.loads((run.report / "report.json").read_text(encoding="utf-8")) == OLD_REPORT
    assert (run.report / "report.md").read_text(encoding="utf-8") == "# the old report\n"
    assert [e["phase"] for e in statuses(run)][-2:] == ["evaluating", "stopped"]
    events = read_events(run.events)[0]
    assert not [e for e in events if e["type"] == "error"]
    assert any(
        e["type"] == "log" and "report in" in e["message"] and "unchanged" in e["message"] for e in events
    )
    # The run's lock went with the evaluation: evaluating (or resuming) is possible again.
    start_evaluation(run.root).proc.kill()


def test_a_failed_evaluation_ends_failed_with_an_error_event(tiny_assets, tmp_path: Path) -> None:
    run = finished_run(tmp_path, tiny_assets)
    (run.adapter / "adapter_model.safetensors").write_bytes(b"not safetensors")
    result = subprocess.run([*TUNER, "eval", str(run.root)], capture_output=True, text=True, timeout=600)
    assert result.returncode == EXIT_RUN_FAILED, result.stdout + result.stderr
    said = " ".join(result.stderr.split())
    assert "evaluation failed" in said and f"tuner eval {run.root}" in said
    state = read_state(run.state)
    assert state["phase"] == "failed" and state["error_kind"] == "evaluation"
    (error,) = [e for e in read_events(run.events)[0] if e["type"] == "error"]
    assert error["kind"] == "evaluation"
    assert json.loads((run.report / "report.json").read_text(encoding="utf-8")) == OLD_REPORT


def test_the_wizard_re_evaluates_without_importing_torch(tiny_assets, tmp_path: Path) -> None:
    """Pressing Re-evaluate in a real wizard process: the evaluation runs in another process, the
    screen shows `evaluating`, then the new report; the wizard never imports the ML stack."""
    run = finished_run(tmp_path, tiny_assets)
    script = textwrap.dedent(
        f"""
        import asyncio, json, os, sys, time
        from pathlib import Path
        from tuner_tui.app import TunerApp

        async def until(pilot, predicate, what, timeout=600.0):
            deadline = time.monotonic() + timeout
            while not predicate():
                if time.monotonic() > deadline:
                    raise SystemExit(f"timed out waiting for {{what}}")
                await pilot.pause(0.05)

        async def main():
            app = TunerApp(runs_dir=Path({str(run.root.parent)!r}))
            async with app.run_test(size=(120, 40)) as pilot:
                app.run_dir = Path({str(run.root)!r})
                await pilot.press("5")
                screen = app.screen
                await until(pilot, lambda: screen.report is not None, "the old report")
                assert screen.report.verdict == "old"
                await pilot.press("e")
                await until(pilot, lambda: screen.state.phase == "evaluating", "evaluating")
                status = str(screen.query_one("#report-status").content)
                disabled = screen.query_one("#reevaluate").disabled
                await until(
                    pilot,
                    lambda: screen.state.phase == "completed"
                    and screen.report is not None and screen.report.verdict == "fail",
                    "the new report",
                )
                verdict = str(screen.query_one("#verdict").content)
                print(json.dumps({{
                    "heavy": [m for m in {HEAVY!r} if m in sys.modules],
                    "pid": os.getpid(),
                    "status": status,
                    "disabled": disabled,
                    "verdict": verdict,
                    "followed": str(app.run_dir),
                    "app_phase": app.run_phase,
                }}))

        asyncio.run(main())
        """
    )
    try:
        result = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=900, cwd=tmp_path
        )
    finally:
        _kill(run)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["heavy"] == []  # torch & co. were only ever imported by the evaluation process
    assert "is evaluating now" in seen["status"] and seen["disabled"]
    assert "FAIL" in seen["verdict"]
    assert seen["followed"] == str(run.root) and seen["app_phase"] == "completed"
    state = read_state(run.state)
    assert state["phase"] == "completed" and state["pid"] != seen["pid"]
    assert json.loads((run.report / "report.json").read_text(encoding="utf-8"))["verdict"] == "fail"
    started = [e for e in statuses(run) if e["phase"] == "evaluating"][-1]
    assert started["by"] == "tuner (TUI)"
