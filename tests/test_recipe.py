"""The recipe: round trips keep comments, every bad input names its key and exits 2."""

from __future__ import annotations

import difflib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tuner_tui.recipe import (
    Objective,
    Recipe,
    RecipeError,
    dumps_recipe,
    field_help,
    load_recipe,
    parse_document,
    parse_recipe,
    read_recipe,
    save_recipe,
)

GOOD = """\
# Clinical note summariser. Comments like this one must survive a save.
schema_version = 1

[project]
name = "notes"          # short name
domain = "clinical notes"
seed = 7

[[objectives]]
metric = "rouge_l"
target = 0.4

[data]
path = "data/notes.jsonl"   # relative to this file
format = "alpaca"
# Drop empty rows first.
[[data.cleaning]]
op = "drop_empty"

[model]
name_or_path = "HuggingFaceTB/SmolLM2-135M-Instruct"
revision = "main"

[method]
type = "lora"
r = 8

[training]
learning_rate = 2e-4  # peak
batch_size = 4
"""


def test_round_trip_one_value_is_a_one_line_diff(tmp_path: Path) -> None:
    path = tmp_path / "recipe.toml"
    path.write_text(GOOD)
    recipe, problems, document = read_recipe(path)
    assert problems == []
    recipe.training.batch_size = 16
    save_recipe(recipe, path, document)
    after = path.read_text()
    diff = [
        line
        for line in difflib.unified_diff(GOOD.splitlines(), after.splitlines(), lineterm="", n=0)
        if line.startswith(("+", "-")) and not line.startswith(("+++", "---"))
    ]
    assert diff == ["-batch_size = 4", "+batch_size = 16"]
    assert "# Clinical note summariser. Comments like this one must survive a save." in after
    assert 'name = "notes"          # short name' in after


def test_unchanged_save_is_byte_identical(tmp_path: Path) -> None:
    path = tmp_path / "recipe.toml"
    path.write_text(GOOD)
    recipe, _, document = read_recipe(path)
    save_recipe(recipe, path, document)
    assert path.read_text() == GOOD


def test_new_recipe_is_commented_and_loads_back_equal(tmp_path: Path) -> None:
    recipe = Recipe()
    recipe.data.path = "x.jsonl"
    recipe.model.name_or_path = "m"
    recipe.model.task = "sequence_classification"
    recipe.objectives = [Objective("accuracy", 0.85)]
    recipe.data.cleaning = [{"op": "dedup_near", "threshold": 0.8}]
    text = dumps_recipe(recipe)
    assert "# Peak learning rate." in text
    again, problems = parse_recipe(parse_document(text, "mem"))
    assert problems == []
    assert again == recipe


def test_hash_ignores_formatting_comments_order_and_defaults(tmp_path: Path) -> None:
    a, _ = parse_recipe(parse_document(GOOD, "a"))
    reordered = """
[training]
batch_size = 4
learning_rate = 0.0002
epochs = 3.0
[model]
revision = "main"
name_or_path = "HuggingFaceTB/SmolLM2-135M-Instruct"
[method]
r = 8
[data]
format = "alpaca"
path = "data/notes.jsonl"
cleaning = [{op = "drop_empty"}]
[project]
seed = 7
domain = "clinical notes"
name = "notes"
[[objectives]]
target = 0.4
metric = "rouge_l"
"""
    b, _ = parse_recipe(parse_document(reordered, "b"))
    assert a.hash() == b.hash()
    b.training.batch_size = 5
    assert a.hash() != b.hash()
    b.training.batch_size = 4
    b.environment = {"python": "3.11"}
    assert a.hash() == b.hash()


def test_objective_direction() -> None:
    assert Objective("accuracy", 0.8).higher_is_better
    assert not Objective("perplexity", 10.0).higher_is_better


def test_field_help_is_the_metadata() -> None:
    assert field_help("training", "learning_rate") == "Peak learning rate."


MINIMAL = """schema_version = 1
[data]
path = "d.jsonl"
[model]
name_or_path = "m"
"""

# (recipe text, key path named in the error, a phrase of the message)
BAD_RECIPES = {
    "syntax_error": ("[training\nbatch_size = 4\n", "line 1", "TOML"),
    "unclosed_string": (MINIMAL + '[project]\nname = "x\n', "line", "TOML"),
    "wrong_type_int": (MINIMAL + "[training]\nbatch_size = 'eight'\n", "training.batch_size", "whole number"),
    "float_for_int": (MINIMAL + "[training]\nmax_steps = 1.5\n", "training.max_steps", "whole number"),
    "unknown_key": (
        MINIMAL + "[training]\nbatch_sise = 4\n",
        "training.batch_sise",
        "Did you mean 'batch_size'",
    ),
    "unknown_section": (MINIMAL + "[trainig]\nepochs = 1\n", "trainig", "Did you mean 'training'"),
    "lr_out_of_range": (
        MINIMAL + "[training]\nlearning_rate = -0.001\n",
        "training.learning_rate",
        "greater than 0",
    ),
    "lr_too_large": (MINIMAL + "[training]\nlearning_rate = 5.0\n", "training.learning_rate", "at most 1"),
    "negative_batch": (MINIMAL + "[training]\nbatch_size = -2\n", "training.batch_size", "at least 1"),
    "unknown_method": (MINIMAL + "[method]\ntype = 'lorra'\n", "method.type", "Did you mean 'lora'"),
    "missing_data_path": ("schema_version = 1\n[model]\nname_or_path = 'm'\n", "data.path", "is missing"),
    "missing_model": ("schema_version = 1\n[data]\npath = 'd.jsonl'\n", "model.name_or_path", "is missing"),
    "trust_remote_code_string": (
        MINIMAL.replace('name_or_path = "m"', 'name_or_path = "m"\ntrust_remote_code = "true"'),
        "model.trust_remote_code",
        "without quotes",
    ),
    "trust_remote_code_unpinned": (
        MINIMAL.replace('name_or_path = "m"', 'name_or_path = "m"\ntrust_remote_code = true'),
        "model.trust_remote_code",
        "revision",
    ),
    "bad_task": (
        MINIMAL.replace('name_or_path = "m"', 'name_or_path = "m"\ntask = "chat"'),
        "model.task",
        "causal_lm",
    ),
    "bad_dtype": (
        MINIMAL.replace('name_or_path = "m"', 'name_or_path = "m"\ndtype = "fp8"'),
        "model.dtype",
        "bfloat16",
    ),
    "bad_objective_metric": (
        MINIMAL + "[[objectives]]\nmetric = 'acuracy'\ntarget = 0.9\n",
        "objectives[0].metric",
        "accuracy",
    ),
    "objective_target_string": (
        MINIMAL + "[[objectives]]\nmetric = 'accuracy'\ntarget = 'high'\n",
        "objectives[0].target",
        "a number",
    ),
    "fractions_too_big": (
        MINIMAL.replace(
            'path = "d.jsonl"', 'path = "d.jsonl"\nvalidation_fraction = 0.5\ntest_fraction = 0.45'
        ),
        "data.test_fraction",
        "leaves almost nothing",
    ),
    "bad_cleaning_op": (MINIMAL + "[[data.cleaning]]\nop = 'dedupe'\n", "data.cleaning[0].op", "dedup_exact"),
    "cleaning_without_op": (
        MINIMAL + "[[data.cleaning]]\nthreshold = 0.8\n",
        "data.cleaning[0].op",
        "missing",
    ),
    "section_is_a_value": (
        "schema_version = 1\ntraining = 3\n" + MINIMAL.split("\n", 1)[1],
        "training",
        "expected a table",
    ),
    "target_modules_number": (
        MINIMAL + "[method]\ntarget_modules = 3\n",
        "method.target_modules",
        "list of strings",
    ),
    "bad_schema_version": (
        MINIMAL.replace("schema_version = 1", "schema_version = 2"),
        "schema_version",
        "schema 1",
    ),
    "metric_for_the_wrong_task": (
        MINIMAL.replace('name_or_path = "m"', 'name_or_path = "m"\ntask = "sequence_classification"')
        + "[evaluation]\nmetrics = ['accuracy', 'bleu']\n",
        "evaluation.metrics[1]",
        "does not fit model.task",
    ),
    "unknown_evaluation_metric": (
        MINIMAL + "[evaluation]\nmetrics = ['bertscore']\n",
        "evaluation.metrics[0]",
        "Choose one of",
    ),
    "bias_group_unknown": (MINIMAL + "[bias]\ngroups = ['gender', 'hair']\n", "bias.groups[1]", "religion"),
    "classification_with_chat_format": (
        MINIMAL.replace('path = "d.jsonl"', 'path = "d.jsonl"\nformat = "alpaca"').replace(
            'name_or_path = "m"', 'name_or_path = "m"\ntask = "sequence_classification"'
        ),
        "data.format",
        "classification",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_RECIPES))
def test_bad_recipe_is_reported_with_its_key(case: str, tmp_path: Path) -> None:
    text, key, phrase = BAD_RECIPES[case]
    path = tmp_path / "recipe.toml"
    path.write_text(text)
    with pytest.raises(RecipeError) as caught:
        load_recipe(path)
    message = str(caught.value)
    assert key in message
    assert phrase in message
    assert str(path) in message
    assert "Traceback" not in message


def test_validate_reports_all_problems_at_once_and_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "recipe.toml"
    path.write_text(
        MINIMAL + "[training]\nbatch_size = -1\nlearning_rate = 0\nbatch_sise = 3\n[method]\ntype = 'x'\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "tuner_tui.cli", "validate", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 2
    for key in ("training.batch_size", "training.learning_rate", "training.batch_sise", "method.type"):
        assert key in result.stderr
    assert "4 problems" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize("case", sorted(BAD_RECIPES))
def test_validate_cli_exit_code_for_bad_input(case: str, tmp_path: Path) -> None:
    path = tmp_path / "recipe.toml"
    path.write_text(BAD_RECIPES[case][0])
    result = subprocess.run(
        [sys.executable, "-m", "tuner_tui.cli", "validate", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 2, result.stderr
    assert BAD_RECIPES[case][1] in result.stderr
    assert "Traceback" not in result.stderr


def test_validate_good_recipe_exits_0(tmp_path: Path) -> None:
    path = tmp_path / "recipe.toml"
    path.write_text(GOOD)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "notes.jsonl").write_text('{"instruction": "Summarise.", "output": "Fine."}\n')
    # Online, a hub model is fetched at run time: validate cannot (and need not) see it here.
    online = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    result = subprocess.run(
        [sys.executable, "-m", "tuner_tui.cli", "validate", str(path)],
        capture_output=True,
        text=True,
        env=online,
    )
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_missing_recipe_file_is_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tuner_tui.cli", "validate", str(tmp_path / "nope.toml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "does not exist" in result.stderr


def test_deterministic_is_a_choice_in_the_hash_and_the_trainer(tmp_path: Path) -> None:
    """Off, the run trades bit-identical re-runs for speed: another recipe (another hash), and
    the Trainer gets no full determinism. On (the default), recipes hash as before the key."""
    from tuner_tui.runs.layout import RunDir
    from tuner_tui.training.run import training_values

    on, _ = parse_recipe(parse_document(GOOD, "a"))
    off, _ = parse_recipe(
        parse_document(GOOD.replace("[training]\n", "[training]\ndeterministic = false\n"), "b")
    )
    assert on.training.deterministic and not off.training.deterministic
    assert on.hash() != off.hash()
    explicit, _ = parse_recipe(
        parse_document(GOOD.replace("[training]\n", "[training]\ndeterministic = true\n"), "c")
    )
    assert explicit.hash() == on.hash()
    run = RunDir(tmp_path)
    assert training_values(on, run, "cpu", False)["full_determinism"] is True
    assert training_values(off, run, "cpu", False)["full_determinism"] is False
