"""Cleaning steps, splits, the fingerprint, and the inspect report."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tuner_tui.data.clean import apply_cleaning, content_fingerprint
from tuner_tui.data.dedup import MinHasher, near_duplicates
from tuner_tui.data.formats import Detection
from tuner_tui.data.report import WHITESPACE_LABEL, inspect_dataset
from tuner_tui.data.split import split_dataset
from tuner_tui.errors import TunerError

CHAT = Detection("messages", {"messages": "messages"})
TEXT = Detection("text", {"text": "text"})


def chat(user: str, assistant: str) -> dict:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]}


@pytest.fixture
def chats():
    import datasets

    return datasets.Dataset.from_list(
        [
            chat("Hello  there\u00a0friend", "Caf\u0065\u0301 is open"),
            chat("", "an empty question"),
            chat("Mail me at jane@example.com", "Done, (212) 555-0188 noted"),
            chat("Hello  there\u00a0friend", "Caf\u0065\u0301 is open"),
            chat("what is the capital of france", "paris is the capital of france"),
        ]
    )


def test_each_cleaning_step_reports_counts_and_examples(chats) -> None:
    steps = [
        {"op": "drop_empty"},
        {"op": "normalize"},
        {"op": "dedup_exact"},
        {"op": "redact_pii", "kinds": ["email", "phone"]},
        {"op": "length_filter", "min_tokens": 7},
    ]
    cleaned, reports = apply_cleaning(chats, steps, CHAT)
    assert [(r.op, r.rows_before, r.rows_after) for r in reports] == [
        ("drop_empty", 5, 4),
        ("normalize", 4, 4),
        ("dedup_exact", 4, 3),
        ("redact_pii", 3, 3),
        ("length_filter", 3, 2),
    ]
    assert reports[0].examples[0]["dropped"] == "an empty question"
    assert (
        reports[1].changed_rows == 2 and reports[1].examples[0]["after"] == "Hello there friend Café is open"
    )
    assert reports[3].details["redacted"] == {"email": 1, "phone": 1}
    assert "jane@" not in json.dumps([r.to_json() for r in reports])  # examples are masked
    assert reports[4].details["counted_with"] == WHITESPACE_LABEL
    turns = cleaned[0]["messages"]
    assert turns[0]["content"] == "Mail me at <EMAIL>" and turns[1]["content"] == "Done, <PHONE> noted"
    assert turns[0]["role"] == "user"


def test_drop_pii_rows_and_dedup_near(chats) -> None:
    kept, reports = apply_cleaning(chats, [{"op": "drop_pii_rows", "kinds": ["email"]}], CHAT)
    assert len(kept) == 4 and reports[0].details["rows_with"] == {"email": 1}
    kept, reports = apply_cleaning(chats, [{"op": "dedup_near", "threshold": 0.9}], CHAT)
    assert len(kept) == 4 and reports[0].examples[0]["kept_row"] == 0


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ({"op": "dedup_near", "threshold": 1.5}, r"data\.cleaning\[0\]\.threshold must be"),
        ({"op": "redact_pii", "kinds": ["emial"]}, r"data\.cleaning\[0\]\.kinds .*Did you mean 'email'"),
        ({"op": "length_filter", "max_tokn": 3}, r"data\.cleaning\[0\]\.max_tokn is not a parameter"),
        ({"op": "dedupe"}, r"data\.cleaning\[0\]\.op .*not a cleaning step"),
        ({"op": "filter_language"}, r"data\.cleaning\[0\]\.op = 'filter_language' is not available"),
    ],
)
def test_bad_steps_name_the_parameter(chats, step, message) -> None:
    with pytest.raises(TunerError, match=message):
        apply_cleaning(chats, [step], CHAT)


def test_fingerprint_is_stable_and_content_sensitive(chats) -> None:
    import datasets

    again = datasets.Dataset.from_list(chats.to_list())
    assert content_fingerprint(chats) == content_fingerprint(again)
    assert content_fingerprint(chats) != content_fingerprint(chats.select([0, 1, 2, 3]))
    cleaned, _ = apply_cleaning(chats, [{"op": "redact_pii"}], CHAT)
    assert content_fingerprint(cleaned) != content_fingerprint(chats)


def test_near_duplicate_recall_on_planted_pairs() -> None:
    import pyarrow as pa

    rng = random.Random(0)
    vocab = [f"word{i}" for i in range(3000)]
    originals = [" ".join(rng.choice(vocab) for _ in range(60)) for _ in range(400)]
    planted = []
    for text in originals[:200]:
        words = text.split()
        for _ in range(2):  # change two words: Jaccard of 3-shingles stays around 0.8-0.9
            words[rng.randrange(len(words))] = rng.choice(vocab)
        planted.append(" ".join(words))
    sig = MinHasher().signatures(pa.array(originals + planted))
    roots = near_duplicates(sig, 0.7).roots
    found = sum(roots[400 + i] == roots[i] for i in range(200))
    assert found / 200 >= 0.9
    false = sum(roots[i] != i for i in range(200, 400))  # untouched originals stay alone
    assert false == 0


def test_split_is_seeded_stratified_and_respects_split_column() -> None:
    import datasets

    rows = [{"text": f"t{i}", "label": "rare" if i % 10 == 0 else "common"} for i in range(200)]
    data = datasets.Dataset.from_list(rows)
    detection = Detection("classification", {"text": "text", "label": "label"})
    a = split_dataset(data, detection, 0.1, 0.2, seed=3)
    b = split_dataset(data, detection, 0.1, 0.2, seed=3)
    assert {k: len(v) for k, v in a.items()} == {"test": 40, "validation": 20, "train": 140}
    assert a["test"]["text"] == b["test"]["text"]
    assert a["test"]["label"].count("rare") == 4 and a["validation"]["label"].count("rare") == 2
    assert not set(a["train"]["text"]) & set(a["test"]["text"])
    given = datasets.Dataset.from_list(
        [{"text": f"t{i}", "split": ["train", "test"][i % 2]} for i in range(10)]
    )
    parts = split_dataset(given, TEXT, 0.0, 0.3, seed=0)
    # The column decides membership; rows come in seeded key order, not file order.
    assert sorted(parts["test"]["text"]) == ["t1", "t3", "t5", "t7", "t9"]
    assert "split" not in parts["train"].column_names
    one = datasets.Dataset.from_list([{"text": "x", "label": "a"}] * 4)
    with pytest.raises(TunerError, match="label column 'label' has 1 distinct value"):
        split_dataset(one, detection, 0.1, 0.1, seed=0)


def test_split_follows_row_contents_and_seed_not_file_order() -> None:
    import datasets

    # Negatives clustered at the end of the file, as in Financial PhraseBank.
    rows = [
        {"text": f"sentence {i}", "label": "negative" if i >= 240 else ("positive" if i % 3 else "neutral")}
        for i in range(300)
    ]
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)
    detection = Detection("classification", {"text": "text", "label": "label"})
    a = split_dataset(datasets.Dataset.from_list(rows), detection, 0.1, 0.2, seed=5)
    b = split_dataset(datasets.Dataset.from_list(shuffled), detection, 0.1, 0.2, seed=5)
    # The same rows in another order give the same splits, row for row.
    assert {k: v.to_list() for k, v in a.items()} == {k: v.to_list() for k, v in b.items()}
    # ...also with the columns in another order, and for unlabelled data.
    swapped = datasets.Dataset.from_list([{"label": r["label"], "text": r["text"]} for r in shuffled])
    assert split_dataset(swapped, detection, 0.1, 0.2, seed=5)["test"]["text"] == a["test"]["text"]
    plain = [split_dataset(datasets.Dataset.from_list(d), TEXT, 0.1, 0.2, seed=5) for d in (rows, shuffled)]
    assert plain[0]["test"]["text"] == plain[1]["test"]["text"]
    # Stratified, and drawn from the whole file.
    assert {k: len(v) for k, v in a.items()} == {"test": 60, "validation": 30, "train": 210}
    assert a["test"]["label"].count("negative") == 12
    numbers = sorted(int(t.split()[1]) for t in a["test"]["text"])
    assert numbers[0] < 60 and numbers[-1] >= 240
    # The seed still decides: another seed, another test set.
    other = split_dataset(datasets.Dataset.from_list(rows), detection, 0.1, 0.2, seed=6)
    assert set(other["test"]["text"]) != set(a["test"]["text"])
    assert sorted([*a["test"]["text"], *a["validation"]["text"], *a["train"]["text"]]) == sorted(
        r["text"] for r in rows
    )


def test_inspect_report_keys_labels_and_preference(tmp_path: Path) -> None:
    path = tmp_path / "cls.jsonl"
    rows = [
        {"text": f"message number {i} about billing", "label": "billing" if i % 4 else "tech"}
        for i in range(40)
    ]
    rows.append({"text": "write to bob@example.org", "label": "tech"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = inspect_dataset(str(path), max_length=4).to_json()
    for key in ("format", "rows", "fields", "exact_duplicates", "near_duplicate_clusters", "pii",
                "char_lengths", "token_lengths", "labels"):  # fmt: skip
        assert key in report
    for key in ("min", "p50", "p95", "max"):
        assert isinstance(report["char_lengths"][key], int) and isinstance(report["token_lengths"][key], int)
    assert report["format"] == "classification" and report["labels"] == {"billing": 30, "tech": 11}
    assert report["label_imbalance_ratio"] == pytest.approx(30 / 11, abs=0.01)
    assert report["pii"] == {"email": 1} and "bob@" not in json.dumps(report)
    assert report["token_lengths"]["counted_with"] == WHITESPACE_LABEL
    assert report["truncation"]["rows_over"] == 40 and len(report["shortest"]) == 5
    json.dumps(report)
    pref = tmp_path / "pref.jsonl"
    pref.write_text(json.dumps({"prompt": "p", "chosen": "c", "rejected": "r"}) + "\n")
    report = inspect_dataset(str(pref)).to_json()
    assert report["format"] == "preference" and report["trainable"] and report["pairs"]["pairs"] == 1


def test_inspect_counts_tokens_with_the_chat_template(tiny_assets, chats) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_assets["model"])
    tokenizer.chat_template = "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>{% endfor %}"
    report = inspect_dataset(chats, tokenizer=tokenizer, max_length=16).to_json()
    assert report["token_lengths"]["counted_with"].endswith("with chat template")
    rendered = tokenizer.apply_chat_template(chats[4]["messages"], tokenize=False)
    expected = len(tokenizer(rendered, add_special_tokens=False)["input_ids"])
    assert next(r["tokens"] for r in report["longest"] if r["row"] == 4) == expected


def test_render_fits_80_columns(chats) -> None:
    import io

    from rich.console import Console

    from tuner_tui.views.data_report import render_report

    out = io.StringIO()
    render_report(inspect_dataset(chats), Console(file=out, width=80))
    assert max(len(line) for line in out.getvalue().splitlines()) <= 80
    assert "exact duplicates" in out.getvalue()
