"""Preference data: detecting pairs and KTO rows, TRL's row shapes, bad pairs, and inspect's pair findings.

The files copy the layouts of LLaMA-Factory's data/dpo_en_demo.json and data/kto_en_demo.json and
TRL's standard and conversational preference datasets, a few rows each, written here.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from tuner_tui.data.formats import TRAINABLE_FORMATS, resolve_format
from tuner_tui.data.load import load_data
from tuner_tui.data.preference import (
    PairCheck,
    drop_bad_pairs,
    kto_problems,
    preference_problems,
    to_trl_kto,
    to_trl_preference,
)
from tuner_tui.data.report import WHITESPACE_LABEL, inspect_dataset
from tuner_tui.errors import TunerError


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


# LLaMA-Factory's data/dpo_en_demo.json: the prompt turns in 'conversations', one reply per side.
LF_DPO = [
    {
        "conversations": [
            {"from": "system", "value": "You are a teacher."},
            {"from": "human", "value": "What is a noun?"},
        ],
        "chosen": {"from": "gpt", "value": "A word that names a person, place or thing."},
        "rejected": {"from": "gpt", "value": "A verb."},
    },
    {
        "conversations": [
            {"from": "human", "value": "Who wrote Pride and Prejudice?"},
            {"from": "gpt", "value": "Jane Austen"},
            {"from": "human", "value": "When was it published?"},
        ],
        "chosen": {"from": "gpt", "value": "In 1813."},
        "rejected": {"from": "gpt", "value": "Nobody knows."},
    },
]
# LLaMA-Factory's data/kto_en_demo.json: a conversation, its last turn the completion, and a bool.
LF_KTO = [
    {"messages": [user("Sum 2 and 2"), assistant("4")], "label": True},
    {
        "messages": [user("Capital of France?"), assistant("Paris"), user("And Spain?"), assistant("Rome")],
        "label": False,
    },
    {"messages": [user("Say hi"), assistant("Hi!")], "label": True},
]
TRL_STANDARD = [
    {"prompt": "The sky is", "chosen": " blue.", "rejected": " green."},
    {"prompt": "Two plus two is", "chosen": " four.", "rejected": " five."},
]
TRL_CONVERSATIONAL = [
    {
        "prompt": [user("What color is the sky?")],
        "chosen": [assistant("Blue.")],
        "rejected": [assistant("Green.")],
    },
]
TRL_IMPLICIT = [
    {
        "chosen": [user("What color is the sky?"), assistant("It is blue.")],
        "rejected": [user("What color is the sky?"), assistant("It is green.")],
    },
]


def write(path: Path, rows: list[dict], *, lines: bool = True) -> Path:
    if lines:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        path.write_text(json.dumps(rows, indent=2))  # a JSON array, as LLaMA-Factory ships its demos
    return path


def load(path: Path, fmt: str = "auto", fields: dict | None = None):
    dataset, _ = load_data(str(path))
    sample = dataset.select(range(min(len(dataset), 20))).to_list()
    return dataset, resolve_format(fmt, fields or {}, dataset.column_names, sample)


# ---- detection --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rows", "fmt", "fields", "evidence"),
    [
        (LF_DPO, "preference", {"prompt": "conversations", "chosen": "chosen", "rejected": "rejected"},
         "LLaMA-Factory sharegpt"),
        (TRL_STANDARD, "preference", {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected"},
         "TRL standard"),
        (TRL_CONVERSATIONAL, "preference", {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected"},
         "TRL conversational"),
        (TRL_IMPLICIT, "preference", {"chosen": "chosen", "rejected": "rejected"}, "implicit prompt"),
        (LF_KTO, "kto", {"messages": "messages", "label": "label"}, "KTO"),
        ([{"prompt": "Hi", "completion": "Hello", "label": False}], "kto",
         {"prompt": "prompt", "completion": "completion", "label": "label"}, "KTO"),
    ],
)  # fmt: skip
def test_preference_layouts_are_detected_with_their_fields(tmp_path, rows, fmt, fields, evidence) -> None:
    _, detection = load(write(tmp_path / "data.json", rows, lines=False))
    assert detection.format == fmt and detection.fields == fields
    assert evidence in detection.evidence[0]
    assert fmt in TRAINABLE_FORMATS


def test_look_alikes_keep_their_formats(tmp_path) -> None:
    """Plain sharegpt and messages stay SFT formats; a label of strings is not KTO's bool."""
    sharegpt = [{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}]
    assert load(write(tmp_path / "a.jsonl", sharegpt))[1].format == "sharegpt"
    assert (
        load(write(tmp_path / "b.jsonl", [{"messages": [user("hi"), assistant("yo")]}]))[1].format
        == "messages"
    )
    labelled = [{"prompt": "hi", "completion": "yo", "label": "good"}]
    assert load(write(tmp_path / "c.jsonl", labelled))[1].format == "prompt_completion"


def test_a_named_format_and_mapped_columns(tmp_path) -> None:
    lf = write(tmp_path / "lf.json", LF_DPO, lines=False)
    # format named in the recipe: the prompt is still found in 'conversations'
    assert load(lf, "preference")[1].fields["prompt"] == "conversations"
    renamed = [{"question": r["prompt"], "good": r["chosen"], "bad": r["rejected"]} for r in TRL_STANDARD]
    _, detection = load(
        write(tmp_path / "renamed.jsonl", renamed),
        fields={"prompt": "question", "chosen": "good", "rejected": "bad"},
    )
    assert detection.format == "preference" and detection.fields["chosen"] == "good"
    assert "'question'" in detection.evidence[0]
    with pytest.raises(TunerError, match="kto format needs a conversation"):
        resolve_format("kto", {}, ["text", "label"], [{"text": "a", "label": True}])
    with pytest.raises(TunerError, match="needs a column for 'rejected'"):
        resolve_format("preference", {}, ["prompt", "chosen"], [{}])


# ---- TRL rows ---------------------------------------------------------------------------------


def test_llama_factory_pairs_become_trl_conversational_rows(tmp_path) -> None:
    dataset, detection = load(write(tmp_path / "dpo_en_demo.json", LF_DPO, lines=False))
    rows = to_trl_preference(dataset, detection)
    assert rows.column_names == ["prompt", "chosen", "rejected"]
    assert rows[0] == {
        "prompt": [{"role": "system", "content": "You are a teacher."}, user("What is a noun?")],
        "chosen": [assistant("A word that names a person, place or thing.")],
        "rejected": [assistant("A verb.")],
    }
    assert [m["role"] for m in rows[1]["prompt"]] == ["user", "assistant", "user"]
    from trl.data_utils import is_conversational, maybe_extract_prompt

    # TRL takes the rows as they are: conversational, with nothing left to extract
    assert all(is_conversational(row) and maybe_extract_prompt(row) == row for row in rows)


def test_implicit_prompts_are_split_off(tmp_path) -> None:
    dataset, detection = load(write(tmp_path / "implicit.jsonl", TRL_IMPLICIT))
    assert to_trl_preference(dataset, detection)[0] == {
        "prompt": [user("What color is the sky?")],
        "chosen": [assistant("It is blue.")],
        "rejected": [assistant("It is green.")],
    }
    # a prompt column and answers that repeat it (TRL's maybe_extract_prompt case): repeated once only
    repeated = [{"prompt": [user("What color is the sky?")], **TRL_IMPLICIT[0]}]
    dataset, detection = load(write(tmp_path / "repeated.jsonl", repeated))
    assert to_trl_preference(dataset, detection)[0]["prompt"] == [user("What color is the sky?")]
    # text pairs without a prompt: the shared beginning, cut at a word boundary
    text = [
        {"chosen": "The sky is blue.", "rejected": "The sky is green."},
        {"chosen": "A cat", "rejected": "A car"},
    ]
    dataset, detection = load(write(tmp_path / "text.jsonl", text))
    assert to_trl_preference(dataset, detection).to_list() == [
        {"prompt": "The sky is", "chosen": " blue.", "rejected": " green."},
        {"prompt": "A", "chosen": " cat", "rejected": " car"},
    ]


def test_standard_pairs_stay_text(tmp_path) -> None:
    dataset, detection = load(write(tmp_path / "standard.jsonl", TRL_STANDARD))
    assert to_trl_preference(dataset, detection).to_list() == TRL_STANDARD


def test_kto_rows_become_trl_unpaired_rows(tmp_path) -> None:
    dataset, detection = load(write(tmp_path / "kto_en_demo.json", LF_KTO, lines=False))
    rows = to_trl_kto(dataset, detection)
    assert rows.column_names == ["prompt", "completion", "label"]
    assert rows[1] == {
        "prompt": [user("Capital of France?"), assistant("Paris"), user("And Spain?")],
        "completion": [assistant("Rome")],
        "label": False,
    }
    assert rows["label"] == [True, False, True]
    check = kto_problems(dataset, detection)
    assert (check.rows, check.usable, check.desirable, check.undesirable) == (3, 3, 2, 1)
    standard = [
        {"prompt": "Hi", "completion": " there", "label": True},
        {"prompt": "Yo", "completion": "", "label": False},
    ]
    dataset, detection = load(write(tmp_path / "kto.jsonl", standard))
    assert to_trl_kto(dataset, detection).to_list() == [standard[0]]


# ---- bad rows ---------------------------------------------------------------------------------

BAD_PAIRS = [
    {"prompt": "Good question", "chosen": "right", "rejected": "wrong"},
    {"prompt": "No chosen", "chosen": None, "rejected": "wrong"},
    {"prompt": "Blank rejected", "chosen": "right", "rejected": "  "},
    {"prompt": "", "chosen": "right", "rejected": "wrong"},
    {"prompt": "Same twice", "chosen": "same", "rejected": "same "},
    {"prompt": "Another good one", "chosen": "yes", "rejected": "no"},
]


def test_bad_pairs_are_counted_and_left_out(tmp_path) -> None:
    dataset, detection = load(write(tmp_path / "bad.jsonl", BAD_PAIRS))
    check = preference_problems(dataset, detection)
    assert check == PairCheck(
        rows=6,
        missing_chosen=1,
        missing_rejected=1,
        empty_prompt=1,
        identical=1,
        usable=2,
        different_prompts=0,
    )
    assert check.summary().startswith("4 of 6 pairs cannot train: 1 without a chosen answer")
    assert to_trl_preference(dataset, detection)["prompt"] == ["Good question", "Another good one"]
    kept, _ = drop_bad_pairs(dataset, detection)
    assert kept.column_names == dataset.column_names and kept["prompt"] == [
        "Good question",
        "Another good one",
    ]


def test_conversations_that_diverge_before_the_answer_are_not_a_pair(tmp_path) -> None:
    rows = [{"chosen": [user("A?"), assistant("a")], "rejected": [user("B?"), assistant("b")]}]
    dataset, detection = load(write(tmp_path / "diverge.jsonl", rows))
    check = preference_problems(dataset, detection, refuse=False)
    assert (check.different_prompts, check.usable) == (1, 0)


def test_nothing_usable_is_a_clear_error(tmp_path) -> None:
    rows = [{"prompt": f"q{i}", "chosen": "same", "rejected": "same"} for i in range(3)]
    dataset, detection = load(write(tmp_path / "same.jsonl", rows))
    with pytest.raises(
        TunerError, match=r"None of the 3 preference pairs.*'chosen' and 'rejected' hold the same"
    ):
        to_trl_preference(dataset, detection)
    rows = [{"question": f"q{i}", "chosen": "", "rejected": "no"} for i in range(2)]
    dataset, detection = load(write(tmp_path / "empty.jsonl", rows))
    with pytest.raises(TunerError, match=r"column 'chosen' \(chosen\) holds no answer.*fields = \{chosen"):
        preference_problems(dataset, detection)
    rows = [
        {"messages": [user("hi"), assistant("yo")], "label": None},
        {"messages": [user("x")], "label": True},
    ]
    dataset, detection = load(write(tmp_path / "kto.jsonl", rows), "kto")
    with pytest.raises(TunerError, match="None of the 2 KTO rows.*true/false label in 'label'"):
        to_trl_kto(dataset, detection)


# ---- inspect ----------------------------------------------------------------------------------


def _inspect_rows() -> list[dict]:
    """Ten pairs with 2-word prompts: eight with a 4-word chosen and a 1-word rejected, one identical
    (not trainable), one with the longer answer rejected: chosen is longer in 8 of the 9 that train."""
    rows = [{"prompt": f"question {i}", "chosen": "a long good answer", "rejected": "no"} for i in range(8)]
    rows += [
        {"prompt": "question 8", "chosen": "same", "rejected": "same"},  # identical: not trainable
        {"prompt": "question 9", "chosen": "short", "rejected": "a much longer bad answer here"},
    ]
    return rows


def test_inspect_reports_pair_statistics(tmp_path) -> None:
    path = write(tmp_path / "pairs.jsonl", _inspect_rows())
    report = inspect_dataset(str(path), max_length=5).to_json()
    pairs = report["pairs"]
    assert report["format"] == "preference" and report["trainable"] and report["kto"] is None
    assert (pairs["pairs"], pairs["usable"], pairs["identical"]) == (10, 9, 1)
    assert pairs["unit"] == "words" and pairs["counted_with"] == WHITESPACE_LABEL
    assert (pairs["prompt_lengths"]["min"], pairs["prompt_lengths"]["max"]) == (2, 2)
    assert (pairs["chosen_lengths"]["min"], pairs["chosen_lengths"]["max"]) == (1, 4)
    assert (pairs["rejected_lengths"]["min"], pairs["rejected_lengths"]["max"]) == (1, 6)
    # over 5 words: 2 + 4 (8 pairs) and 2 + 6 (the last): all 9 trainable pairs
    assert (pairs["truncated"], pairs["truncated_share"]) == (9, 1.0)
    assert pairs["chosen_longer_share"] == round(8 / 9, 4)
    assert pairs["near_duplicate_prompts"]["threshold"] == 0.8
    warnings = " ".join(report["warnings"])
    assert "1 pair(s) have chosen identical to rejected" in warnings
    assert "silently corrupts DPO" in warnings and "length bias" in warnings
    json.dumps(report)
    short = inspect_dataset(str(path)).to_json()["pairs"]
    assert short["truncated"] is None and short["truncated_share"] is None


def test_near_duplicate_prompts_are_counted(tmp_path) -> None:
    prompt = "please explain how the tides of the ocean work in simple words"
    rows = [{"prompt": prompt, "chosen": f"answer {i}", "rejected": f"bad {i}"} for i in range(3)]
    rows.append(
        {"prompt": "an entirely different question about cooking rice", "chosen": "boil", "rejected": "fry"}
    )
    report = inspect_dataset(str(write(tmp_path / "dup.jsonl", rows))).to_json()
    assert report["pairs"]["near_duplicate_prompts"]["clusters"] == 1
    assert report["pairs"]["near_duplicate_prompts"]["rows"] == 2
    assert report["pairs"]["chosen_longer_share"] == 0.0
    assert not any("length bias" in w for w in report["warnings"])


def test_inspect_of_other_data_has_no_pairs_and_kto_counts(tmp_path) -> None:
    report = inspect_dataset(str(write(tmp_path / "kto.json", LF_KTO, lines=False))).to_json()
    assert report["format"] == "kto" and report["pairs"] is None
    assert {k: report["kto"][k] for k in ("rows", "usable", "desirable", "undesirable")} == {
        "rows": 3, "usable": 3, "desirable": 2, "undesirable": 1,
    }  # fmt: skip
    assert report["token_lengths"]["max"] == 7  # the words of the longest conversation
    text = inspect_dataset(str(write(tmp_path / "t.jsonl", [{"text": "a b"}]))).to_json()
    assert text["pairs"] is None and text["kto"] is None


def test_render_prints_the_pairs_table(tmp_path) -> None:
    from rich.console import Console

    from tuner_tui.views.data_report import render_report

    report = inspect_dataset(str(write(tmp_path / "pairs.jsonl", _inspect_rows())), max_length=5)
    console = Console(file=io.StringIO(), width=100, record=True)
    render_report(report, console)
    shown = console.export_text()
    assert "Pairs" in shown and "chosen = rejected" in shown and "chosen longer" in shown
    kto = inspect_dataset(str(write(tmp_path / "kto.json", LF_KTO, lines=False)))
    console = Console(file=io.StringIO(), width=100, record=True)
    render_report(kto, console)
    assert "desirable (true)" in console.export_text()


def test_pair_lengths_use_the_chat_template(tiny_assets, tmp_path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_assets["model"])
    tokenizer.chat_template = "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>{% endfor %}"
    dataset, _ = load(write(tmp_path / "dpo.json", LF_DPO, lines=False))
    pairs = inspect_dataset(dataset, tokenizer=tokenizer).to_json()["pairs"]
    assert pairs["unit"] == "tokens" and pairs["counted_with"].endswith("with chat template")
    rows = to_trl_preference(*load(tmp_path / "dpo.json"))

    def count(messages: list[dict]) -> int:
        text = tokenizer.apply_chat_template(messages, tokenize=False)
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    prompts = sorted(count(row["prompt"]) for row in rows)
    rejected = sorted(count(row["prompt"] + row["rejected"]) - count(row["prompt"]) for row in rows)
    for side, expected in (("prompt", prompts), ("rejected", rejected)):
        assert [pairs[f"{side}_lengths"]["min"], pairs[f"{side}_lengths"]["max"]] == expected
