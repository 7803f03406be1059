"""What the GPU check's tests share: the CUDA skip, a ~1B Llama built from a config, data, recipes.

Nothing comes from the hub: the model is `LlamaConfig` + random weights, saved with save_pretrained
(bf16) so tuner's own loading path runs, with a byte-level BPE tokenizer trained here on the data's
own words (tests/tiny.py's builder).

`TUNER_GPU_DRY_RUN=1` on a machine without CUDA runs these tests on the CPU with a small model of
the same architecture, to check the tests' own code before a GPU lease; what only CUDA can show
(bf16, 4-bit weights, NVML, CUDA memory) then skips. On a GPU it changes nothing.
"""

from __future__ import annotations

import gc
import json
import os
import random
from pathlib import Path
from typing import Any

import pytest
import torch

ON_GPU = torch.cuda.is_available()
DRY_RUN = not ON_GPU and os.environ.get("TUNER_GPU_DRY_RUN") == "1"

NO_CUDA = (
    f"no CUDA GPU: torch.cuda.is_available() is False (torch {torch.__version__}, "
    f"{'CUDA ' + str(torch.version.cuda) if torch.version.cuda else 'a CPU-only build'}); "
    "tests/gpu runs on a GPU machine (scripts/gpu-check)"
)
NEEDS_CUDA = NO_CUDA if not DRY_RUN else "needs CUDA: the CPU dry run (TUNER_GPU_DRY_RUN) leaves it out"

# Every module here: marked `gpu`, skipped as a whole without CUDA (unless a CPU dry run).
GPU_MODULE = [pytest.mark.gpu, pytest.mark.skipif(not (ON_GPU or DRY_RUN), reason=NO_CUDA)]
# A test that means nothing without CUDA, even in a dry run.
cuda_only = pytest.mark.skipif(not ON_GPU, reason=NEEDS_CUDA)

# TinyLlama-1.1B's shape with random weights: 1.10B parameters (untied 32000-word embeddings and
# head, 22 layers, grouped-query attention). A real, published architecture, so throughput and
# memory can be compared with others' numbers for it.
LLAMA_1B: dict[str, Any] = {
    "hidden_size": 2048,
    "intermediate_size": 5632,
    "num_hidden_layers": 22,
    "num_attention_heads": 32,
    "num_key_value_heads": 4,
    "vocab_size": 32000,
    "max_position_embeddings": 4096,
    "tie_word_embeddings": False,
    "rms_norm_eps": 1e-5,
}
# The dry run's stand-in: the same architecture, small enough for a CPU.
LLAMA_DRY_RUN: dict[str, Any] = {
    **LLAMA_1B,
    "hidden_size": 128,
    "intermediate_size": 344,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 4096,
}
SHAPE = LLAMA_1B if not DRY_RUN else LLAMA_DRY_RUN
TOKENIZER_VOCAB = 2000  # the BPE's own size; the model's 32000 rows stand for a real vocabulary


def seq(gpu: int, dry_run: int) -> int:
    """A sequence length (or count) for the GPU, smaller for the CPU dry run."""
    return dry_run if DRY_RUN else gpu


def bitsandbytes_missing() -> str | None:
    """Why 4-bit weights cannot load here (None: they can): bitsandbytes absent or unimportable
    (its CUDA library must match the driver's CUDA)."""
    try:
        import bitsandbytes  # noqa: F401
    except Exception as exc:  # ImportError, or its own RuntimeError for a missing CUDA library
        return f"bitsandbytes is not importable ({type(exc).__name__}: {exc}); QLoRA needs it"
    return None


# --- data ------------------------------------------------------------------------------------


def synthetic_words(n: int = 400, seed: int = 0) -> list[str]:
    """Pronounceable made-up words: the long text rows are made of them."""
    rng = random.Random(seed)
    onsets, vowels, codas = "bdfgklmnprstvz", "aeiou", ["", "n", "r", "s", "l"]
    found: set[str] = set()
    while len(found) < n:
        found.add(
            "".join(rng.choice(onsets) + rng.choice(vowels) for _ in range(rng.randint(1, 3)))
            + rng.choice(codas)
        )
    return sorted(found)


def text_rows(n: int, min_words: int, max_words: int, seed: int = 0) -> list[dict[str, str]]:
    """Plain-text rows (format `text`) of random words: at least one token per word, so a row of
    max_length + a few words fills max_length after truncation."""
    rng = random.Random(seed)
    vocab = synthetic_words()
    return [
        {"text": " ".join(rng.choice(vocab) for _ in range(rng.randint(min_words, max_words)))}
        for _ in range(n)
    ]


def tokenizer_corpus() -> list[str]:
    from tests.tiny import alpaca_rows
    from tests.training.test_preference import planted_pairs

    corpus = [r["instruction"] + " " + r["output"] for r in alpaca_rows(64)]
    corpus += [f"{r['prompt']} {r[side]}" for r in planted_pairs(64) for side in ("chosen", "rejected")]
    corpus += ["### Instruction:\n", "### Response:\n"]
    corpus += [" ".join(synthetic_words())] * 4
    return corpus


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# --- the model -------------------------------------------------------------------------------


def build_llama(folder: Path, shape: dict[str, Any] | None = None, seed: int = 0) -> Path:
    """A Llama of `shape` (default: the 1B) with random weights and this suite's tokenizer, saved
    in bf16 on a GPU (float32 on the CPU). Weights are drawn on the GPU: seconds, not a minute."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from tests.tiny import build_tokenizer

    tokenizer = build_tokenizer(tokenizer_corpus(), vocab_size=TOKENIZER_VOCAB)
    settings = dict(shape or SHAPE)
    assert settings["vocab_size"] >= len(tokenizer), (settings["vocab_size"], len(tokenizer))
    config = LlamaConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **settings,
    )
    torch.manual_seed(seed)
    with torch.device("cuda" if ON_GPU else "cpu"):
        model = LlamaForCausalLM(config)
    if ON_GPU:
        model = model.to(torch.bfloat16)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    del model
    free_cuda()
    return folder


def ensure_llama(folder: Path, shape: dict[str, Any] | None = None) -> Path:
    """`build_llama` into `folder` unless a build there finished (its BUILT marker): the tests and
    the benchmark of one scripts/gpu-check share one model folder (GPU_CHECK_MODEL)."""
    if not (folder / "BUILT").exists():
        build_llama(folder, shape)
        (folder / "BUILT").write_text("built by tests/gpu/helpers.py\n", encoding="utf-8")
    return folder


def free_cuda() -> None:
    """Drop what earlier tests left behind: a later memory measurement starts clean."""
    gc.collect()
    if ON_GPU:
        torch.cuda.empty_cache()


# --- recipes ---------------------------------------------------------------------------------


def gpu_recipe(
    path: Path,
    model: Path,
    data: Path,
    *,
    method: str = "lora",
    held_out: float = 0.05,
    compare_base: bool = False,
    extra: str = "",
    **training: object,
) -> Path:
    """A causal-LM recipe for the suite's model: LoRA r16 (tuner's defaults otherwise), a short
    evaluation (8 samples, 8 new tokens) and no bias report, to keep each test short."""
    settings: dict[str, object] = {
        "max_steps": 20,
        "batch_size": 8,
        "learning_rate": 1e-3,
        "max_length": 64,
        "log_every_steps": 1,
        "save_every_steps": 1000,
        "keep_checkpoints": 2,
        **training,
    }
    lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in settings.items())
    path.write_text(
        f"""schema_version = 1
[project]
name = "gpu-check"
seed = 7
[data]
path = "{data}"
validation_fraction = {held_out}
test_fraction = {held_out}
[model]
name_or_path = "{model}"
[method]
type = "{method}"
r = 16
alpha = 32.0
dropout = 0.05
[evaluation]
max_samples = 8
compare_base = {str(compare_base).lower()}
[evaluation.generation]
max_new_tokens = 8
[bias]
enabled = false
[training]
{lines}
{extra}""",
        encoding="utf-8",
    )
    return path


def wait_while_running(run: Any, predicate: Any, timeout: float, what: str) -> None:
    """`tests.waiting.wait_for`, failing at once (with the worker's log) if the run ends first: a
    run that cannot start must not hold the check's time budget for the whole timeout."""
    from tests.waiting import wait_for
    from tuner_tui.runs.state import TERMINAL_PHASES, read_state

    def check() -> bool:
        if predicate():
            return True
        phase = read_state(run.state).get("phase")
        if phase in TERMINAL_PHASES | {"crashed"}:
            log = run.log.read_text(encoding="utf-8", errors="replace") if run.log.exists() else ""
            raise AssertionError(f"the run ended ({phase}) before {what}:\n{log[-3000:]}")
        return False

    wait_for(check, timeout, what)
