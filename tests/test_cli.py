"""The headless commands as a user runs them: output, JSON contracts, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

TUNER = [sys.executable, "-m", "tuner_tui.cli"]
JSON_KEYS = {
    "format",
    "rows",
    "fields",
    "exact_duplicates",
    "near_duplicate_clusters",
    "pii",
    "char_lengths",
    "token_lengths",
    "labels",
}


def tuner(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*TUNER, *args], capture_output=True, text=True, timeout=300)


def test_inspect_json_has_the_contract_keys(tmp_path: Path) -> None:
    data = tmp_path / "tickets.jsonl"
    rows = [
        {"text": f"refund for order {i}, mail me at ann{i}@example.com", "label": "refund"} for i in range(6)
    ]
    rows += [{"text": "my card was stolen", "label": "card"}] * 3
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = tuner("inspect", str(data), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert JSON_KEYS <= report.keys()
    assert report["format"] == "classification" and report["rows"] == 9
    assert report["fields"] == {"text": "text", "label": "label"}
    assert report["exact_duplicates"] == 2 and report["pii"]["email"] == 6
    assert report["labels"] == {"refund": 6, "card": 3}
    assert {"min", "p50", "p95", "max"} <= report["token_lengths"].keys()


def test_inspect_renders_tables_and_uses_the_recipe_tokenizer(tiny_assets) -> None:
    from tests.tiny import write_recipe

    recipe = write_recipe(
        tiny_assets["data"].with_name("inspect-recipe.toml"), tiny_assets["data"], tiny_assets["model"]
    )
    result = tuner("inspect", str(tiny_assets["data"]), "--recipe", str(recipe))
    assert result.returncode == 0, result.stderr
    assert "alpaca" in result.stdout and "tokenizer" in result.stdout
    assert "whitespace" not in result.stdout.split("tokens:")[1].splitlines()[0]


def test_inspect_bad_line_names_file_and_line_and_skip_counts_it(tmp_path: Path) -> None:
    data = tmp_path / "broken.jsonl"
    data.write_text('{"text": "fine"}\n{"text": broken\n{"text": "also fine"}\n')
    result = tuner("inspect", str(data))
    assert result.returncode == 2
    assert f"{data}:2" in result.stderr and "--skip-bad-rows" in result.stderr
    assert "Traceback" not in result.stderr
    skipped = tuner("inspect", str(data), "--skip-bad-rows", "--json")
    assert skipped.returncode == 0, skipped.stderr
    assert json.loads(skipped.stdout)["rows"] == 2


def test_inspect_missing_path_is_a_clear_error(tmp_path: Path) -> None:
    result = tuner("inspect", str(tmp_path / "nope.jsonl"))
    assert result.returncode == 2 and "does not exist" in result.stderr


def test_runs_lists_nothing_in_an_empty_folder(tmp_path: Path) -> None:
    result = tuner("runs", "--runs-dir", str(tmp_path))
    assert result.returncode == 0 and "No runs" in result.stdout


def test_attach_and_stop_on_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    for command in ("attach", "stop", "eval"):
        result = tuner(command, str(tmp_path))
        assert result.returncode == 2, (command, result.stderr)
        assert "not a run directory" in result.stderr


ESTIMATE_KEYS = {"total_bytes", "device_bytes", "verdict", "breakdown", "trainable_params"}


def test_estimate_json_contract(tiny_recipe) -> None:
    result = tuner("estimate", str(tiny_recipe()), "--json")
    assert result.returncode == 0, result.stderr
    estimate = json.loads(result.stdout)
    assert ESTIMATE_KEYS <= estimate.keys()
    assert estimate["verdict"] in ("fits", "tight", "won't-fit")
    assert sum(estimate["breakdown"].values()) == estimate["total_bytes"]


def test_doctor_exits_2_when_the_recipe_cannot_run(tiny_recipe, tmp_path: Path) -> None:
    good = tuner("doctor", str(tiny_recipe()), "--runs-dir", str(tmp_path))
    assert good.returncode == 0, good.stdout + good.stderr
    broken = tiny_recipe()
    broken.write_text(broken.read_text().replace("alpaca.jsonl", "missing.jsonl"))
    result = tuner("doctor", str(broken), "--runs-dir", str(tmp_path))
    assert result.returncode == 2
    assert "dataset" in result.stdout and "blocking" in result.stdout


def _undetectable_csv(tmp_path: Path) -> Path:
    """Columns no detector knows; two abstracts repeated with another label."""
    data = tmp_path / "abstracts.csv"
    rows = [f"abstract number {i} about the heart,{1 + i % 2}" for i in range(8)]
    rows += ["abstract number 0 about the heart,5", "abstract number 1 about the heart,3"]
    data.write_text("medical_abstract,condition\n" + "\n".join(rows) + "\n")
    return data


def test_inspect_flags_format_and_field_inspect_data_without_a_recipe(tmp_path: Path) -> None:
    data = _undetectable_csv(tmp_path)
    refused = tuner("inspect", str(data), "--json")
    assert refused.returncode == 2 and "Cannot detect the data format" in refused.stderr
    assert "--format classification --field text=medical_abstract --field label=condition" in refused.stderr
    result = tuner(
        "inspect", str(data), "--json", "--format", "classification",
        "--field", "text=medical_abstract", "--field", "label=condition",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["format"] == "classification"
    assert report["fields"] == {"text": "medical_abstract", "label": "condition"}
    assert report["label_conflicts"]["texts"] == 2 and report["label_conflicts"]["rows"] == 4
    assert report["length_unit"] == "words" and report["token_lengths"]["unit"] == "words"


def test_inspect_flags_bad_values_name_the_flag_and_the_fix(tmp_path: Path) -> None:
    data = _undetectable_csv(tmp_path)
    cls = ("--format", "classification")
    cases = [
        (("--format", "classificaton"), "--format 'classificaton' is not a data format. Did you mean"),
        ((*cls, "--field", "text"), "--field 'text' must be ROLE=COLUMN"),
        ((*cls, "--field", "txt=medical_abstract"), "'txt' is not a role of the classification format"),
        ((*cls, "--field", "text=abstract"), f"--field text=abstract: {data} has no column 'abstract'"),
        ((*cls, "--field", "text=medical_abstract"), "Add --field label=<column>"),
    ]
    for args, expected in cases:
        result = tuner("inspect", str(data), *args)
        assert result.returncode == 2, (args, result.stderr)
        assert expected in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr  # one paragraph


def test_inspect_words_not_tokens_without_a_tokenizer(tmp_path: Path) -> None:
    data = tmp_path / "notes.jsonl"
    data.write_text("".join(json.dumps({"text": f"note {i} has five words"}) + "\n" for i in range(5)))
    result = tuner("inspect", str(data))
    assert result.returncode == 0, result.stderr
    assert "words per example" in result.stdout and "tokens per example" not in result.stdout
    assert "words: whitespace words (no tokenizer given)" in " ".join(result.stdout.split())
