"""Tiny models for the ship tests: a Llama whose tokenizer llama.cpp's converter reads without a
network (a Llama-2-style byte-fallback BPE, "llama" in GGUF terms), and finished runs."""

from __future__ import annotations

import threading
from pathlib import Path

from tests.tiny import alpaca_rows


def build_spm_tokenizer(corpus: list[str], vocab_size: int = 420):
    """A Llama-2-style tokenizer: BPE over '▁'-joined words with byte fallback (<0x00>..<0xFF>).

    llama.cpp's converter reads this layout as the 'llama' (SentencePiece-like) vocabulary without
    the BPE pre-tokenizer hash check, which a home-made byte-level BPE would fail (its hash is not
    in the converter's list of known tokenizers)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<pad>"]
    byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials + byte_tokens, show_progress=False
    )
    tok.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )


def build_gguf_llama(folder: Path, seed: int = 0) -> Path:
    """A 2-layer Llama (hidden 32) with the tokenizer above, saved with save_pretrained."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    corpus = [r["instruction"] + " " + r["output"] for r in alpaca_rows(64)]
    corpus += ["### Instruction:\n", "### Response:\n"]
    tokenizer = build_spm_tokenizer(corpus)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        initializer_range=0.3,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def finished_run(recipe_path: Path, runs_dir: Path):
    """A run trained and evaluated by the real worker, in this process; returns its RunDir."""
    from tuner_tui.runs.launcher import create_run
    from tuner_tui.runs.worker import run_worker

    run = create_run(recipe_path, runs_dir)
    assert run_worker(run.root, threading.Event()) == 0, run.log.read_text() if run.log.exists() else ""
    return run
