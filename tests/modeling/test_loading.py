"""Which weights may load (safetensors unless the recipe allows pickle), remote code, offline hub ids."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import pytest

from tuner_tui.errors import TunerError
from tuner_tui.modeling import loading
from tuner_tui.modeling.describe import load_config
from tuner_tui.modeling.resolve import hub_kwargs
from tuner_tui.recipe import ModelConfig


@pytest.fixture
def pickle_only_model(tiny_assets, tmp_path: Path) -> Path:
    """The tiny model with its weights as pytorch_model.bin (pickle) instead of safetensors."""
    import torch
    from safetensors.torch import load_file

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_assets["model"], folder)
    state: dict[str, Any] = {}
    for file in sorted(folder.glob("*.safetensors")):
        state.update(load_file(file))
        file.unlink()
    for index in folder.glob("*.safetensors.index.json"):
        index.unlink()
    torch.save(state, folder / "pytorch_model.bin")
    return folder


def test_pickle_weights_are_refused_by_default(pickle_only_model: Path) -> None:
    model = ModelConfig(name_or_path=str(pickle_only_model))
    with pytest.raises(TunerError) as info:
        loading.load_model(model, device="cpu")
    message = str(info.value)
    assert str(pickle_only_model) in message and "pytorch_model.bin" in message
    assert "allow_pickle_weights = true" in message


def test_pickle_weights_load_with_the_flag_and_a_warning(pickle_only_model: Path, caplog) -> None:
    model = ModelConfig(name_or_path=str(pickle_only_model), allow_pickle_weights=True)
    with caplog.at_level(logging.WARNING, logger="tuner_tui.modeling.loading"):
        loaded = loading.load_model(model, device="cpu")
    assert loaded.config.vocab_size > 0
    assert any("pickle" in r.getMessage() and "pytorch_model.bin" in r.getMessage() for r in caplog.records)


def test_safetensors_only_unless_allowed(tiny_assets, tmp_path: Path) -> None:
    local = ModelConfig(name_or_path=str(tiny_assets["model"]))
    assert loading.weights_kwargs(local, str(tiny_assets["model"])) == {"use_safetensors": True}
    hub = ModelConfig(name_or_path="org/model")
    assert loading.weights_kwargs(hub, "org/model") == {"use_safetensors": True}
    hub.allow_pickle_weights = True
    assert loading.weights_kwargs(hub, "org/model") == {}
    # Safetensors win even when the flag allows pickle and both exist.
    both = tmp_path / "both"
    shutil.copytree(tiny_assets["model"], both)
    (both / "pytorch_model.bin").write_bytes(b"not loaded")
    allowed = ModelConfig(name_or_path=str(both), allow_pickle_weights=True)
    assert loading.weights_kwargs(allowed, str(both)) == {"use_safetensors": True}


def test_revision_and_remote_code_reach_config_tokenizer_and_model(monkeypatch, tmp_path: Path) -> None:
    import transformers

    seen: dict[str, dict[str, Any]] = {}

    class Fake:
        pad_token = "x"
        chat_template = None

        def __init__(self, name: str):
            self.name = name

    def recorder(name: str):
        def from_pretrained(path: str, **kwargs: Any) -> Fake:
            seen[name] = kwargs
            return Fake(name)

        return staticmethod(from_pretrained)

    for cls in ("AutoConfig", "AutoTokenizer", "AutoModelForCausalLM"):
        monkeypatch.setattr(
            transformers, cls, type(cls, (), {"from_pretrained": recorder(cls)}), raising=True
        )
    model = ModelConfig(name_or_path="org/model", revision="abc123", trust_remote_code=True)
    load_config(model)
    loading.load_tokenizer(model)
    loading.load_model(model, device="cpu")
    assert set(seen) == {"AutoConfig", "AutoTokenizer", "AutoModelForCausalLM"}
    for kwargs in seen.values():
        assert kwargs["revision"] == "abc123" and kwargs["trust_remote_code"] is True
    assert seen["AutoModelForCausalLM"]["use_safetensors"] is True
    # Remote code never runs unpinned, even if validation was bypassed.
    with pytest.raises(TunerError, match="revision"):
        hub_kwargs(ModelConfig(name_or_path="org/model", trust_remote_code=True))
    assert hub_kwargs(ModelConfig(name_or_path="org/model")) == {"trust_remote_code": False}


def test_offline_hub_id_names_the_variable_and_the_cache(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setattr(loading, "hub_cache_dir", lambda: str(tmp_path / "hub-cache"))
    model = ModelConfig(name_or_path="tuner-tests/no-such-model")
    for load in (lambda: load_config(model), lambda: loading.load_tokenizer(model)):
        with pytest.raises(TunerError) as info:
            load()
        message = str(info.value)
        assert "HF_HUB_OFFLINE" in message and str(tmp_path / "hub-cache") in message
        assert "tuner-tests/no-such-model" in message


def test_parameter_counts_count_packed_4bit_weights_as_the_weights_they_hold() -> None:
    """bitsandbytes stores two 4-bit weights per uint8: counted as peft counts them, so a qlora
    run logs the same counts as `tuner estimate` (which counts the unquantized shapes)."""
    import torch

    class Params4bit(torch.nn.Parameter):  # the name is what bitsandbytes' class is recognised by
        pass

    module = torch.nn.Module()
    module.packed = Params4bit(torch.zeros(8, 1, dtype=torch.uint8), requires_grad=False)
    module.adapter = torch.nn.Parameter(torch.zeros(4))
    assert loading.parameter_counts(module) == (4, 2 * 8 + 4)
