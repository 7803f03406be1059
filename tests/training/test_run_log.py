"""What `train` tells the run's log about the data, checked against the data itself."""

from __future__ import annotations

import json
from pathlib import Path

from tests.modeling.helpers import train_in_process
from tests.tiny import alpaca_rows, write_jsonl, write_recipe


def test_data_line_counts_loaded_and_cleaned_rows_and_splits_that_sum_to_them(
    tiny_assets, tmp_path: Path
) -> None:
    rows = alpaca_rows(64)
    unique = len({json.dumps(r, sort_keys=True) for r in rows})
    assert unique < len(rows)  # the exact-duplicate step below removes some rows
    data = write_jsonl(tmp_path / "data.jsonl", rows)
    recipe = write_recipe(
        tmp_path / "recipe.toml",
        data,
        tiny_assets["model"],
        extra='[[data.cleaning]]\nop = "dedup_exact"\n',
        max_steps=1,
    )
    outcome, _, events = train_in_process(recipe, tmp_path / "runs")
    (line,) = [e for e in events if e["type"] == "log" and e["message"].startswith("Data:")]
    splits = {name: len(part) for name, part in outcome.data.source.splits.items()}
    assert sum(splits.values()) == unique
    assert line["message"].startswith(
        f"Data: {len(rows)} rows loaded, {unique} after cleaning, as 'alpaca' -> train {splits['train']}, "
        f"validation {splits['validation']}, test {splits['test']}"
    )
    assert (line["rows_loaded"], line["rows_cleaned"], line["splits"]) == (len(rows), unique, splits)


def test_data_line_names_the_examples_tokenization_dropped_per_split(tiny_assets, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from tuner_tui.recipe import Recipe
    from tuner_tui.training.examples import prepare_data

    rows = [{"instruction": "word " * 200, "input": "", "output": "cut off"}] * 2
    rows += [{"instruction": "hi", "input": "", "output": "short"}] * 8
    recipe = Recipe()
    recipe.data.path = str(write_jsonl(tmp_path / "d.jsonl", rows))
    recipe.data.validation_fraction, recipe.data.test_fraction = 0.0, 0.0
    recipe.training.max_length = 32
    prepared = prepare_data(recipe, AutoTokenizer.from_pretrained(tiny_assets["model"]))
    assert prepared.split_rows == {"train": 10} and prepared.dropped == {"train": 2}
    assert prepared.summary() == (
        "Data: 10 rows as 'alpaca' -> train 10, validation 0, test 0; "
        "2 train examples dropped (response beyond max_length)"
    )
