"""The pre-flight data probe: existence, readability and the header against [data] fields."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tuner_tui.data.probe import probe_data
from tuner_tui.recipe import DataConfig


def _data(path: Path | str, **kwargs) -> DataConfig:
    return DataConfig(path=str(path), **kwargs)


def _csv(path: Path, text: str = "text,label\nhello,a\nworld,b\n") -> Path:
    path.write_text(text)
    return path


def _one(problems: list[str]) -> str:
    assert len(problems) == 1, problems
    return problems[0]


def test_a_good_file_and_an_empty_path_have_no_problems(tmp_path: Path) -> None:
    assert probe_data(_data(_csv(tmp_path / "d.csv"))) == []
    assert probe_data(_data("d.csv"), base_dir=tmp_path) == []  # relative to the recipe's folder
    assert probe_data(_data("")) == []  # DataConfig.check reports a missing path


def test_missing_paths_devices_and_unreadable_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    message = _one(probe_data(_data("nothere.csv"), base_dir=tmp_path))
    assert "The data path nothere.csv does not exist" in message and str(tmp_path) in message
    (tmp_path / "data").mkdir()  # 'data/train' is a typo of a local path, not a hub id
    assert "does not exist" in _one(probe_data(_data("data/train"), base_dir=tmp_path))
    assert "is a character device, not a regular file or folder" in _one(probe_data(_data("/dev/zero")))
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    assert "is a named pipe" in _one(probe_data(_data(fifo)))  # and nothing opened it
    from tuner_tui.data import load

    good = _csv(tmp_path / "d.csv")
    monkeypatch.setattr(load.os, "access", lambda *_: False)
    assert "cannot be read by this user (permission denied)" in _one(probe_data(_data(good)))


def test_headers_without_rows_and_undecodable_files(tmp_path: Path) -> None:
    header = _csv(tmp_path / "header.csv", "text,label\n")
    assert f"{header}: has a header (text, label) but no rows" in _one(probe_data(_data(header)))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert "the file is empty" in _one(probe_data(_data(empty)))
    utf16 = tmp_path / "u16.csv"
    utf16.write_bytes("text,label\nhello,a\n".encode("utf-16-le"))
    assert "looks like UTF-16 LE without a BOM" in _one(probe_data(_data(utf16)))
    other = tmp_path / "sheet.xlsx"
    other.write_bytes(b"PK\x03\x04")
    assert "'.xlsx' is not a data file tuner reads" in _one(probe_data(_data(other)))


def test_mapped_and_required_columns_must_be_in_the_header(tmp_path: Path) -> None:
    path = _csv(tmp_path / "d.csv", "abstract,condition\nhello,a\n")
    message = _one(probe_data(_data(path)))
    assert message.startswith(f"{path}: Cannot detect the data format from the columns")
    assert (
        probe_data(_data(path, format="classification", fields={"text": "abstract", "label": "condition"}))
        == []
    )
    # with format 'auto', the fields alone make it detectable: mapped columns count as their roles
    assert probe_data(_data(path, fields={"text": "abstract", "label": "condition"})) == []
    message = _one(probe_data(_data(path, format="classification", fields={"text": "abstract"})))
    assert "needs a column for 'label'" in message and "Columns: abstract, condition" in message
    message = _one(
        probe_data(_data(path, format="classification", fields={"text": "abstract", "label": "cat"}))
    )
    assert "'cat' is not a column" in message
    # an optional role mapped to a column that is not there
    alpaca = _csv(tmp_path / "a.csv", "instruction,output\ndo,done\n")
    message = _one(probe_data(_data(alpaca, fields={"system": "persona"})))
    assert "[data] fields maps 'system' to 'persona', which is not a column" in message
    # a role the format does not have, named before the required role it leaves unmapped
    first, second = probe_data(
        _data(path, format="classification", fields={"txt": "abstract", "label": "condition"})
    )
    assert "'txt' is not a role of the classification format" in first and "Did you mean 'text'?" in first
    assert "needs a column for 'text'" in second
    assert probe_data(_data(path, format="alpacca")) == []  # Recipe.problems() names a bad format


def test_json_lines_arrays_and_documents_read_only_their_first_record(tmp_path: Path) -> None:
    lines = tmp_path / "d.jsonl"
    lines.write_text('\n\n{"text": "a", "label": "x"}\n' + "not json at all\n" * 1000)  # only line 3 is read
    assert probe_data(_data(lines)) == []
    bad = tmp_path / "bad.jsonl"
    bad.write_text('\n\n{"text": broken}\n')
    assert f"{bad}:3: the first record is not valid JSON" in _one(probe_data(_data(bad)))
    listing = tmp_path / "list.jsonl"
    listing.write_text('["a", "b"]\n')
    assert f"{listing}:1: the first record is a JSON list, not an object" in _one(probe_data(_data(listing)))
    array = tmp_path / "rows.json"
    array.write_text(json.dumps([{"instruction": "q", "output": "a"}] * 3))
    assert probe_data(_data(array)) == []
    message = _one(probe_data(_data(array, fields={"output": "answer"})))
    assert f"{array} (first record): " in message and "'answer' is not a column" in message
    document = tmp_path / "doc.json"
    document.write_text(json.dumps({"version": 1, "data": [{"text": "t", "label": "l"}]}))
    assert probe_data(_data(document)) == []
    # an optional key missing from a JSON first record is no problem: later records may have it
    assert probe_data(_data(array, fields={"system": "persona"})) == []


def test_parquet_schema_and_save_to_disk_folders(tmp_path: Path) -> None:
    import datasets

    rows = datasets.Dataset.from_list([{"text": "a", "label": "x"}, {"text": "b", "label": "y"}])
    rows.to_parquet(str(tmp_path / "d.parquet"))
    assert probe_data(_data(tmp_path / "d.parquet")) == []
    assert "'body' is not a column" in _one(
        probe_data(_data(tmp_path / "d.parquet", fields={"text": "body"}))
    )
    rows.select([]).to_parquet(str(tmp_path / "none.parquet"))
    assert "has a header (text, label) but no rows" in _one(probe_data(_data(tmp_path / "none.parquet")))
    datasets.DatasetDict({"train": rows, "test": rows}).save_to_disk(str(tmp_path / "saved"))
    assert probe_data(_data(tmp_path / "saved")) == []
    message = _one(probe_data(_data(tmp_path / "saved", format="classification", fields={"label": "topic"})))
    assert "'topic' is not a column" in message and "split" in message  # the origin column load adds


def test_folders_of_files(tmp_path: Path) -> None:
    folder = tmp_path / "parts"
    folder.mkdir()
    _csv(folder / "a.csv")
    _csv(folder / "b.csv", "text,label\nmore,c\n")
    assert probe_data(_data(folder)) == []
    _csv(folder / "c.csv", "body,label\nodd,d\n")
    message = _one(probe_data(_data(folder)))
    assert "do not all have the same columns: a.csv has text, label; c.csv has body, label" in message
    (folder / "c.csv").unlink()
    (folder / "c.jsonl").write_text('{"text": "x"}\n')
    assert "holds files of several kinds" in _one(probe_data(_data(folder)))
    empty = tmp_path / "nothing"
    empty.mkdir()
    assert "holds no data files" in _one(probe_data(_data(empty)))


def test_hub_ids(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf" / "datasets"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    assert probe_data(_data("someone/some-dataset"), base_dir=tmp_path) == []  # no network call
    assert "neither a local file or folder nor a hub dataset id" in _one(probe_data(_data("two words")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    message = _one(probe_data(_data("someone/some-dataset"), base_dir=tmp_path))
    assert "HF_HUB_OFFLINE is set" in message and "[data] path" in message
    (tmp_path / "hf" / "datasets" / "someone___some-dataset").mkdir(parents=True)
    assert probe_data(_data("someone/some-dataset"), base_dir=tmp_path) == []


def test_cleaning_steps_and_the_task_must_suit_the_format(tmp_path: Path) -> None:
    lines = tmp_path / "chat.jsonl"
    lines.write_text(json.dumps({"prompt": "p", "completion": "c"}) + "\n")
    step = [{"op": "resolve_label_conflicts"}]
    message = _one(probe_data(_data(lines, cleaning=step)))
    assert "cleaning[0]: resolve_label_conflicts needs classification data" in message
    assert "sequence_classification" in _one(probe_data(_data(lines), task="sequence_classification"))
    assert probe_data(_data(lines), task="causal_lm") == []
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"prompt": "p", "chosen": "c", "rejected": "r"}) + "\n")
    assert probe_data(_data(pairs), task="preference") == []
    assert "set [model] task = 'preference'" in _one(probe_data(_data(pairs), task="causal_lm"))
    assert "model.task is 'preference'" in _one(probe_data(_data(lines), task="preference"))


def test_probing_never_loads_the_data(tmp_path: Path) -> None:
    """A large file is judged on its start, without importing datasets (which a load needs)."""
    path = tmp_path / "big.csv"
    with open(path, "w") as f:
        f.write("text,label\n")
        f.writelines(f"row {i} with some words in it,{i % 3}\n" for i in range(400_000))  # ~13 MB
    code = (
        "import sys; from tuner_tui.data.probe import probe_data; from tuner_tui.recipe import DataConfig; "
        f"print(probe_data(DataConfig(path={str(path)!r})), 'datasets' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[:2] == ["[]", "False"], out


def test_inspect_flags_merge_over_the_recipe_and_are_checked_against_the_header(tmp_path: Path) -> None:
    from tuner_tui.data.probe import inspect_data_config
    from tuner_tui.errors import TunerError

    path = _csv(tmp_path / "d.csv", "abstract,condition,source\nlong text here,a,x\n")
    recipe = DataConfig(path="elsewhere.csv", format="classification", fields={"text": "abstract"})
    merged = inspect_data_config(str(path), recipe, None, ["label=condition"])
    assert (merged.format, merged.fields) == ("classification", {"text": "abstract", "label": "condition"})
    assert merged.path == str(path)
    # another format: the recipe's fields were for its own format
    text = inspect_data_config(str(path), recipe, "text", ["text=abstract"])
    assert (text.format, text.fields) == ("text", {"text": "abstract"})
    with pytest.raises(TunerError, match="maps 'text' twice"):
        inspect_data_config(str(path), None, "classification", ["text=abstract", "text=source"])
    with pytest.raises(
        TunerError, match=r"--field label=cat: .* has no column 'cat' \(its columns: abstract"
    ):
        inspect_data_config(str(path), None, "classification", ["text=abstract", "label=cat"])
    with pytest.raises(TunerError, match="not a role of any format"):
        inspect_data_config(str(path), None, None, ["colour=abstract"])
    # JSON records may leave out an optional key: a --field for it is not refused on the first record
    lines = tmp_path / "a.jsonl"
    lines.write_text(json.dumps({"instruction": "q", "output": "a"}) + "\n")
    assert inspect_data_config(str(lines), None, None, ["system=persona"]).fields == {"system": "persona"}
    # without --format, the roles --field names make the format detectable
    both = inspect_data_config(str(path), None, None, ["text=abstract", "label=condition"])
    assert (both.format, both.fields) == ("auto", {"text": "abstract", "label": "condition"})
    with pytest.raises(TunerError, match="reads as classification, which has no 'output' role"):
        inspect_data_config(str(path), None, None, ["text=abstract", "label=condition", "output=source"])
    # a hub id is not read here; the load names its problems
    assert inspect_data_config("someone/data", None, "text", []).format == "text"


def test_auto_format_with_fields_detects_from_the_mapped_roles() -> None:
    from tuner_tui.data.formats import resolve_format

    fields = {"text": "medical_abstract", "label": "condition_label"}
    detection = resolve_format("auto", fields, ["condition_label", "medical_abstract"], [{}])
    assert (detection.format, detection.fields) == ("classification", fields)
    assert detection.evidence == ["text column 'medical_abstract' with label column 'condition_label'"]
    # without fields nothing changes: detected from the columns as they are
    assert resolve_format("auto", {}, ["text", "label"], [{}]).fields == {"text": "text", "label": "label"}
