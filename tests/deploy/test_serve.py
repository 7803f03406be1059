"""`tuner serve`: transformers serve of a tiny run on 127.0.0.1, the request log, the template
check (passes on the run's own server, fails naming the example on a server with another chat
template), --stop, `tuner runs`; and the refusals, each one paragraph naming the fix."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.deploy.conftest import read_jsonl
from tests.waiting import wait_for
from tuner_tui.deploy import serve as serving
from tuner_tui.errors import TunerError

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=60) as answer:
        return json.loads(answer.read())


def post(url: str, body: dict) -> bytes:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=120) as answer:
        return answer.read()


def kill_group(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=30)


def test_serve_answers_logs_checks_and_stops(causal_run: Path, tmp_path: Path) -> None:
    from tuner_tui.runs.layout import list_runs
    from tuner_tui.views.runs import run_notes

    port, other_port = free_port(), free_port()
    started = serving.start_server(causal_run, port=port, engine="transformers", detach=True)
    procs = [started.proc]
    try:
        # A second server on the same model, with another chat template (ChatML instead of the
        # alpaca template the run trained with), started now so both load at once.
        tampered = tmp_path / "tampered"
        shutil.copytree(causal_run / "serve" / "model", tampered)
        from tuner_tui.modeling.loading import CHATML_CHAT_TEMPLATE

        (tampered / "chat_template.jinja").write_text(CHATML_CHAT_TEMPLATE, encoding="utf-8")
        with open(tmp_path / "tampered.log", "wb") as log:
            other = subprocess.Popen(
                [sys.executable, "-m", "tuner_tui.deploy.server", "transformers", str(tampered),
                 "--port", str(other_port), "--device", "cpu"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        procs.append(other)

        state = json.loads((causal_run / "serve" / "state.json").read_text())
        assert state["url"] == f"http://127.0.0.1:{port}" and state["engine"] == "transformers"
        assert state["pid"] == started.proc.pid and state["phase"] == "serving"
        models = get_json(f"{started.url}/v1/models")
        assert [m["id"] for m in models["data"]] == [state["model"]]

        body = {"messages": [{"role": "user", "content": "What is the capital of Peru?"}], "max_tokens": 12}
        answer = json.loads(post(f"{started.url}/v1/chat/completions", body))
        message = answer["choices"][0]["message"]
        assert message["role"] == "assistant" and message["content"].startswith("The capital")
        streamed = post(f"{started.url}/v1/chat/completions", {**body, "stream": True}).decode()
        chunks = [json.loads(line[5:]) for line in streamed.splitlines() if line.startswith("data:")]
        assert len(chunks) > 2 and chunks[-1]["usage"]["completion_tokens"] > 0

        log = causal_run / "serve" / "requests.jsonl"
        # A streamed answer is logged once its last chunk has gone out: after the client has it.
        wait_for(lambda: len(read_jsonl(log)) >= 2, timeout=30, what="both requests in the log")
        records = read_jsonl(log)
        assert [r["stream"] for r in records] == [False, True]
        for record in records:
            assert record["status"] == 200 and record["endpoint"] == "/v1/chat/completions"
            assert record["prompt_tokens"] > 5 and record["completion_tokens"] > 0 and record["latency_s"] > 0
            assert "prompt" not in record and "messages" not in record  # not without --log-prompts

        notes = run_notes(list_runs(causal_run.parent))
        assert any(f"served at {started.url}" in note for note in notes), notes

        result = serving.check_server(causal_run, count=3)
        assert result.passed, result.to_json()
        assert len(result.examples) == 3 and all(e.expected for e in result.examples)

        serving.wait_ready(f"http://127.0.0.1:{other_port}", other, tmp_path / "tampered.log", 300)
        bad = serving.check_server(causal_run, url=f"http://127.0.0.1:{other_port}", count=3)
        assert not bad.passed
        first = bad.first_difference
        assert first is not None and first.row_id == result.examples[0].row_id
        from tuner_tui.deploy.commands import _print_check

        with pytest.raises(serving.CheckFailed, match=f"held-out row {first.row_id}"):
            _print_check(bad)

        with pytest.raises(TunerError, match="already being served"):
            serving.start_server(causal_run, port=free_port(), engine="transformers")
        with pytest.raises(TunerError, match=f"Port {other_port} on 127.0.0.1 is in use"):
            serving.check_port("127.0.0.1", other_port)

        serving.stop_server(causal_run)
        wait_for(lambda: started.proc.poll() is not None, 30, "the server to exit")
        assert json.loads((causal_run / "serve" / "state.json").read_text())["phase"] == "stopped"
        assert serving.served(causal_run) is None
        with pytest.raises(TunerError, match="not being served"):
            serving.stop_server(causal_run)
    finally:
        for proc in procs:
            kill_group(proc)


def test_engine_choice_and_vllm_path() -> None:
    with pytest.raises(TunerError, match="--engine vllm needs a CUDA GPU"):
        serving.choose_engine("vllm", has_gpu=lambda: False)
    with pytest.raises(TunerError, match="not an engine"):
        serving.choose_engine("tgi")
    assert serving.choose_engine("auto", has_gpu=lambda: False) == "transformers"
    from tuner_tui.deploy.server import MIDDLEWARE, vllm_command

    lora = vllm_command("/base", "127.0.0.1", 8000, "run-1", lora="run-1=/run/adapter", max_lora_rank=8,
                        chat_template="/run/adapter/chat_template.jinja")  # fmt: skip
    assert lora[:3] == ["vllm", "serve", "/base"]
    assert lora[lora.index("--lora-modules") + 1] == "run-1=/run/adapter" and "--enable-lora" in lora
    assert lora[lora.index("--middleware") + 1] == MIDDLEWARE
    assert lora[lora.index("--chat-template") + 1].endswith("chat_template.jinja")
    merged = vllm_command("/merged", "127.0.0.1", 8000, "run-1")
    assert "--enable-lora" not in merged and merged[merged.index("--served-model-name") + 1] == "run-1"


def test_serving_refuses_runs_that_are_not_completed_and_classifiers(
    causal_run: Path, classifier_run: Path, tmp_path: Path
) -> None:
    from tuner_tui.deploy.artifacts import NotCompleted

    copy = tmp_path / "run"
    shutil.copytree(causal_run, copy, ignore=shutil.ignore_patterns("serve", "checkpoints"))
    state = json.loads((copy / "state.json").read_text())
    (copy / "state.json").write_text(json.dumps({**state, "phase": "failed"}))
    with pytest.raises(NotCompleted, match=r"the run is 'failed', not 'completed'.*tuner run --resume"):
        serving.start_server(copy, port=free_port())
    with pytest.raises(TunerError, match="is a classifier"):
        serving.start_server(classifier_run, port=free_port())
    with pytest.raises(TunerError, match="not being served, so there is nothing to check"):
        serving.check_server(classifier_run)
