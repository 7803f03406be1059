"""Loading every format, and every bad input giving a clear error or a reported skip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuner_tui.data.load import load_data
from tuner_tui.errors import TunerError

ROWS = [{"text": "alpha beta", "label": "a"}, {"text": "gamma delta", "label": "b"}]


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".json-data", ".csv", ".tsv", ".parquet"])
def test_every_tabular_format_loads(tmp_path: Path, suffix: str) -> None:
    if suffix == ".jsonl":
        path = _jsonl(tmp_path / "d.jsonl", ROWS)
    elif suffix == ".json":
        path = tmp_path / "d.json"
        path.write_text(json.dumps(ROWS))
    elif suffix == ".json-data":
        path = tmp_path / "d.json"
        path.write_text(json.dumps({"data": ROWS}))
    elif suffix in (".csv", ".tsv"):
        sep = "," if suffix == ".csv" else "\t"
        path = tmp_path / f"d{suffix}"
        path.write_text(f"text{sep}label\nalpha beta{sep}a\ngamma delta{sep}b\n")
    else:
        import datasets

        path = tmp_path / "d.parquet"
        datasets.Dataset.from_list(ROWS).to_parquet(str(path))
    dataset, info = load_data(str(path))
    assert dataset.to_list() == ROWS
    assert info.files == [str(path)]


def test_text_lines_and_paragraphs(tmp_path: Path) -> None:
    lines = tmp_path / "lines.txt"
    lines.write_text("first doc\nsecond doc\n")
    dataset, info = load_data(str(lines))
    assert dataset["text"] == ["first doc", "second doc"] and info.text_mode == "line"
    blocks = tmp_path / "blocks.txt"
    blocks.write_text("para one\ncontinues\n\npara two\n")
    dataset, info = load_data(str(blocks))
    assert info.text_mode == "paragraph" and len(dataset) == 2 and "continues" in dataset["text"][0]


def test_save_to_disk_and_split_named_files_keep_their_origin(tmp_path: Path) -> None:
    import datasets

    datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(ROWS), "test": datasets.Dataset.from_list(ROWS[:1])}
    ).save_to_disk(str(tmp_path / "saved"))
    dataset, info = load_data(str(tmp_path / "saved"))
    assert dataset["split"] == ["train", "train", "test"] and info.split_origin
    folder = tmp_path / "folder"
    folder.mkdir()
    _jsonl(folder / "train.jsonl", ROWS)
    _jsonl(folder / "validation.jsonl", ROWS[:1])
    dataset, _ = load_data(str(folder))
    assert sorted(dataset["split"]) == ["train", "train", "validation"]


def test_malformed_jsonl_names_file_line_and_snippet_or_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "ok", "label": "a"}\n{"text": "broken\n{"text": "fine", "label": "b"}\n')
    with pytest.raises(TunerError, match=r"bad\.jsonl:2: is not a JSON object .*'\{\"text\": \"broken'"):
        load_data(str(path))
    dataset, info = load_data(str(path), skip_bad_rows=True)
    assert dataset["text"] == ["ok", "fine"]
    assert info.skipped_rows == 1 and "bad.jsonl:2" in info.skipped_examples[0]


def test_encodings_bom_utf16_cp1252_and_invalid_utf8(tmp_path: Path) -> None:
    utf16 = tmp_path / "u16.jsonl"
    utf16.write_bytes('{"text": "café", "label": "a"}\n'.encode("utf-16"))
    dataset, info = load_data(str(utf16))
    assert dataset["text"] == ["café"] and info.encoding.startswith("utf-16")
    cp = tmp_path / "win.csv"
    cp.write_bytes("text,label\nna\u00efve \u20ac5,a\n".encode("cp1252"))
    dataset, info = load_data(str(cp))
    assert dataset["text"] == ["na\u00efve \u20ac5"] and info.encoding == "cp1252"
    assert "first invalid byte at offset" in info.notes[0]
    bad = tmp_path / "bad8.jsonl"
    bad.write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(TunerError, match=r"bad8\.jsonl:2: invalid UTF-8 at byte offset 28"):
        load_data(str(bad))


def test_empty_missing_and_mixed_inputs(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(TunerError, match="empty.jsonl: the file is empty"):
        load_data(str(empty))
    with pytest.raises(TunerError, match="does not exist"):
        load_data(str(tmp_path / "nope.jsonl"))
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    _jsonl(mixed / "a.jsonl", ROWS)
    (mixed / "b.csv").write_text("text\nx\n")
    with pytest.raises(TunerError, match=r"several kinds \(\.csv: b\.csv; \.jsonl: a\.jsonl\)"):
        load_data(str(mixed))


def test_hub_id_offline_names_the_setting_and_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(TunerError, match="HF_HUB_OFFLINE is set.*cache"):
        load_data("someone/not-cached-dataset")


def test_invalid_utf8_offset_across_chunk_boundaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tuner_tui.data import load

    monkeypatch.setattr(load, "_CHUNK", 5)
    path = tmp_path / "x.txt"
    for data in ("ab\ncafé\n日本😀\n".encode(), b"ab\n\xe6\x97\xa5\xe6\x97", b"ab\ncd" + b"\n\xffz"):
        path.write_bytes(data)
        try:
            data.decode("utf-8")
            expected = None
        except UnicodeDecodeError as exc:
            expected = (exc.start, data[: exc.start].count(b"\n") + 1)
        assert load._first_invalid_utf8(path) == expected
