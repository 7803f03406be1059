"""Nothing private leaves the data through a run's files: PII in the evaluation report's samples is
masked by default (`[evaluation] show_raw_samples = true` opts out), the run directory's files all
follow the user's umask (safetensors' own 0600 included), and a bad pairs or probes file is named,
never quoted."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.tiny import COUNTRIES, write_jsonl, write_recipe
from tuner_tui.errors import TunerError
from tuner_tui.evaluation.bias import load_pairs, load_probes
from tuner_tui.runs.events import read_events
from tuner_tui.runs.launcher import start_run
from tuner_tui.runs.layout import RunDir
from tuner_tui.runs.state import TERMINAL_PHASES, read_state

SECRET = "hunter2-root-only-TOKEN-7f3a"
EMAIL = re.compile(r"amy\.\d+@example\.com")
PHONE = re.compile(r"415-555-1\d{3}")


def pii_rows(n: int = 64) -> list[dict[str, str]]:
    """Alpaca rows with an email and a phone number in every prompt and answer."""
    rows = []
    for i in range(n):
        country, capital = COUNTRIES[i % len(COUNTRIES)]
        contact = f"amy.{i}@example.com or 415-555-{1000 + i}"
        rows.append(
            {
                "instruction": f"My sister asks: what is the capital of {country}? Reach her at {contact}.",
                "input": "",
                "output": f"The capital of {country} is {capital}. Sent to {contact}.",
            }
        )
    return rows


def _recipe(folder: Path, tiny_assets: dict[str, Path], data: Path, extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return write_recipe(
        folder / "recipe.toml",
        data,
        tiny_assets["model"],
        extra,
        max_steps=2,
        save_every_steps=2,
        max_length=192,
    )


def _run(
    recipe: Path, runs_dir: Path, timeout: float = 300.0, started: Callable[[], None] | None = None
) -> dict:
    """Start the real detached worker on `recipe` and wait for the run to end; its final state.
    `started` is called as soon as the worker is."""
    run = start_run(recipe, runs_dir)
    if started is not None:
        started()
    deadline = time.monotonic() + timeout
    while (state := read_state(run.state)).get("phase") not in TERMINAL_PHASES | {"crashed"}:
        assert time.monotonic() < deadline, f"the run did not end in {timeout:.0f}s: {state}"
        time.sleep(0.1)
    return {"run": run, **state}


@pytest.fixture(scope="module")
def pii_run(tiny_assets, tmp_path_factory) -> RunDir:
    """A real (2-step) run of the detached worker, trained and evaluated under umask 022."""
    root = tmp_path_factory.mktemp("pii")
    data = write_jsonl(root / "pii.jsonl", pii_rows())
    previous = os.umask(0o022)  # the worker inherits it
    try:
        state = _run(_recipe(root, tiny_assets, data), root / "runs")
    finally:
        os.umask(previous)
    assert state["phase"] == "completed", state["run"].log.read_text()[-3000:]
    return state["run"]


def _pii_in(text: str) -> list[str]:
    return EMAIL.findall(text) + PHONE.findall(text)


@pytest.mark.slow
def test_report_and_events_mask_pii_in_samples_by_default(pii_run: RunDir) -> None:
    report_json = (pii_run.report / "report.json").read_text(encoding="utf-8")
    report_md = (pii_run.report / "report.md").read_text(encoding="utf-8")
    events = pii_run.events.read_text(encoding="utf-8")
    for name, text in (("report.json", report_json), ("report.md", report_md), ("events.jsonl", events)):
        assert not _pii_in(text), f"{name} holds raw PII: {_pii_in(text)[:4]}"
    report = json.loads(report_json)
    assert report["samples_masked"] is True
    shown = report["samples"]["shown"]
    assert shown and all("am*" in s["input"] and "@" in s["input"] for s in shown)  # masked, not dropped
    assert all("41*-***-**" in s["reference"] for s in shown)
    assert "is masked; `[evaluation] show_raw_samples = true` shows it" in report_md
    examples = report["bias"]["counterfactual"]["pairs"]["examples"]
    from_test = [e for e in examples if "capital" in e["original"]]
    assert from_test and all(
        "@" in e["original"] and not _pii_in(e["original"] + e["swapped"]) for e in from_test
    )


@pytest.mark.slow
def test_show_raw_samples_opts_out(pii_run: RunDir, tmp_path: Path) -> None:
    run = RunDir(Path(shutil.copytree(pii_run.root, tmp_path / pii_run.run_id)))
    text = run.recipe.read_text(encoding="utf-8")
    run.recipe.write_text(text.replace("[evaluation]\n", "[evaluation]\nshow_raw_samples = true\n", 1))
    result = subprocess.run(
        [sys.executable, "-m", "tuner_tui.cli", "eval", str(run.root)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((run.report / "report.json").read_text(encoding="utf-8"))
    assert report["samples_masked"] is False
    assert EMAIL.search(report["samples"]["shown"][0]["input"])
    assert _pii_in((run.report / "report.md").read_text(encoding="utf-8"))
    assert "Shown as written" in (run.report / "report.md").read_text(encoding="utf-8")


@pytest.mark.slow
def test_every_file_of_the_run_follows_the_umask(pii_run: RunDir) -> None:
    """umask 022: folders 0755 and files 0644, the safetensors weights (written 0600 through a
    temporary file by safetensors >= 0.8) included."""
    weights = list(pii_run.root.rglob("*.safetensors"))
    assert {p.parent.name for p in weights} >= {"adapter", "checkpoint-2"}
    modes: dict[str, set[str]] = {}
    for path in [pii_run.root, *pii_run.root.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        expected = 0o755 if path.is_dir() else 0o644
        if mode != expected:
            modes.setdefault(oct(mode), set()).add(str(path.relative_to(pii_run.root)))
    assert not modes, modes


# --- bad bias files: named, not quoted ------------------------------------------------------------


def test_a_pairs_file_error_never_quotes_the_file(tmp_path: Path) -> None:
    path = tmp_path / "secret.txt"
    path.write_text(f"{SECRET}\nsecond line\n", encoding="utf-8")
    with pytest.raises(TunerError) as error:
        load_pairs(path)
    message = str(error.value)
    assert str(path) in message and "lacks column(s) sent_more, sent_less, bias_type" in message
    assert SECRET not in message and "1 other column" in message


@pytest.mark.parametrize(
    "line",
    [
        json.dumps({"template": SECRET}),
        json.dumps({"template": f"{{person}} {SECRET} {{person}}"}),
        SECRET,
        json.dumps([SECRET]),
        json.dumps({SECRET: 1}),
        json.dumps({"text": "", "original": SECRET}),
    ],
)
def test_a_probes_file_error_never_quotes_the_file(tmp_path: Path, line: str) -> None:
    path = tmp_path / "probes.jsonl"
    path.write_text(line + "\n", encoding="utf-8")
    with pytest.raises(TunerError) as error:
        load_probes(path)
    message = str(error.value)
    assert f"{path}:1" in message and SECRET not in message


@pytest.mark.slow
def test_a_bad_pairs_file_leaves_its_content_out_of_events_and_log(tiny_assets, tmp_path: Path) -> None:
    """The worker fails the evaluation naming the file; neither events.jsonl nor worker.log
    holds the file's first line. (The pairs file is good when the run starts, so the launcher's
    pre-flight passes, and replaced before the worker reads it, which it does when evaluating.)"""
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("sent_more,sent_less,bias_type\nHe is loud.,She is loud.,gender\n", encoding="utf-8")
    data = write_jsonl(tmp_path / "data.jsonl", pii_rows())
    recipe = _recipe(tmp_path, tiny_assets, data, f'[bias]\npairs_file = "{pairs}"\n')

    def swap_in_a_secret() -> None:
        pairs.write_text(f"{SECRET}\n", encoding="utf-8")

    state = _run(recipe, tmp_path / "runs", started=swap_in_a_secret)
    run = state["run"]
    assert state["phase"] == "failed", run.log.read_text()[-3000:]
    (error,) = [e for e in read_events(run.events)[0] if e["type"] == "error"]
    assert error["kind"] == "evaluation" and str(pairs) in error["message"], error
    assert SECRET not in run.events.read_text(encoding="utf-8")
    log = run.log.read_text(encoding="utf-8")
    assert "lacks column(s)" in log and SECRET not in log
