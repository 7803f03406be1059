from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuner_tui.errors import TunerError
from tuner_tui.evaluation.bias.probes import builtin_probes, expand_templates, load_probes
from tuner_tui.evaluation.bias.swaps import counterfactual_pairs, swap_gender


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("She gave her the form.", "He gave him the form."),  # 'her' + function word -> him
        ("I called her.", "I called him."),  # 'her' at clause end -> him
        ("Her account is locked.", "His account is locked."),  # 'her' + noun -> his
        ("He lost his card; the card is his.", "She lost her card; the card is hers."),
        ("Tell him about it.", "Tell her about it."),
        ("My wife and her mother-in-law", "My husband and his father-in-law"),
        ("Imani thanked the man", "DeShawn thanked the woman"),
        ("THE WOMAN SAID", "THE MAN SAID"),
    ],
)
def test_gender_swaps(text: str, expected: str) -> None:
    swapped = swap_gender(text)
    assert swapped is not None and swapped[0] == expected


def test_gender_pair_groups_follow_first_mention() -> None:
    assert swap_gender("He thanked her.")[1:] == ("male", "female")
    assert swap_gender("The parcel arrived.") is None


def test_pairs_for_other_families_fix_articles() -> None:
    pairs = counterfactual_pairs(
        ["An elderly woman asked.", "Muslims pray at the mosque.", "A Mexican student wrote."],
        ["age", "religion", "nationality"],
        max_pairs=100,
    )
    got = {(p.family, p.group_b): p.swapped for p in pairs}
    assert got[("age", "young")] == "A young woman asked."
    assert got[("religion", "jewish")] == "Jews pray at the synagogue."
    assert got[("nationality", "american")] == "An American student wrote."
    assert all(p.source == "test" and p.original != p.swapped for p in pairs)


def test_max_pairs_spreads_over_group_pairs() -> None:
    texts = ["She called."] * 50 + ["Muslims met."] * 50
    pairs = counterfactual_pairs(texts, None, max_pairs=10)
    assert len(pairs) == 10
    assert {p.family for p in pairs} == {"gender", "religion"}


def test_builtin_templates_expand_to_aligned_pairs() -> None:
    templates = builtin_probes("sequence_classification")
    assert all("{person}" in t for t in templates) and builtin_probes("causal_lm")
    pairs = expand_templates(templates[:1], ["gender", "disability"])
    assert (pairs[0].original, pairs[0].swapped) == (
        "She asked about a refund for the order.",
        "He asked about a refund for the order.",
    )
    assert (pairs[1].original, pairs[1].swapped) == (
        "The woman asked about a refund for the order.",
        "The man asked about a refund for the order.",
    )
    spoke = expand_templates(["I spoke with {person} about the invoice."], ["gender"])
    assert not any(p.original.endswith("with she about the invoice.") for p in spoke)
    assert all(p.group_a == "non_disabled" for p in pairs if p.family == "disability")


def test_user_probes_load_three_shapes(tmp_path: Path) -> None:
    path = tmp_path / "probes.jsonl"
    rows = [
        {"template": "{person} asked to close the account."},
        {"text": "My wife called about the invoice."},
        {"original": "A nurse", "swapped": "A doctor", "family": "occupation"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    probes = load_probes(path)
    assert probes.templates == [rows[0]["template"]] and probes.texts == [rows[1]["text"]]
    assert probes.pairs[0].family == "occupation" and probes.pairs[0].source == "user"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"template": "{person} ok"}\n{not json}\n', "probes.jsonl:2: not valid JSON"),
        ('{"template": "no slot"}\n', "probes.jsonl:1: a template needs exactly one {person}"),
        ('{"text": ""}\n', "probes.jsonl:1: 'text' must be a non-empty string"),
        ('["a"]\n', "probes.jsonl:1: expected one JSON object"),
        ('{"prompt": "x"}\n', "probes.jsonl:1: no 'template'"),
        ("\n\n", "holds no probes"),
    ],
)
def test_bad_probe_files_name_file_and_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "probes.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(TunerError, match="probes.jsonl") as error:
        load_probes(path)
    assert message in str(error.value)


def test_missing_probe_file(tmp_path: Path) -> None:
    with pytest.raises(TunerError, match="does not exist"):
        load_probes(tmp_path / "nope.jsonl")
