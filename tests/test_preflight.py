"""Everything knowable before training is refused up front: by `tuner validate` and by `tuner run`
(exit 2, one paragraph naming the key, and no run directory), from recipe values and cheap looks
at the files and the machine."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from tests.tiny import write_recipe
from tuner_tui import cli, preflight
from tuner_tui.recipe import Recipe, parse_document, parse_recipe

REAL_CUDA_COUNT = preflight.cuda_device_count


@pytest.fixture(autouse=True)
def _no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine's GPUs must not decide the outcome: pretend there are none."""
    monkeypatch.setattr(preflight, "cuda_device_count", lambda: 0)


def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str):
    """`tuner ARGS` in this process: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["tuner", *args])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    out, err = capsys.readouterr()
    code = exit_info.value.code
    return (code if isinstance(code, int) else 0), out, err


def _set(text: str, table: str, key: str, value: str) -> str:
    """`text` with `key = value` in `[table]` (replacing the key when it is there)."""
    lines = text.splitlines()
    start = lines.index(f"[{table}]")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("[")), len(lines))
    for i in range(start + 1, end):
        if re.match(rf"{re.escape(key)}\s*=", lines[i]):
            lines[i] = f"{key} = {value}"
            break
    else:
        lines.insert(start + 1, f"{key} = {value}")
    return "\n".join(lines) + "\n"


def _files(tmp: Path, tiny: dict[str, Path]) -> dict[str, Path]:
    """Bad files of every kind, made once per test in its tmp folder."""
    no_weights = tmp / "no-weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text((tiny["model"] / "config.json").read_text())
    pickled = tmp / "pickled"
    pickled.mkdir()
    for item in tiny["model"].iterdir():
        if not item.name.endswith(".safetensors"):
            (pickled / item.name).write_bytes(item.read_bytes())
    (pickled / "pytorch_model.bin").write_bytes(b"not really a pickle")
    garbage = tmp / "garbage.jsonl"
    garbage.write_text('this is not json\n{"instruction": "a", "output": "b"}\n')
    other_columns = tmp / "other.jsonl"
    other_columns.write_text('{"question": "a", "answer": "b"}\n')
    bad_probes = tmp / "probes.jsonl"
    bad_probes.write_text("SECRET-FIRST-LINE\n")
    bad_pairs = tmp / "pairs.csv"
    bad_pairs.write_text("SECRET,COLUMNS\nx,y\n")
    empty_dir = tmp / "empty-data"
    empty_dir.mkdir()
    mixed_dir = tmp / "mixed-data"  # JSON Lines files with other keys: not one table
    mixed_dir.mkdir()
    (mixed_dir / "a.jsonl").write_text('{"instruction": "a", "output": "b"}\n')
    (mixed_dir / "b.jsonl").write_text('{"question": "a", "answer": "b"}\n')
    return {
        "mixed_dir": mixed_dir,
        "no_weights": no_weights,
        "pickled": pickled,
        "garbage": garbage,
        "other_columns": other_columns,
        "bad_probes": bad_probes,
        "bad_pairs": bad_pairs,
        "empty_dir": empty_dir,
    }


# (name, edit of the valid recipe's text, a key path the message must name)
CASES: list[tuple[str, object, str]] = [
    ("nan learning_rate", ("training", "learning_rate", "nan"), "training.learning_rate"),
    ("inf learning_rate", ("training", "learning_rate", "inf"), "training.learning_rate"),
    ("zero learning_rate", ("training", "learning_rate", "0.0"), "training.learning_rate"),
    ("nan warmup", ("training", "warmup_ratio", "nan"), "training.warmup_ratio"),
    ("nan max_grad_norm", ("training", "max_grad_norm", "nan"), "training.max_grad_norm"),
    ("nan weight_decay", ("training", "weight_decay", "nan"), "training.weight_decay"),
    ("nan dropout", ("method", "dropout", "nan"), "method.dropout"),
    ("nan alpha", ("method", "alpha", "nan"), "method.alpha"),
    ("huge seed", ("project", "seed", str(2**32)), "project.seed"),
    ("negative seed", ("project", "seed", "-1"), "project.seed"),
    ("huge batch", ("training", "batch_size", str(10**12)), "training.batch_size"),
    ("zero batch", ("training", "batch_size", "0"), "training.batch_size"),
    (
        "huge accumulation",
        ("training", "gradient_accumulation", str(10**9)),
        "training.gradient_accumulation",
    ),
    ("billion epochs", ("training", "epochs", "1e9"), "training.epochs"),
    ("nan epochs", ("training", "epochs", "nan"), "training.epochs"),
    ("negative max_steps", ("training", "max_steps", "-1"), "training.max_steps"),
    ("huge max_steps", ("training", "max_steps", str(10**12)), "training.max_steps"),
    ("tiny max_length", ("training", "max_length", "4"), "training.max_length"),
    ("huge max_length", ("training", "max_length", str(10**9)), "training.max_length"),
    ("zero keep_checkpoints", ("training", "keep_checkpoints", "0"), "training.keep_checkpoints"),
    ("zero processes", ("training", "num_processes", "0"), "training.num_processes"),
    ("port out of range", ("training", "master_port", "70000"), "training.master_port"),
    ("string batch", ("training", "batch_size", '"8"'), "training.batch_size"),
    ("float max_steps", ("training", "max_steps", "1.5"), "training.max_steps"),
    ("unknown training key", ("training", "learnin_rate", "0.1"), "training.learnin_rate"),
    ("unknown scheduler", ("training", "lr_scheduler", '"cosin"'), "training.lr_scheduler"),
    ("unknown method", ("method", "type", '"lorra"'), "method.type"),
    ("two nodes, no address", ("training", "nnodes", "2"), "training.master_addr"),
    (
        "huge max_new_tokens",
        ("evaluation.generation", "max_new_tokens", str(10**9)),
        "evaluation.generation.max_new_tokens",
    ),  # fmt: skip
    ("nan temperature", ("evaluation.generation", "temperature", "nan"), "evaluation.generation.temperature"),
    ("top_p above 1", ("evaluation.generation", "top_p", "2.0"), "evaluation.generation.top_p"),
    ("fractions leave nothing", ("data", "test_fraction", "0.85"), "data.test_fraction"),
    ("nan fraction", ("data", "validation_fraction", "nan"), "data.validation_fraction"),
    ("unknown format", ("data", "format", '"alpacca"'), "data.format"),
    ("schema version", "schema_2", "schema_version"),
    ("remote code unpinned", ("model", "trust_remote_code", "true"), "model.trust_remote_code"),
    ("packing with prompt tuning", "packing_prompt", "training.packing"),
    ("packing with bucketing", "packing_bucketing", "training.bucket_by_length"),
    ("fsdp on CPU", "fsdp_cpu", "training.strategy"),
    ("cuda on CPU", ("training", "device", '"cuda"'), "training.device"),
    ("mps off a Mac", ("training", "device", '"mps"'), "training.device"),
    ("prefix tuning with checkpointing", "prefix_checkpointing", "training.gradient_checkpointing"),
    ("adalora with two steps", "adalora_short", "training.max_steps"),
    ("loftq without bitsandbytes", ("method", "init", '"loftq"'), "method.init"),
    ("freeze more layers than there are", "freeze_too_many", "method.trainable_layers"),
    ("qlora on CPU", ("method", "type", '"qlora"'), "method.type"),
    ("objective metric of the other task", "wrong_metric", "objectives[0].metric"),
    ("objective on a split that will not exist", "missing_split", "objectives[0].split"),
    ("objective target nan", "nan_target", "objectives[0].target"),
    ("unknown bias group", ("bias", "groups", '["gendr"]'), "bias.groups[0]"),
    ("unknown cleaning op", "bad_cleaning", "data.cleaning[0].op"),
    ("duplicate key", "duplicate_key", "line 2"),
    ("duplicate table", "duplicate_table", "line"),
    ("TOML syntax", "syntax", "line"),
    ("missing data file", ("data", "path", '"nothere.jsonl"'), "data.path"),
    ("data path is a device", ("data", "path", '"/dev/zero"'), "data.path"),
    ("data folder without data files", ("data", "path", "EMPTY_DIR"), "data.path"),
    ("data folder of JSON files with other keys", ("data", "path", "MIXED_DIR"), "not all have the same"),
    ("unparseable data", ("data", "path", "GARBAGE"), "data.path"),
    ("data lacks the mapped columns", "unmapped", "data"),
    ("missing model folder", ("model", "name_or_path", '"./no/such/model"'), "model.name_or_path"),
    ("model folder without weights", ("model", "name_or_path", "NO_WEIGHTS"), "model.name_or_path"),
    ("pickle-only weights", ("model", "name_or_path", "PICKLED"), "model.allow_pickle_weights"),
    ("missing probes file", ("bias", "probes", '"no-probes.jsonl"'), "bias.probes"),
    ("malformed probes file", ("bias", "probes", "BAD_PROBES"), "bias.probes"),
    ("missing pairs file", ("bias", "pairs_file", '"no-pairs.csv"'), "bias.pairs_file"),
    ("malformed pairs file", ("bias", "pairs_file", "BAD_PAIRS"), "bias.pairs_file"),
]


def _bad_recipe(tmp: Path, tiny: dict[str, Path], edit: object) -> Path:
    path = write_recipe(tmp / "recipe.toml", tiny["data"], tiny["model"], "[bias]\nenabled = true\n")
    text = path.read_text()
    files = _files(tmp, tiny)
    if isinstance(edit, tuple):
        table, key, value = edit
        for name, file in files.items():
            value = value.replace(name.upper(), json.dumps(str(file)))
        text = _set(text, table, key, value)
    elif edit == "packing_prompt":
        text = _set(_set(text, "training", "packing", "true"), "method", "type", '"prompt_tuning"')
    elif edit == "packing_bucketing":
        text = _set(_set(text, "training", "packing", "true"), "training", "bucket_by_length", "true")
    elif edit == "fsdp_cpu":
        text = _set(_set(text, "training", "num_processes", "2"), "training", "strategy", '"fsdp"')
    elif edit == "prefix_checkpointing":
        text = _set(text, "training", "gradient_checkpointing", "true")
        text = _set(text, "method", "type", '"prefix_tuning"')
    elif edit == "adalora_short":
        text = _set(_set(text, "training", "max_steps", "2"), "method", "type", '"adalora"')
    elif edit == "freeze_too_many":
        text = _set(_set(text, "method", "trainable_layers", "99"), "method", "type", '"freeze"')
    elif edit == "wrong_metric":
        text += '[[objectives]]\nmetric = "accuracy"\ntarget = 0.5\n'
    elif edit == "missing_split":
        text = _set(text, "data", "validation_fraction", "0.0")
        text += '[[objectives]]\nmetric = "loss"\ntarget = 3.0\nsplit = "validation"\n'
    elif edit == "nan_target":
        text += '[[objectives]]\nmetric = "loss"\ntarget = nan\n'
    elif edit == "bad_cleaning":
        text += '[[data.cleaning]]\nop = "dedupe"\n'
    elif edit == "schema_2":
        text = text.replace("schema_version = 1", "schema_version = 2")
    elif edit == "duplicate_key":
        text = text.replace("schema_version = 1\n", "schema_version = 1\nschema_version = 1\n", 1)
    elif edit == "duplicate_table":
        text += "[method]\nr = 8\n"
    elif edit == "syntax":
        text += "[training\n"
    elif edit == "unmapped":
        text = _set(text, "data", "fields", '{instruction = "question", output = "reply"}')
        text = _set(text, "data", "format", '"alpaca"')
        text = _set(text, "data", "path", json.dumps(str(files["other_columns"])))
    path.write_text(text)
    return path


def test_the_valid_recipe_passes(monkeypatch, capsys, tiny_assets, tmp_path: Path) -> None:
    path = write_recipe(tmp_path / "recipe.toml", tiny_assets["data"], tiny_assets["model"])
    code, out, err = run_cli(monkeypatch, capsys, "validate", str(path))
    assert code == 0, err
    assert "OK" in out


@pytest.mark.parametrize(("name", "edit", "key"), CASES, ids=[c[0] for c in CASES])
def test_validate_and_run_refuse_before_any_run_directory(
    name: str, edit: object, key: str, monkeypatch, capsys, tiny_assets, tmp_path: Path
) -> None:
    recipe = _bad_recipe(tmp_path, tiny_assets, edit)
    code, out, err = run_cli(monkeypatch, capsys, "validate", str(recipe))
    assert code == 2, f"{name}: validate exited {code}\n{out}{err}"
    assert key in err, f"{name}: the message does not name {key}:\n{err}"
    assert "Traceback" not in err and "internal error" not in err
    assert "SECRET" not in err, "an error quoted a file's contents"

    runs = tmp_path / "runs"
    code, out, err = run_cli(monkeypatch, capsys, "run", str(recipe), "--runs-dir", str(runs), "--detach")
    assert code == 2, f"{name}: run exited {code}\n{out}{err}"
    assert key in err
    assert not runs.exists() or not any(runs.iterdir()), f"{name}: a run directory was made"


def test_every_problem_is_listed_at_once(monkeypatch, capsys, tiny_assets, tmp_path: Path) -> None:
    path = write_recipe(tmp_path / "recipe.toml", tiny_assets["data"], tiny_assets["model"])
    text = _set(path.read_text(), "data", "path", '"nothere.jsonl"')
    path.write_text(_set(text, "training", "learning_rate", "nan"))
    code, _, err = run_cli(monkeypatch, capsys, "validate", str(path))
    assert code == 2
    assert "training.learning_rate" in err
    # Type and range problems come first; the file checks run once the values are usable.
    path.write_text(text)
    code, _, err = run_cli(monkeypatch, capsys, "validate", str(path))
    assert "data.path" in err and "nothere.jsonl" in err


def test_duplicate_key_names_the_second_line() -> None:
    from tuner_tui.recipe import RecipeError

    with pytest.raises(RecipeError) as error:
        parse_document("[training]\nbatch_size = 8\nlearning_rate = 0.1\nbatch_size = 4\n", "r.toml")
    assert "line 4" in str(error.value) and "batch_size" in str(error.value)


def test_nan_is_refused_for_every_float_key() -> None:
    floats = [
        ("training", f) for f in ("epochs", "learning_rate", "warmup_ratio", "weight_decay", "max_grad_norm")
    ] + [("method", "alpha"), ("method", "dropout"), ("data", "test_fraction")]
    for section, key in floats:
        data = Recipe().to_dict()
        data[section][key] = float("nan")
        _, problems = parse_recipe(data)
        assert any(p.path == f"{section}.{key}" and "finite" in p.message for p in problems), (section, key)


def test_gpu_layout_is_judged_against_the_gpus_there(monkeypatch, tiny_assets, tmp_path: Path) -> None:
    path = write_recipe(
        tmp_path / "recipe.toml", tiny_assets["data"], tiny_assets["model"], num_processes=4, device="cuda"
    )
    from tuner_tui.recipe import load_recipe

    recipe = load_recipe(path)
    monkeypatch.setattr(preflight, "cuda_device_count", lambda: 2)
    problems = preflight.preflight_problems(recipe, tmp_path)
    assert [p.path for p in problems] == ["training.num_processes"]
    monkeypatch.setattr(preflight, "cuda_device_count", lambda: 4)
    assert preflight.preflight_problems(recipe, tmp_path) == []


def test_cuda_visible_devices_hides_gpus(monkeypatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    REAL_CUDA_COUNT.cache_clear()
    assert REAL_CUDA_COUNT() == 0
    REAL_CUDA_COUNT.cache_clear()


def test_resume_refuses_when_the_data_is_gone(monkeypatch, capsys, tiny_assets, tmp_path: Path) -> None:
    """A run whose data file was moved away is refused before its state is touched."""
    from tuner_tui.runs.launcher import create_run

    data = tmp_path / "data.jsonl"
    data.write_bytes(tiny_assets["data"].read_bytes())
    recipe = write_recipe(tmp_path / "recipe.toml", data, tiny_assets["model"])
    run = create_run(recipe, tmp_path / "runs")
    data.unlink()
    before = run.state.read_text()
    code, _, err = run_cli(monkeypatch, capsys, "run", "--resume", str(run.root), "--detach")
    assert code == 2 and "data.path" in err
    assert run.state.read_text() == before


def test_range_messages_show_the_value_as_written() -> None:
    """A seed one above the limit reads as that number, not as the limit's rounded twin."""
    from tuner_tui.recipe import parse_recipe

    _, problems = parse_recipe({"project": {"seed": 2**32}})
    (seed,) = [p for p in problems if p.path == "project.seed"]
    assert "is 4294967296, must be at most 4294967295" in seed.message, seed.message
