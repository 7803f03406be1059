"""`tuner chat` (the run's own template, streaming, --compare, cancel), the JSON-lines generation
process behind the wizard's Try it panel, and `tuner predict` (both tasks, resumable)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.deploy.conftest import classifier_rows, read_jsonl
from tests.tiny import write_jsonl

pytestmark = pytest.mark.slow
QUESTION = [{"role": "user", "content": "What is the capital of Peru?"}]


def test_chat_streams_with_the_runs_template_and_cancels(causal_run: Path) -> None:
    from tuner_tui.deploy.generate import RunModels, recipe_settings
    from tuner_tui.evaluation.scoring import CausalScorer

    models = RunModels(causal_run)
    assert models.chat_template == "fallback:alpaca"
    prompt = models.prompt(QUESTION)
    assert prompt == "### Instruction:\nWhat is the capital of Peru?\n\n### Response:\n"
    settings = recipe_settings(models.recipe, max_new_tokens=12)
    pieces = list(models.stream(QUESTION, "tuned", settings))
    assert len(pieces) > 1  # streamed, not one block
    offline = CausalScorer(models.tuned, models.tokenizer).generate([prompt], max_new_tokens=12)[0]
    assert "".join(pieces).strip() == offline.strip() and offline.startswith("The capital")
    base = models.answer(QUESTION, "base", settings)
    assert base.text != "".join(pieces)  # the adapter switched off: another model
    seen: list[str] = []
    cut = models.answer(QUESTION, "tuned", settings, on_text=seen.append, cancelled=lambda: bool(seen))
    assert cut.cancelled and cut.tokens < len(models.tokenizer(offline)["input_ids"])

    from tuner_tui.cli import app

    result = CliRunner().invoke(app, ["chat", str(causal_run), "--compare", "--max-new-tokens", "8"],
                                input="What is the capital of Peru?\n/quit\n")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "base model" in result.output and "tuned model" in result.output
    assert "The capital" in result.output


def test_the_generation_process_streams_base_and_tuned_and_classifies(
    causal_run: Path, classifier_run: Path
) -> None:
    from tuner_tui.deploy.chat_client import GenerationProcess

    process = GenerationProcess(causal_run, extra_args=["--max-new-tokens", "8"])
    try:
        events = process.events()
        ready = next(events)
        assert ready["event"] == "ready", ready
        assert ready["task"] == "causal_lm" and ready["models"] == ["base", "tuned"]
        rid = process.ask(QUESTION)
        got: list[dict] = []
        for event in events:
            got.append(event)
            if event["event"] == "finished":
                break
        tokens = [e for e in got if e["event"] == "token"]
        done = {e["model"]: e for e in got if e["event"] == "done"}
        assert {e["model"] for e in tokens} <= {"base", "tuned"} and set(done) == {"base", "tuned"}
        assert all(e["id"] == rid for e in got)
        assert "".join(e["text"] for e in tokens if e["model"] == "tuned") == done["tuned"]["text"]
        assert done["tuned"]["text"].startswith("The capital")
    finally:
        process.close()
    assert process.proc.poll() is not None

    from tuner_tui.deploy.generate import RunModels

    models = RunModels(classifier_run)
    for which in ("base", "tuned"):
        probs = models.probabilities("quarterly profit and growth with gain", which)
        assert set(probs) == {"down", "up"} and abs(sum(probs.values()) - 1) < 1e-5


def test_predict_classifier_rows_and_resume(classifier_run: Path, tmp_path: Path) -> None:
    import pandas as pd

    from tuner_tui.cli import app
    from tuner_tui.deploy.predict import predict_file

    rows = classifier_rows(10, seed=5)
    source = tmp_path / "inputs.csv"
    pd.DataFrame([{"id": f"r{i}", "text": r["text"]} for i, r in enumerate(rows)]).to_csv(source, index=False)
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(app, ["predict", str(classifier_run), str(source), "--out", str(out),
                                      "--batch-size", "4"])  # fmt: skip
    assert result.exit_code == 0, result.output
    written = read_jsonl(out)
    assert [r["row"] for r in written] == list(range(10)) and [r["id"] for r in written] == [
        f"r{i}" for i in range(10)
    ]
    for row in written:
        assert row["label"] in ("up", "down") and set(row["probabilities"]) == {"up", "down"}
        assert abs(sum(row["probabilities"].values()) - 1) < 1e-4
        assert row["label"] == max(row["probabilities"], key=row["probabilities"].get)
    # Killed after three rows, mid-line: the rerun drops the cut line and writes the rest once.
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:3]) + lines[3][:10])
    parquet = tmp_path / "inputs.parquet"
    pd.read_csv(source).to_parquet(parquet)
    summary = predict_file(classifier_run, parquet, out, batch_size=4)
    assert (summary.skipped, summary.written) == (3, 7)
    again = read_jsonl(out)
    assert [r["row"] for r in again] == list(range(10))
    assert [r["label"] for r in again] == [r["label"] for r in written]

    from tuner_tui.errors import TunerError

    with pytest.raises(TunerError, match="--field body: the input has no such column"):
        predict_file(classifier_run, source, tmp_path / "x.jsonl", field="body")


def test_predict_causal_completions(causal_run: Path, tmp_path: Path) -> None:
    from tuner_tui.deploy.predict import predict_file

    source = write_jsonl(tmp_path / "q.jsonl", [{"instruction": "What is the capital of Peru?"},
                                                 {"instruction": "Capital of Japan?"}])  # fmt: skip
    summary = predict_file(causal_run, source, batch_size=2)
    assert summary.out == tmp_path / "q.predictions.jsonl" and summary.column == "instruction"
    rows = read_jsonl(summary.out)
    assert [r["row"] for r in rows] == [0, 1] and all(r["completion"].startswith("The capital") for r in rows)
    json.dumps(rows)
