"""Data preparation: format detection and loss on completions only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuner_tui.data.formats import detect_format, resolve_format, to_messages
from tuner_tui.data.load import load_any
from tuner_tui.errors import TunerError
from tuner_tui.modeling.loading import FALLBACK_CHAT_TEMPLATE
from tuner_tui.recipe import Recipe
from tuner_tui.training.examples import IGNORE, encode_causal, prepare_data

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="module")
def tokenizer(tiny_assets):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_assets["model"])
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    return tok


def trained_text(tokenizer, encoded) -> str:
    return tokenizer.decode(
        [t for t, label in zip(encoded["input_ids"], encoded["labels"], strict=True) if label != IGNORE]
    )


@pytest.mark.parametrize(
    ("columns", "rows", "expected"),
    [
        (["instruction", "input", "output"], [{}], "alpaca"),
        (["conversations"], [{"conversations": [{"from": "human", "value": "hi"}]}], "sharegpt"),
        (["messages"], [{"messages": [{"role": "user", "content": "hi"}]}], "messages"),
        (["prompt", "completion"], [{}], "prompt_completion"),
        (["prompt", "chosen", "rejected"], [{}], "preference"),
        (["sentence", "category"], [{}], "classification"),
        (["text"], [{}], "text"),
    ],
)
def test_detect_format_with_evidence(columns, rows, expected) -> None:
    detection = detect_format(columns, rows)
    assert detection.format == expected
    assert detection.evidence


def test_undetectable_and_unmapped_columns_are_clear_errors() -> None:
    with pytest.raises(TunerError, match="Cannot detect the data format"):
        detect_format(["question", "answer"], [{}])
    with pytest.raises(TunerError, match="needs a column for 'output'.*fields"):
        resolve_format("alpaca", {"instruction": "q", "output": "ans"}, ["q", "a"], [{}])


def test_user_field_mapping_overrides_detection() -> None:
    detection = resolve_format("prompt_completion", {"prompt": "q", "completion": "a"}, ["q", "a"], [{}])
    assert detection.fields == {"prompt": "q", "completion": "a"}


def test_sharegpt_roles_and_alpaca_input_become_messages() -> None:
    sharegpt = resolve_format(
        "auto", {}, ["conversations"], [{"conversations": [{"from": "human", "value": "x"}]}]
    )
    row = {
        "conversations": [
            {"from": "system", "value": "s"},
            {"from": "human", "value": "q"},
            {"from": "gpt", "value": "a"},
        ]
    }
    assert [m["role"] for m in to_messages(row, sharegpt)] == ["system", "user", "assistant"]
    alpaca = resolve_format("auto", {}, ["instruction", "input", "output"], [{}])
    messages = to_messages({"instruction": "Sum", "input": "1 2", "output": "3"}, alpaca)
    assert messages == [{"role": "user", "content": "Sum\n\n1 2"}, {"role": "assistant", "content": "3"}]


def test_completion_only_labels_cover_exactly_the_assistant_turns(tokenizer) -> None:
    tokenizer.chat_template = CHATML
    recipe = Recipe()
    detection = resolve_format("messages", {}, ["messages"], [{}])
    row = {
        "messages": [
            {"role": "user", "content": "What is the capital of Peru?"},
            {"role": "assistant", "content": "Lima."},
            {"role": "user", "content": "And Chile?"},
            {"role": "assistant", "content": "Santiago."},
        ]
    }
    encoded = encode_causal(row, detection, tokenizer, recipe, fallback_template=False)
    assert trained_text(tokenizer, encoded).replace(
        " ", ""
    ) == "Lima.<|im_end|>\nSantiago.<|im_end|>\n".replace(" ", "")
    recipe.training.completion_only_loss = False
    everything = encode_causal(row, detection, tokenizer, recipe, fallback_template=False)
    assert everything["labels"] == everything["input_ids"]


def test_fallback_template_trains_response_and_eos(tokenizer) -> None:
    tokenizer.chat_template = FALLBACK_CHAT_TEMPLATE
    detection = resolve_format("alpaca", {}, ["instruction", "input", "output"], [{}])
    row = {"instruction": "Capital of Peru?", "input": "", "output": "The capital of Peru is Lima."}
    encoded = encode_causal(row, detection, tokenizer, Recipe(), fallback_template=True)
    text = trained_text(tokenizer, encoded)
    assert "Capital of Peru?" not in text and "### Instruction" not in text
    assert "The capital of Peru is Lima." in text and "</s>" in text


def test_prompt_completion_masks_the_prompt(tokenizer) -> None:
    detection = resolve_format("prompt_completion", {}, ["prompt", "completion"], [{}])
    encoded = encode_causal(
        {"prompt": "Q: Capital of Cuba? A:", "completion": " Havana"}, detection, tokenizer, Recipe(), False
    )
    assert trained_text(tokenizer, encoded).strip() == "Havana</s>"


def test_truncated_away_responses_are_dropped(tokenizer, tmp_path: Path) -> None:
    tokenizer.chat_template = None
    path = tmp_path / "d.jsonl"
    rows = [
        {"instruction": "word " * 200, "input": "", "output": "long prompt"},
        {"instruction": "hi", "input": "", "output": "short"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = Recipe()
    recipe.data.path = str(path)
    recipe.data.validation_fraction = recipe.data.test_fraction = 0.0
    recipe.training.max_length = 32
    prepared = prepare_data(recipe, tokenizer)
    assert len(prepared.train) == 1 and prepared.dropped_no_target == 1


def test_json_object_with_data_key_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"data": [{"text": "a"}, {"text": "b"}], "version": 2}))
    assert load_any(str(path))["text"] == ["a", "b"]
    with pytest.raises(TunerError, match="does not exist"):
        load_any(str(tmp_path / "missing.jsonl"))


def test_cleaning_steps_run_before_the_split_and_are_reported(tokenizer, tmp_path: Path) -> None:
    tokenizer.chat_template = None
    path = tmp_path / "d.jsonl"
    rows = [
        {"instruction": f"Capital of country {i % 10}?", "input": "", "output": f"City {i % 10}."}
        for i in range(40)
    ]
    rows.append({"instruction": "Mail me at ann@example.com", "input": "", "output": "Sure."})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = Recipe()
    recipe.data.path = str(path)
    recipe.data.validation_fraction, recipe.data.test_fraction = 0.0, 0.2
    recipe.data.cleaning = [{"op": "dedup_exact"}, {"op": "redact_pii"}]
    prepared = prepare_data(recipe, tokenizer)
    dedup, redact = prepared.source.cleaning
    assert (dedup.rows_before, dedup.rows_after) == (41, 11)
    assert redact.changed_rows == 1
    assert len(prepared.train) + len(prepared.test) == 11
    assert prepared.source.fingerprint.startswith("sha256:")
    texts = [tokenizer.decode(ids) for part in (prepared.train, prepared.test) for ids in part["input_ids"]]
    assert not any("ann@example.com" in t for t in texts) and any("<EMAIL>" in t for t in texts)


def test_unknown_cleaning_parameter_names_its_key(tokenizer, tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"text": "hello"}) + "\n")
    recipe = Recipe()
    recipe.data.path = str(path)
    recipe.data.cleaning = [{"op": "dedup_near", "threshold": 2.0}]
    with pytest.raises(TunerError, match=r"data\.cleaning\[0\]\.threshold"):
        prepare_data(recipe, tokenizer)
