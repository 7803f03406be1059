"""`tuner compare` on run directories written by hand (reports and per-example outputs): the JSON
contract, the statistics' inputs, and the refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tuner_tui.cli import app
from tuner_tui.errors import TunerError
from tuner_tui.iterate.compare import compare_runs

ROWS = 60


def fake_run(
    root: Path, recipe_text: str, correct: list[bool], ids: list[str] | None = None, fp: str = "sha256:x"
) -> Path:
    root.mkdir(parents=True)
    (root / "recipe.toml").write_text(recipe_text, encoding="utf-8")
    (root / "state.json").write_text(json.dumps({"phase": "completed", "step": 3}), encoding="utf-8")
    events = [
        {"seq": 1, "time": "2026-01-01T00:00:00.000Z", "type": "status", "phase": "queued"},
        {
            "seq": 2,
            "time": "2026-01-01T00:00:05.000Z",
            "type": "metric",
            "step": 3,
            "loss": 1.5,
            "tokens_seen": 900,
        },
        {
            "seq": 3,
            "time": "2026-01-01T00:00:06.000Z",
            "type": "log",
            "train_runtime": 4.5,
            "tokens_seen": 900,
        },
        {"seq": 4, "time": "2026-01-01T00:00:09.000Z", "type": "telemetry", "rss_bytes": 1 << 28, "gpus": []},
    ]
    (root / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    report = root / "report"
    report.mkdir()
    ids = ids or [f"{i:016x}" for i in range(ROWS)]
    rows = [
        {
            "row_id": i,
            "reference": "pos",
            "tuned": {"prediction": "pos" if c else "neg", "correct": c, "score": 0.9 if c else 0.2},
        }
        for i, c in zip(ids, correct, strict=True)
    ]
    (report / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    accuracy = sum(correct) / len(correct)
    (report / "report.json").write_text(json.dumps({
        "run_id": root.name, "task": "sequence_classification", "split": "test", "examples": ROWS,
        "metrics": {"tuned": {"accuracy": accuracy, "f1_macro": 0.5,
                              "confusion_matrix": {"labels": ["neg", "pos"], "matrix": [[0, 0], [0, 0]]}}},
        "predictions": {"file": "predictions.jsonl", "rows": ROWS, "data_fingerprint": fp,
                        "row_ids_sha256": "", "stable_ids": True},
    }), encoding="utf-8")  # fmt: skip
    return root


@pytest.fixture
def recipe_text(tiny_recipe) -> str:
    return Path(tiny_recipe()).read_text(encoding="utf-8")


def test_compare_json_contract(tmp_path: Path, recipe_text: str) -> None:
    a = fake_run(tmp_path / "a", recipe_text, [i % 2 == 0 for i in range(ROWS)])  # 50%
    b = fake_run(tmp_path / "b", recipe_text.replace("learning_rate = 0.01", "learning_rate = 0.001"),
                 [i % 10 != 0 for i in range(ROWS)])  # fmt: skip  # 90%
    out = CliRunner().invoke(app, ["compare", str(a), str(b), "--json"])
    assert out.exit_code == 0, out.output
    result = json.loads(out.output)
    assert {"recipe_diff", "cost", "metrics", "verdict", "disagreements"} <= set(result)
    assert result["recipe_diff"] == {"training.learning_rate": [0.01, 0.001]}
    acc = result["metrics"]["accuracy"]
    assert set(acc) >= {"a", "b", "difference", "ci_low", "ci_high", "p_value", "n", "verdict"}
    assert acc["a"] == pytest.approx(0.5) and acc["b"] == pytest.approx(0.9) and acc["n"] == ROWS
    assert acc["ci_low"] <= acc["difference"] <= acc["ci_high"]
    assert acc["p_value"] < 0.05 and acc["verdict"] == "B better" == result["verdict"]
    changes = [d["change"] for d in result["disagreements"]]  # B fixed the 30 odd rows, broke 6
    assert changes == ["B right, A wrong"] * 30 + ["A right, B wrong"] * 6
    cost = result["cost"]["a"]
    assert cost["steps"] == 3 and cost["tokens"] == 900 and cost["wall_s"] == pytest.approx(9.0)
    assert cost["tokens_per_s"] == pytest.approx(200.0) and cost["peak_rss_bytes"] == 1 << 28


def test_same_recipe_gives_no_detectable_difference(tmp_path: Path, recipe_text: str) -> None:
    correct = [i % 3 != 0 for i in range(ROWS)]
    a = fake_run(tmp_path / "a", recipe_text, correct)
    b = fake_run(tmp_path / "b", recipe_text, correct[1:] + correct[:1])
    result = compare_runs([a, b], metric="accuracy")
    assert result["recipe_diff"] == {}
    assert result["verdict"] == "no detectable difference at 5%"


def test_refusals(tmp_path: Path, recipe_text: str) -> None:
    correct = [True] * ROWS
    a = fake_run(tmp_path / "a", recipe_text, correct)
    other_rows = fake_run(tmp_path / "b", recipe_text, correct, ids=[f"{i + 7:016x}" for i in range(ROWS)])
    other_data = fake_run(tmp_path / "c", recipe_text, correct, fp="sha256:y")
    with pytest.raises(TunerError, match="not evaluated on the same test rows.*--on"):
        compare_runs([a, other_rows])
    with pytest.raises(TunerError, match="their data differs"):
        compare_runs([a, other_data])
    with pytest.raises(TunerError, match="not a known metric. Did you mean 'accuracy'"):
        compare_runs([a, fake_run(tmp_path / "d", recipe_text, correct)], metric="acuracy")
    old = fake_run(tmp_path / "old", recipe_text, correct)
    (old / "report" / "predictions.jsonl").unlink()
    with pytest.raises(TunerError, match="tuner eval .* or pass `--on RUN`"):
        compare_runs([a, old])
    (old / "report" / "report.json").unlink()
    with pytest.raises(TunerError, match="has no evaluation report yet"):
        compare_runs([a, old])
    with pytest.raises(TunerError, match="at least two"):
        compare_runs([a])


def test_sweep_set_syntax_is_checked(tiny_recipe, tmp_path: Path) -> None:
    recipe = tiny_recipe()
    runner = CliRunner()
    cases = [
        (["--set", "training.learning_rate"], "is not KEY=VALUES"),
        (["--set", "training.learnin_rate=1e-3,1e-4"], "Did you mean 'learning_rate'"),
        (["--set", "training.learning_rate=-1,1e-4"], "must be greater than 0"),
        (["--set", "training.learning_rate=1e-5..1e-3:log"], "--search grid needs lists"),
        (["--set", "training.learning_rate=1e-3,1e-4", "--metric", "accuracy"], "not a metric of causal_lm"),
        ([], "at least one --set"),
    ]
    for extra, message in cases:
        out = runner.invoke(app, ["sweep", str(recipe), "--runs-dir", str(tmp_path), *extra])
        assert isinstance(out.exception, TunerError), (extra, out.output)
        assert message in str(out.exception), (extra, str(out.exception))
