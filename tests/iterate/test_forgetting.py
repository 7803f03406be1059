"""A tiny causal run with [evaluation] general_data: forgetting figures and per-example outputs."""

from __future__ import annotations

import json
from pathlib import Path

from tests.waiting import wait_for
from tuner_tui.evaluation.report import render_markdown
from tuner_tui.runs.launcher import start_run
from tuner_tui.runs.state import TERMINAL_PHASES, read_state
from tuner_tui.views.evaluation_report import load_report, verdict_line


def test_general_data_gives_forgetting_figures_and_predictions(tiny_recipe, tmp_path: Path) -> None:
    general = tmp_path / "general.jsonl"
    texts = ["The river runs to the sea.", "A cat sat on the mat.", "Rain falls in spring."]
    general.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    recipe = tiny_recipe('[[objectives]]\nmetric = "general_perplexity_change"\ntarget = 10.0\n', max_steps=2)
    text = recipe.read_text().replace("max_samples = 8", f'max_samples = 8\ngeneral_data = "{general}"')
    recipe.write_text(text)
    run = start_run(recipe, tmp_path / "runs")
    wait_for(lambda: read_state(run.state).get("phase") in TERMINAL_PHASES, what="the run to end")
    assert read_state(run.state)["phase"] == "completed", run.log.read_text()[-3000:]
    report = json.loads((run.report / "report.json").read_text())
    forgetting = report["forgetting"]
    assert forgetting["texts"] == 3 and forgetting["tokens"] > 0
    change = forgetting["tuned_perplexity"] / forgetting["base_perplexity"] - 1
    assert forgetting["general_perplexity_change"] == report["metrics"]["tuned"]["general_perplexity_change"]
    assert abs(forgetting["general_perplexity_change"] - change) < 1e-9
    assert report["objectives"][0]["tuned"] == forgetting["general_perplexity_change"]
    assert "## Forgetting" in render_markdown(report)
    assert "Forgetting: General-domain perplexity" in str(
        verdict_line(load_report(run.report / "report.json"))
    )
    rows = [json.loads(line) for line in (run.report / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == report["predictions"]["rows"] == report["examples"]
    assert len({r["row_id"] for r in rows}) == len(rows)
    for row in rows:
        for model in ("tuned", "base"):
            assert {"prediction", "correct", "score", "nll", "tokens"} <= set(row[model])
    assert len((run.report / "general.jsonl").read_text().splitlines()) == 3
