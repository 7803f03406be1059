"""The real worker (`python -m tuner_tui.runs.worker`) on a tiny Llama: detach, resume, faults."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from rich.console import Console

from tests.waiting import events_of, wait_for
from tuner_tui.recipe import load_recipe
from tuner_tui.runs import checkpoints
from tuner_tui.runs.launcher import create_run, resume_run, start_run
from tuner_tui.runs.layout import RunDir, list_runs
from tuner_tui.runs.state import TERMINAL_PHASES, read_raw_state, read_state, worker_alive
from tuner_tui.runs.viewer import follow_run
from tuner_tui.runs.worker import run_worker

pytestmark = pytest.mark.slow
TUNER = [sys.executable, "-m", "tuner_tui.cli"]


def wait_for_run(runs_dir: Path, launcher: subprocess.Popen, timeout: float = 120.0) -> RunDir:
    """The run that the `tuner run` process `launcher` is creating under `runs_dir`, in place.

    Not the folder's first entry: create_run builds the run under a hidden `.staging-*` name and
    renames it into place, so on a busy machine the first entry seen can be the staging folder,
    which is gone a moment later. `list_runs` (what `tuner runs` shows) lists only runs in place.
    A launcher that exits first (it refused the recipe) fails here, with its output.
    """

    def created() -> bool:
        if list_runs(runs_dir):
            return True
        if launcher.poll() is not None:
            output = launcher.communicate()[0] if launcher.stdout else ""
            raise AssertionError(f"`tuner run` exited {launcher.returncode} before a run existed:\n{output}")
        return False

    wait_for(created, timeout, "run directory")
    (row,) = list_runs(runs_dir)
    return RunDir.open(row.path)


@pytest.fixture
def stray_workers():
    """Runs a test starts through `tuner run`: a worker still alive at the test's end is killed.
    A failed test must not leave a 400-step run loading the machine for the tests after it."""
    runs: list[RunDir] = []
    yield runs
    for run in runs:
        state = read_raw_state(run.state)
        if worker_alive(state):
            os.kill(state["pid"], signal.SIGKILL)


class OutputReader(threading.Thread):
    """Collects a process's text output as it comes, so a test can wait on what it printed."""

    def __init__(self, proc: subprocess.Popen) -> None:
        super().__init__(daemon=True)
        self.proc, self.chunks = proc, []

    def run(self) -> None:
        for line in self.proc.stdout:
            self.chunks.append(line)

    @property
    def text(self) -> str:
        return "".join(self.chunks)


def wait_until_done(run: RunDir, timeout: float = 180.0) -> dict:
    wait_for(lambda: read_state(run.state).get("phase") in TERMINAL_PHASES | {"crashed"}, timeout, "run end")
    return read_state(run.state)


def adapter_tensors(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path / "adapter_model.safetensors"))


def assert_same_tensors(a: dict, b: dict) -> None:
    import torch

    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.fixture(scope="module")
def reference(tiny_assets, tmp_path_factory) -> dict:
    """An uninterrupted 24-step run that the interrupted runs must match bit for bit."""
    from tests.tiny import write_recipe

    root = tmp_path_factory.mktemp("reference")
    recipe = write_recipe(
        root / "recipe.toml", tiny_assets["data"], tiny_assets["model"], max_steps=24, save_every_steps=4
    )
    run = start_run(recipe, root / "runs")
    state = wait_until_done(run)
    assert state["phase"] == "completed", (run.log.read_text())[-3000:]
    return {"recipe": recipe, "run": run, "adapter": adapter_tensors(run.adapter)}


def test_end_to_end_run_completes_with_events_and_lock(tiny_recipe, tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(
        "sent_more,sent_less,bias_type\n"
        "He is good at math.,She is good at math.,gender\n"
        "The old man forgot the code.,The young man forgot the code.,age\n"
        "She stayed home with the kids.,He stayed home with the kids.,gender\n"
    )
    extra = (
        '[[objectives]]\nmetric = "perplexity"\ntarget = 1000.0\n'
        '[[objectives]]\nmetric = "exact_match"\ntarget = 0.99\n'
        f'[bias]\npairs_file = "{pairs}"\n'
    )
    recipe = tiny_recipe(extra, max_steps=30, learning_rate=0.05, save_every_steps=10)
    result = subprocess.run(
        [*TUNER, "run", str(recipe), "--runs-dir", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Completed" in result.stdout
    (run_root,) = (tmp_path / "runs").iterdir()
    run = RunDir.open(run_root)
    phases = [e["phase"] for e in events_of(run, "status")]
    assert phases == ["queued", "preparing", "training", "evaluating", "completed"]
    metrics = events_of(run, "metric")
    assert [m["step"] for m in metrics] == list(range(1, 31))
    for m in metrics:
        assert {"step", "epoch", "loss", "lr", "grad_norm", "tokens_per_s", "eta_s"} <= m.keys()
    losses = [m["loss"] for m in metrics]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.3, losses
    assert metrics[-1]["tokens_per_s"] > 0
    telemetry = events_of(run, "telemetry")
    assert telemetry and telemetry[0]["rss_bytes"] > 0 and "cpu_percent" in telemetry[0]
    assert [c["step"] for c in events_of(run, "checkpoint")] == [10, 20, 30]
    assert read_raw_state(run.state)["phase"] == "completed"
    assert {"adapter_model.safetensors", "adapter_config.json", "tokenizer.json"} <= {
        p.name for p in run.adapter.iterdir()
    }
    frozen = load_recipe(run.recipe)
    assert frozen.environment["libraries"]["torch"]
    assert frozen.environment["data_fingerprint"].startswith("sha256:")
    assert frozen.environment["recipe_hash"] == load_recipe(recipe).hash()
    assert frozen.environment["device"] == "cpu"
    assert frozen.environment["chat_template"] == "fallback:alpaca"  # the tiny tokenizer has none
    assert "Traceback" not in result.stdout + result.stderr
    report = json.loads((run.report / "report.json").read_text())
    assert report["verdict"] == "fail"  # perplexity passes, exact match cannot after 30 steps
    perplexity, exact = report["objectives"]
    assert perplexity["passed"] and perplexity["tuned"] < perplexity["base"]
    assert not exact["passed"] and exact["margin"] < 0
    assert report["metrics"]["tuned"]["perplexity"] < report["metrics"]["base"]["perplexity"]
    assert {"rouge_l", "bleu", "chrf", "loss"} <= report["metrics"]["tuned"].keys()
    assert (
        report["samples"]["shown"]
        and {"input", "reference", "base", "tuned"} <= report["samples"]["shown"][0].keys()
    )
    bias = report["bias"]
    assert bias["data_audit"]["status"] == "ok" and bias["counterfactual"]["status"] == "ok"
    assert bias["paired"]["status"] == "ok"
    assert bias["paired"]["tuned"]["overall"]["n"] == 3 and "base" in bias["paired"]
    markdown = (run.report / "report.md").read_text()
    assert "## Objectives" in markdown and "FAIL" in markdown and "## Bias" in markdown
    assert [e["model"] for e in events_of(run, "eval") if "model" in e] == ["base", "tuned"]
    (run.report / "report.json").unlink()
    again = subprocess.run([*TUNER, "eval", str(run.root)], capture_output=True, text=True, timeout=300)
    assert again.returncode == 3, again.stdout + again.stderr  # objectives not met
    assert (
        "FAIL" in again.stdout and json.loads((run.report / "report.json").read_text())["verdict"] == "fail"
    )
    assert read_raw_state(run.state)["phase"] == "completed"
    merged = subprocess.run(
        [*TUNER, "export", str(run.root), "--merge", "--out", str(tmp_path / "merged")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert merged.returncode == 0, merged.stderr
    assert {"model.safetensors", "config.json", "tuner_recipe.toml"} <= {
        p.name for p in (tmp_path / "merged").iterdir()
    }


def test_adapter_reloads_with_the_same_logits(tiny_recipe, tmp_path: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from tuner_tui.runs.events import EventWriter
    from tuner_tui.training.run import train

    recipe_path = tiny_recipe(max_steps=6, learning_rate=0.05)
    run = create_run(recipe_path, tmp_path / "runs")
    with EventWriter(run.events) as events:
        outcome = train(load_recipe(run.recipe), run, events, threading.Event())
    batch = outcome.tokenizer(["What is the capital of Peru?"], return_tensors="pt")
    outcome.model.eval()
    with torch.no_grad():
        expected = outcome.model(**batch).logits
        base = AutoModelForCausalLM.from_pretrained(load_recipe(run.recipe).model.name_or_path)
        reloaded = PeftModel.from_pretrained(base, str(run.adapter)).eval()
        actual = reloaded(**batch).logits
    assert torch.equal(expected, actual)


def test_two_runs_are_bit_identical_and_sigkill_resume_matches(reference, tmp_path: Path) -> None:
    """Same recipe, same seed: identical adapters. SIGKILL in the middle, resume: identical too."""
    run = start_run(reference["recipe"], tmp_path / "runs")
    wait_for(lambda: any(c["step"] >= 8 for c in events_of(run, "checkpoint")), what="checkpoint 8")
    os.kill(read_raw_state(run.state)["pid"], signal.SIGKILL)
    assert wait_until_done(run, timeout=10)["phase"] == "crashed"
    # state.json lost as well: the events, the checkpoints and the lock still tell the run's state.
    run.state.unlink()
    rebuilt = read_state(run.state)
    assert rebuilt["phase"] == "crashed" and rebuilt["recorded_phase"] == "training"
    assert rebuilt["step"] >= 8 and rebuilt["damaged"] == "state.json missing"
    resume_run(run.root)
    assert wait_until_done(run)["phase"] == "completed"
    logs = [e.get("message", "") for e in events_of(run, "log")]
    assert any("state.json was missing: rebuilt from events.jsonl" in m for m in logs)
    assert any("Resuming from checkpoint-" in m for m in logs)
    assert_same_tensors(adapter_tensors(run.adapter), reference["adapter"])


SLOW_SAVE = """
import os, time
if os.environ.get("TUNER_TEST_SLOW_SAVE_S"):
    import safetensors.torch as st
    _save = st.save_file
    def save_file(*args, **kwargs):
        result = _save(*args, **kwargs)
        time.sleep(float(os.environ["TUNER_TEST_SLOW_SAVE_S"]))
        return result
    st.save_file = save_file
"""


def test_sigkill_mid_checkpoint_save_resumes_from_last_complete(
    reference, tmp_path: Path, monkeypatch
) -> None:
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(textwrap.dedent(SLOW_SAVE))
    monkeypatch.setenv("PYTHONPATH", f"{hooks}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    monkeypatch.setenv("TUNER_TEST_SLOW_SAVE_S", "3")
    run = start_run(reference["recipe"], tmp_path / "runs")
    ckpt8 = run.checkpoints / "checkpoint-8"
    wait_for(lambda: (ckpt8 / "adapter_model.safetensors").exists(), what="checkpoint-8 being written")
    os.kill(read_raw_state(run.state)["pid"], signal.SIGKILL)
    assert wait_until_done(run, timeout=10)["phase"] == "crashed"
    assert not checkpoints.is_complete(ckpt8)
    assert checkpoints.latest_complete(run.checkpoints).name == "checkpoint-4"
    monkeypatch.delenv("TUNER_TEST_SLOW_SAVE_S")
    resume_run(run.root)
    assert wait_until_done(run)["phase"] == "completed"
    logs = [e.get("message", "") for e in events_of(run, "log")]
    assert any("Removed incomplete checkpoint checkpoint-8" in m for m in logs)
    assert any("Resuming from checkpoint-4" in m for m in logs)
    assert_same_tensors(adapter_tensors(run.adapter), reference["adapter"])


def test_sigterm_stops_within_a_step_with_a_checkpoint_and_resumes(reference, tmp_path: Path) -> None:
    run = start_run(reference["recipe"], tmp_path / "runs")
    wait_for(lambda: any(m["step"] >= 5 for m in events_of(run, "metric")), what="step 5")
    seen = max(m["step"] for m in events_of(run, "metric"))
    os.kill(read_raw_state(run.state)["pid"], signal.SIGTERM)
    state = wait_until_done(run, timeout=60)
    assert state["phase"] == "stopped"
    stopped_at = state["step"]
    assert seen <= stopped_at <= seen + 2 and stopped_at < 24
    assert checkpoints.latest_complete(run.checkpoints).name == f"checkpoint-{stopped_at}"
    assert not run.adapter.exists()
    resume_run(run.root)
    assert wait_until_done(run)["phase"] == "completed"
    assert_same_tensors(adapter_tensors(run.adapter), reference["adapter"])


def test_tuner_stop_and_detached_viewers(tiny_recipe, tmp_path: Path, stray_workers) -> None:
    """Kill the launching viewer's process group: the worker lives on. A second viewer started
    mid-run replays the whole history, then follows to the end. `tuner stop` stops the run."""
    recipe = tiny_recipe(max_steps=400, save_every_steps=1000)
    runs_dir = tmp_path / "runs"
    viewer = subprocess.Popen(
        [*TUNER, "run", str(recipe), "--runs-dir", str(runs_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    run = wait_for_run(runs_dir, viewer)
    stray_workers.append(run)
    wait_for(lambda: any(m["step"] >= 3 for m in events_of(run, "metric")), what="training")
    worker_pid = read_raw_state(run.state)["pid"]
    assert os.getpgid(worker_pid) != viewer.pid
    os.killpg(viewer.pid, signal.SIGKILL)
    viewer.wait()
    # The worker lives on: it keeps training after its viewer is gone (a step, not a time span).
    killed_at = max(m["step"] for m in events_of(run, "metric"))
    wait_for(lambda: any(m["step"] > killed_at for m in events_of(run, "metric")), what="a step after")
    assert read_state(run.state)["phase"] == "training"
    second = subprocess.Popen(
        [*TUNER, "attach", "--plain", str(run.root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wait_for(lambda: any(m["step"] >= 8 for m in events_of(run, "metric")), what="more training")
    result = subprocess.run([*TUNER, "stop", str(run.root)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    output, _ = second.communicate(timeout=120)
    assert second.returncode == 0
    assert "phase → queued" in output and "phase → training" in output  # replayed history
    assert "Stopped at step" in output
    state = read_raw_state(run.state)
    assert state["phase"] == "stopped"
    assert checkpoints.latest_complete(run.checkpoints).name == f"checkpoint-{state['step']}"
    again = subprocess.run([*TUNER, "stop", str(run.root)], capture_output=True, text=True)
    assert again.returncode == 2 and "not running" in again.stderr


def _run_in_process_with_faulty_forward(recipe_path: Path, runs_dir: Path, monkeypatch, fault) -> RunDir:
    from transformers import LlamaForCausalLM

    original = LlamaForCausalLM.forward
    calls = {"n": 0}

    def forward(self, *args, **kwargs):
        calls["n"] += 1
        return fault(calls["n"], original(self, *args, **kwargs))

    monkeypatch.setattr(LlamaForCausalLM, "forward", forward)
    run = create_run(recipe_path, runs_dir)
    assert run_worker(run.root, threading.Event()) == 1
    return run


def _viewer_output(run: RunDir) -> tuple[int, str]:
    console = Console(record=True, width=120)
    code = follow_run(run, console)
    return code, console.export_text()


def test_nan_loss_fails_the_run_as_diverged(tiny_recipe, tmp_path: Path, monkeypatch) -> None:
    def nan_after_three(n, output):
        if n >= 4 and output.loss is not None:
            output.loss = output.loss * float("nan")
        return output

    run = _run_in_process_with_faulty_forward(
        tiny_recipe(max_steps=10, save_every_steps=2), tmp_path / "runs", monkeypatch, nan_after_three
    )
    assert read_raw_state(run.state)["phase"] == "failed"
    (error,) = events_of(run, "error")
    assert error["kind"] == "diverged"
    assert "learning_rate" in error["hint"] and "checkpoint-2" in error["hint"]
    assert error["last_checkpoint"].endswith("checkpoint-2")
    code, output = _viewer_output(run)
    assert code == 1 and "diverged" in output and "Traceback" not in output


def test_out_of_memory_fails_the_run_with_hints(tiny_recipe, tmp_path: Path, monkeypatch) -> None:
    import torch

    def oom_on_second(n, output):
        if n >= 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return output

    run = _run_in_process_with_faulty_forward(
        tiny_recipe(max_steps=10), tmp_path / "runs", monkeypatch, oom_on_second
    )
    assert read_raw_state(run.state)["phase"] == "failed"
    (error,) = events_of(run, "error")
    assert error["kind"] == "oom"
    for advice in ("batch_size", "gradient_checkpointing", "max_length", "qlora"):
        assert advice in error["hint"]
    code, output = _viewer_output(run)
    assert code == 1 and "Traceback" not in output


def test_bad_data_fails_with_a_clear_invalid_error(tiny_assets, tmp_path: Path) -> None:
    from tests.tiny import write_recipe
    from tuner_tui.recipe import RecipeError

    data = tmp_path / "data.jsonl"
    data.write_text('{"question": "a", "answer": "b"}\n')
    recipe = write_recipe(tmp_path / "recipe.toml", data, tiny_assets["model"], max_steps=2)
    # Known before training: refused up front, and no run directory is made.
    with pytest.raises(RecipeError, match="data.path"):
        create_run(recipe, tmp_path / "runs")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    # Data that goes bad after the run was created is the worker's to report.
    data.write_bytes(tiny_assets["data"].read_bytes())
    run = create_run(recipe, tmp_path / "runs")
    data.write_text('{"question": "a", "answer": "b"}\n')
    assert run_worker(run.root, threading.Event()) == 1
    (error,) = events_of(run, "error")
    assert error["kind"] == "invalid" and "Cannot detect the data format" in error["message"]


def test_ctrl_c_in_the_viewer_detaches_and_says_how_to_come_back(
    tiny_recipe, tmp_path: Path, stray_workers
) -> None:
    recipe = tiny_recipe(max_steps=400, save_every_steps=1000)
    runs_dir = tmp_path / "runs"
    viewer = subprocess.Popen(
        [*TUNER, "run", str(recipe), "--runs-dir", str(runs_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    run = wait_for_run(runs_dir, viewer)
    stray_workers.append(run)
    printed = OutputReader(viewer)
    printed.start()
    # Ctrl-C is for a viewer that follows the run: wait until it has shown the training phase
    # (the worker's progress alone says nothing about where the viewer is on a busy machine).
    wait_for(lambda: "phase → training" in printed.text or viewer.poll() is not None, what="the viewer")
    wait_for(lambda: any(m["step"] >= 2 for m in events_of(run, "metric")), what="training")
    viewer.send_signal(signal.SIGINT)
    viewer.wait(timeout=30)
    printed.join(timeout=30)
    output = printed.text
    assert viewer.returncode == 0, output
    assert (
        "Detached" in output and f"tuner attach {run.root}" in output and f"tuner stop {run.root}" in output
    )
    assert "Traceback" not in output
    assert read_state(run.state)["phase"] == "training"
    subprocess.run([*TUNER, "stop", str(run.root)], check=True, capture_output=True)
    assert wait_until_done(run)["phase"] == "stopped"


class _StopAfterFirstCheck(threading.Event):
    """Not set when the worker looks before training; set at every later look (step 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.looks = 0

    def is_set(self) -> bool:
        self.looks += 1
        return self.looks > 1


def test_resume_refuses_data_that_changed_since_the_run_started(tiny_assets, tmp_path: Path) -> None:
    from tests.tiny import alpaca_rows, write_jsonl, write_recipe

    data = write_jsonl(tmp_path / "data.jsonl", alpaca_rows(48))
    recipe = write_recipe(tmp_path / "recipe.toml", data, tiny_assets["model"], max_steps=6)
    run = create_run(recipe, tmp_path / "runs")
    assert run_worker(run.root, _StopAfterFirstCheck()) == 0
    assert read_raw_state(run.state)["phase"] == "stopped"
    recorded = load_recipe(run.recipe).environment["data_content_fingerprint"]
    assert recorded.startswith("sha256:")
    write_jsonl(data, alpaca_rows(48, seed=1))
    assert run_worker(run.root, threading.Event()) == 1
    (error,) = events_of(run, "error")
    assert error["kind"] == "invalid" and "changed since this run started" in error["message"]


def test_a_run_without_held_out_data_completes_and_says_evaluation_was_skipped(
    tiny_assets, tmp_path: Path
) -> None:
    from tests.tiny import write_recipe

    recipe = write_recipe(tmp_path / "recipe.toml", tiny_assets["data"], tiny_assets["model"], max_steps=2)
    recipe.write_text(
        recipe.read_text()
        .replace("validation_fraction = 0.1", "validation_fraction = 0.0")
        .replace("test_fraction = 0.1", "test_fraction = 0.0")
    )
    run = create_run(recipe, tmp_path / "runs")
    assert run_worker(run.root, threading.Event()) == 0
    state = read_raw_state(run.state)
    assert state["phase"] == "completed" and state["verdict"] == "not_evaluated"
    assert any("Evaluation skipped" in e.get("message", "") for e in events_of(run, "log"))


def _file_digests(folder: Path, names: set[str] | None = None) -> dict[str, str]:
    """sha256 of every file under `folder` (or only those named), by relative path."""
    import hashlib

    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and (names is None or path.name in names)
    }


def test_identical_runs_write_bit_identical_adapter_folders(tiny_assets, tmp_path: Path, monkeypatch) -> None:
    """Two runs of one recipe give the same bytes in every file of adapter/ and of the final
    checkpoint's adapter files, even when Python's string hashing (set order) differs."""
    from tests.tiny import write_recipe

    recipe = write_recipe(
        tmp_path / "recipe.toml", tiny_assets["data"], tiny_assets["model"], max_steps=4, save_every_steps=4
    )
    runs = []
    for hash_seed in ("1", "2"):  # seeds under which the target_modules set iterates differently
        monkeypatch.setenv("PYTHONHASHSEED", hash_seed)
        runs.append(start_run(recipe, tmp_path / f"runs-{hash_seed}"))
    for run in runs:
        assert wait_until_done(run)["phase"] == "completed", run.log.read_text()[-3000:]
    first, second = (_file_digests(run.adapter) for run in runs)
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md"} <= first.keys()
    assert first == second
    config = json.loads((runs[0].adapter / "adapter_config.json").read_text(encoding="utf-8"))
    assert config["target_modules"] == sorted(config["target_modules"])
    final = [run.checkpoints / "checkpoint-4" for run in runs]
    adapter_files = set(first)
    assert _file_digests(final[0], adapter_files) == _file_digests(final[1], adapter_files) == first
