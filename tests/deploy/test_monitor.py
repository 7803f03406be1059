"""`tuner monitor`: the statistics, the report on a classifier run (training-like inputs flag
nothing, foreign inputs flag drift), a requests log (latency, text checks not measured), the
presenter; and the request-log middleware on its own."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from tests.deploy.conftest import classifier_rows, read_jsonl
from tests.tiny import write_jsonl
from tuner_tui.deploy import monitor as m


def test_the_statistics() -> None:
    rng = np.random.default_rng(0)
    same = rng.normal(30, 5, 2000), rng.normal(30, 5, 500)
    assert m.length_psi(*same)[0] < 0.05 and m.ks_two_sample(*same)[0] < 0.1
    moved = rng.normal(30, 5, 2000), rng.normal(200, 30, 500)
    assert m.length_psi(*moved)[0] > 1 and m.ks_two_sample(*moved)[0] > 0.9
    assert m.psi(np.array([0.5, 0.5]), np.array([0.5, 0.5])) == 0
    assert m.unknown_share(["Profit rose", "profit FELL 3%"], {"profit", "rose"}) == pytest.approx(1 / 4)
    share, kinds = m.pii_share(["mail me at ann@example.com", "nothing here"])
    assert share == 0.5 and kinds == {"email": 1}
    check = m.label_check(["up"] * 9 + ["down"], ["up", "down"] * 50, ["down", "up"])
    assert check.drifted and "'down' 10% of predictions vs 50% of training labels" in check.words
    assert not m.label_check(["up", "down"] * 20, ["up", "down"] * 50, ["down", "up"]).drifted


@pytest.mark.slow
def test_monitor_flags_foreign_inputs_and_not_training_like_ones(
    classifier_run: Path, tmp_path: Path
) -> None:
    from tuner_tui.cli import app
    from tuner_tui.views.drift import print_report

    like = write_jsonl(tmp_path / "like.jsonl", classifier_rows(80, seed=9))
    report = m.monitor_run(classifier_run, like)
    assert report.source == "file" and report.inputs == 80 and not report.drift, report.to_json()
    names = [c.name for c in report.checks]
    assert names == ["token_length_psi", "token_length_ks", "unknown_words", "pii_rate", "label_distribution"]
    rng = random.Random(3)
    words = ["myocardial", "infarction", "patients", "randomized", "cohort", "biopsy", "renal", "tumour"]
    foreign = [{"text": " ".join(rng.choices(words, k=60)) + f" contact dr{i}@clinic.org"} for i in range(60)]
    report = m.monitor_run(classifier_run, write_jsonl(tmp_path / "foreign.jsonl", foreign))
    assert report.drift
    drifted = {c.name for c in report.checks if c.drifted}
    assert {"token_length_psi", "token_length_ks", "unknown_words", "pii_rate"} <= drifted
    out = Console(record=True, width=120)
    print_report(out, report.to_json())
    text = out.export_text()
    assert "DRIFT in" in text and "Unknown words" in text and "threshold" in text

    foreign_file = str(tmp_path / "foreign.jsonl")
    result = CliRunner().invoke(app, ["monitor", str(classifier_run), "--inputs", foreign_file, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output[result.output.index("{") :])["drift"] is True


@pytest.mark.slow
def test_monitor_reads_a_requests_log(causal_run: Path, tmp_path: Path) -> None:
    log = tmp_path / "requests.jsonl"
    records = [
        {"time": f"2026-12-02T10:00:{i:02d}.000Z", "endpoint": "/v1/chat/completions", "status": 200,
         "prompt_tokens": 30 + i % 3, "completion_tokens": 8, "latency_s": 0.1 * (i + 1)}
        for i in range(20)
    ]  # fmt: skip
    write_jsonl(log, records)
    report = m.monitor_run(causal_run, log)
    assert report.source == "requests" and report.inputs == 20
    assert report.latency is not None
    assert report.latency["p50_s"] == pytest.approx(1.05) and report.latency["p95_s"] == pytest.approx(1.905)
    assert report.latency["requests_per_s"] == pytest.approx(20 / 19)
    skipped = [c for c in report.checks if c.drifted is None]
    assert {c.name for c in skipped} == {"unknown_words", "pii_rate"}
    assert all("--log-prompts" in c.words for c in skipped)
    assert "token_length_psi" in [c.name for c in report.checks]


def test_the_request_log_middleware(tmp_path: Path) -> None:
    from tuner_tui.deploy.requestlog import RequestLogMiddleware

    answer = {
        "choices": [{"message": {"content": "hi"}}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 2},
    }

    async def app(scope, receive, send):  # noqa: ANN001 - a bare ASGI app
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": json.dumps(answer).encode()})

    async def call(middleware: RequestLogMiddleware, body: dict) -> None:
        async def receive():
            return {"type": "http.request", "body": json.dumps(body).encode(), "more_body": False}

        async def send(message):  # noqa: ANN001
            pass

        scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions"}
        await middleware(scope, receive, send)

    body = {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "my card 4111"}]}
    quiet, loud = tmp_path / "quiet.jsonl", tmp_path / "loud.jsonl"
    asyncio.run(call(RequestLogMiddleware(app, str(quiet), log_prompts=False), body))
    asyncio.run(call(RequestLogMiddleware(app, str(loud), log_prompts=True), body))
    (record,) = read_jsonl(quiet)
    assert (record["prompt_tokens"], record["completion_tokens"], record["status"]) == (7, 2, 200)
    assert record["latency_s"] >= 0 and "prompt" not in record
    assert read_jsonl(loud)[0]["prompt"] == "my card 4111"
