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


# --- errors that named the wrong thing, or nothing useful -----------------------------------------


@pytest.mark.parametrize(("codec", "order"), [("utf-16-le", "LE"), ("utf-16-be", "BE")])
@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".txt"])
def test_utf16_without_bom_gets_an_encoding_hint(tmp_path: Path, codec: str, order: str, suffix: str) -> None:
    path = tmp_path / f"export{suffix}"
    body = {".csv": "text,label\nhello,a\nworld,b\n", ".jsonl": '{"text": "hello"}\n', ".txt": "hello\n"}
    path.write_bytes(body[suffix].encode(codec))
    with pytest.raises(TunerError) as caught:
        load_data(str(path))
    message = str(caught.value)
    assert f"looks like UTF-16 {order} without a BOM" in message
    assert f"re-save as UTF-8 (e.g. iconv -f UTF-16{order} -t UTF-8" in message


def test_utf16_with_bom_and_utf8_with_nul_free_text_still_load(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes("text,label\nhello,a\n".encode("utf-16"))  # with its BOM: read through a copy
    assert load_data(str(path))[0].to_list() == [{"text": "hello", "label": "a"}]


def test_header_only_and_empty_array_say_so_without_library_jargon(tmp_path: Path) -> None:
    header = tmp_path / "header.csv"
    header.write_text("text,label\n")
    with pytest.raises(TunerError, match=r"header\.csv: has a header \(text, label\) but no rows") as caught:
        load_data(str(header))
    assert "corresponds to no data" not in str(caught.value)
    empty = tmp_path / "rows.json"
    empty.write_text("[]")
    with pytest.raises(TunerError, match=r"rows\.json: is an empty JSON array"):
        load_data(str(empty))
    blanks = tmp_path / "blank.jsonl"
    blanks.write_text("\n\n\n\n\n\n")
    with pytest.raises(TunerError, match=r"blank\.jsonl: holds only blank lines"):
        load_data(str(blanks))


def test_csv_error_names_the_file_line_and_row_when_a_quoted_field_spans_lines(tmp_path: Path) -> None:
    path = tmp_path / "multi.csv"
    # line 1 header; lines 2-3 one row (a quoted field with a newline); line 4 row 2; line 5 row 3
    path.write_text('text,label\n"two\nlines",a\nok,b\nbad,row,extra\nfine,c\n')
    lines = path.read_text().split("\n")
    assert lines[4] == "bad,row,extra"  # line 5 of the file
    with pytest.raises(TunerError, match=r"multi\.csv:5: row 3 has 3 fields, but the header has 2"):
        load_data(str(path))


def test_invalid_utf8_offsets_count_the_files_own_bytes_bom_included(tmp_path: Path) -> None:
    document = tmp_path / "doc.json"
    raw = b'\xef\xbb\xbf{"data": [{"text": "ok"},\n{"text": "caf\xe9"}]}'
    document.write_bytes(raw)
    with pytest.raises(TunerError) as caught:
        load_data(str(document))
    offset = raw.index(b"\xe9")
    assert f"doc.json:2: invalid UTF-8 at byte offset {offset}" in str(caught.value)
    csv_file = tmp_path / "bom.csv"
    raw = b"\xef\xbb\xbftext,label\nok,a\ncaf\xe9,b\n"
    csv_file.write_bytes(raw)
    offset = raw.index(b"\xe9")
    with pytest.raises(TunerError, match=rf"bom\.csv:3: .* byte at offset {offset} is not UTF-8"):
        load_data(str(csv_file))
    lines = tmp_path / "bom.jsonl"  # the mark used to switch the UTF-8 check off
    raw = b'\xef\xbb\xbf{"text": "ok"}\n{"text": "caf\xe9"}\n'
    lines.write_bytes(raw)
    offset = raw.index(b"\xe9")
    with pytest.raises(TunerError, match=rf"bom\.jsonl:2: invalid UTF-8 at byte offset {offset}"):
        load_data(str(lines))


def test_skip_bad_rows_skips_lines_that_are_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9 au lait"}\n{"text": "fine"}\n')
    dataset, info = load_data(str(path), skip_bad_rows=True)
    assert dataset["text"] == ["ok", "fine"]
    assert info.skipped_rows == 1 and "mixed.jsonl:2: invalid UTF-8 at byte 13" in info.skipped_examples[0]


def test_a_folder_of_files_in_different_encodings_reads_each_one_right(tmp_path: Path) -> None:
    folder = tmp_path / "exports"
    folder.mkdir()
    (folder / "a.csv").write_bytes("text,label\nna\u00efve,a\n".encode())
    (folder / "b.csv").write_bytes("text,label\ncaf\u00e9 \u20ac5,b\n".encode("cp1252"))
    dataset, _ = load_data(str(folder))
    assert sorted(dataset["text"]) == ["caf\u00e9 \u20ac5", "na\u00efve"]


def test_paths_that_exist_but_are_not_files_or_folders(tmp_path: Path) -> None:
    import os

    with pytest.raises(TunerError, match=r"/dev/zero exists but is a character device") as caught:
        load_data("/dev/zero")
    assert "does not exist" not in str(caught.value)
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(TunerError, match="exists but is a named pipe"):
        load_data(str(fifo))  # refused before anything opens it (which would block)


def test_an_unreadable_file_says_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tuner_tui.data import load

    path = _jsonl(tmp_path / "secret.jsonl", ROWS)
    monkeypatch.setattr(load.os, "access", lambda *_: False)  # tests may run as root, who reads anything
    with pytest.raises(TunerError, match=r"secret\.jsonl exists but cannot be read by this user"):
        load_data(str(path))


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_folder_of_files_with_different_columns_names_them(tmp_path: Path, suffix: str) -> None:
    folder = tmp_path / "parts"
    folder.mkdir()
    if suffix == ".csv":
        (folder / "a.csv").write_text("text,label\nx,a\n")
        (folder / "b.csv").write_text("body,label\ny,b\n")
    else:
        _jsonl(folder / "a.jsonl", [{"text": "x", "label": "a"}])
        _jsonl(folder / "b.jsonl", [{"text": "y", "category": "b"}])
    with pytest.raises(TunerError) as caught:
        load_data(str(folder))
    message = str(caught.value)
    assert "do not all have the same columns: a" in message and "b" + suffix + " has " in message
    assert "could not be read" not in message and "Schema at index" not in message


def test_a_stray_dataset_info_json_does_not_make_a_saved_dataset(tmp_path: Path) -> None:
    import datasets

    folder = tmp_path / "llamafactory-style"
    folder.mkdir()
    (folder / "dataset_info.json").write_text(json.dumps({"demo": {"file_name": "demo.json"}}))
    (folder / "demo.json").write_text(json.dumps(ROWS))
    # was an internal error (load_from_disk); now the folder is read as files, and the odd one named
    with pytest.raises(TunerError, match=r"dataset_info\.json: a JSON object must hold the rows"):
        load_data(str(folder))
    saved = tmp_path / "saved"
    datasets.Dataset.from_list(ROWS).save_to_disk(str(saved))
    assert load_data(str(saved))[1].builder == "save_to_disk"


def test_csv_row_width_error_in_a_utf16_file_names_the_right_line(tmp_path: Path) -> None:
    path = tmp_path / "u16.csv"
    path.write_bytes('text,label\n"multi\nline",a\nbad,row,extra\n'.encode("utf-16"))  # with a BOM
    with pytest.raises(TunerError, match=r"u16\.csv:4: row 2 has 3 fields, but the header has 2"):
        load_data(str(path))


def test_a_bad_line_is_quoted_with_its_pii_masked(tmp_path) -> None:
    """Load errors reach events.jsonl and worker.log: the quoted line must not leak an address."""
    import pytest

    from tuner_tui.data.load import load_any
    from tuner_tui.errors import TunerError

    path = tmp_path / "rows.jsonl"
    path.write_text('{"text": "fine"}\nmail jane.doe@example.com now\n', encoding="utf-8")
    with pytest.raises(TunerError) as error:
        load_any(str(path))
    assert "jane.doe@example.com" not in str(error.value) and ":2" in str(error.value)
