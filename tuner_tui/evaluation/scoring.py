"""Scorers: the only way evaluation and bias probes touch a model.

Each wraps a model + tokenizer and answers one kind of question in batches, on the model's device,
under `torch.no_grad()`: class probabilities, sequence log-likelihoods, pseudo-log-likelihoods,
greedy generations.

Each also takes `should_stop`, asked before every batch (and, while generating, after every new
token): when it answers True the scorer raises `EvaluationStopped`, so a stop request ends even
a long evaluation within about one batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


class EvaluationStopped(Exception):
    """A stop was requested while a model was being scored."""


def _device(model: Any) -> Any:
    return next(model.parameters()).device


def _never() -> bool:
    return False


class _Scorer:
    def __init__(self, should_stop: Callable[[], bool] | None):
        self.should_stop = should_stop or _never

    def check_stop(self) -> None:
        """Raise `EvaluationStopped` if a stop was requested."""
        if self.should_stop():
            raise EvaluationStopped()


class ClassifierScorer(_Scorer):
    """Class probabilities from a sequence-classification model."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        id2label: dict[int, str],
        max_length: int = 128,
        batch_size: int = 32,
        should_stop: Callable[[], bool] | None = None,
    ):
        super().__init__(should_stop)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.labels = [id2label[i] for i in range(len(id2label))]
        self.max_length = max_length
        self.batch_size = batch_size

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        import torch

        out = []
        for start in range(0, len(texts), self.batch_size):
            self.check_stop()
            batch = self.tokenizer(
                [t or "" for t in texts[start : start + self.batch_size]],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(_device(self.model))
            with torch.no_grad():
                logits = self.model(**batch).logits.float()
            out.append(torch.softmax(logits, dim=-1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.labels)))


class CausalScorer(_Scorer):
    """Log-likelihoods and generations from a causal LM."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        max_length: int = 256,
        batch_size: int = 8,
        should_stop: Callable[[], bool] | None = None,
    ):
        super().__init__(should_stop)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.batch_size = batch_size
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token

    def _token_logprobs(self, texts: list[str]) -> list[np.ndarray]:
        """Per text, log p(token_i | tokens_<i) for every token after the first."""
        import torch

        result: list[np.ndarray] = []
        for start in range(0, len(texts), self.batch_size):
            self.check_stop()
            chunk = texts[start : start + self.batch_size]
            self.tokenizer.padding_side = "right"
            batch = self.tokenizer(
                chunk, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
            ).to(_device(self.model))
            with torch.no_grad():
                logits = self.model(**batch).logits.float()
            logprobs = torch.log_softmax(logits[:, :-1], dim=-1)
            targets = batch["input_ids"][:, 1:]
            picked = logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
            mask = batch["attention_mask"][:, 1:].bool()
            for row, row_mask in zip(picked, mask, strict=True):
                result.append(row[row_mask].cpu().numpy())
        return result

    def sequence_logprob(self, texts: list[str]) -> np.ndarray:
        return np.array([lp.sum() for lp in self._token_logprobs(texts)], dtype=np.float64)

    def token_count(self, texts: list[str]) -> np.ndarray:
        """How many tokens `sequence_logprob` scores per text (all after the first), from the
        tokenizer alone: no second forward pass over texts that were just scored."""
        ids = self.tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]
        return np.array([max(len(row) - 1, 0) for row in ids], dtype=np.int64)

    def continuation_logprob(
        self, prompts: list[str], continuations: list[str]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per pair, the summed log p of the continuation's tokens given the prompt, and how many
        tokens that is (with an empty prompt: every token after the first)."""
        import torch

        sums, counts = [], []
        for prompt, continuation in zip(prompts, continuations, strict=True):
            self.check_stop()
            prompt_len = len(self.tokenizer(prompt)["input_ids"]) if prompt else 1
            full = self.tokenizer(
                prompt + continuation, return_tensors="pt", truncation=True, max_length=self.max_length
            )["input_ids"].to(_device(self.model))
            with torch.no_grad():
                logits = self.model(input_ids=full).logits.float()
            logprobs = torch.log_softmax(logits[0, :-1], dim=-1)
            picked = logprobs.gather(-1, full[0, 1:].unsqueeze(-1)).squeeze(-1)[max(prompt_len - 1, 0) :]
            sums.append(float(picked.sum()))
            counts.append(int(picked.numel()))
        return np.array(sums), np.array(counts)

    def generate(
        self,
        prompts: list[str],
        max_new_tokens: int = 64,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        num_beams: int = 1,
    ) -> list[str]:
        """Generated continuations (prompt removed), left-padded batches."""
        import torch

        outputs: list[str] = []
        self.tokenizer.padding_side = "left"
        try:
            for start in range(0, len(prompts), self.batch_size):
                self.check_stop()
                chunk = prompts[start : start + self.batch_size]
                batch = self.tokenizer(
                    chunk,
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                    add_special_tokens=False,
                ).to(_device(self.model))
                kwargs: dict[str, Any] = {
                    "max_new_tokens": max_new_tokens,
                    "do_sample": do_sample,
                    "num_beams": num_beams,
                    "pad_token_id": self.tokenizer.pad_token_id,
                }
                if self.should_stop is not _never:  # max_new_tokens can be large: stop mid-batch too
                    kwargs["stopping_criteria"] = _stopping_criteria(self.should_stop)
                if do_sample:
                    kwargs.update(temperature=temperature, top_p=top_p)
                with torch.no_grad():
                    generated = self.model.generate(**batch, **kwargs)
                self.check_stop()  # a batch cut short by a stop request is not an answer
                new_tokens = generated[:, batch["input_ids"].shape[1] :]
                outputs.extend(self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
        finally:
            self.tokenizer.padding_side = "right"
        return outputs


def _stopping_criteria(should_stop: Callable[[], bool]) -> Any:
    """A generation stopping criterion that ends every sequence once `should_stop()` is True."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class StopRequested(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            return torch.full((input_ids.shape[0],), should_stop(), dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([StopRequested()])


class MaskedLMScorer(_Scorer):
    """Pseudo-log-likelihood (Salazar et al., 2020) from a masked LM: mask each token in turn."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        max_length: int = 128,
        batch_size: int = 16,
        should_stop: Callable[[], bool] | None = None,
    ):
        super().__init__(should_stop)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.batch_size = batch_size

    def pseudo_log_likelihood(self, texts: list[str]) -> np.ndarray:
        import torch

        scores = []
        special = set(self.tokenizer.all_special_ids)
        for text in texts:
            ids = self.tokenizer(text, truncation=True, max_length=self.max_length, return_tensors="pt")[
                "input_ids"
            ][0]
            positions = [i for i, token in enumerate(ids.tolist()) if token not in special]
            total = 0.0
            for start in range(0, len(positions), self.batch_size):
                self.check_stop()
                chunk = positions[start : start + self.batch_size]
                masked = ids.repeat(len(chunk), 1)
                for row, pos in enumerate(chunk):
                    masked[row, pos] = self.tokenizer.mask_token_id
                with torch.no_grad():
                    logits = self.model(input_ids=masked.to(_device(self.model))).logits.float()
                logprobs = torch.log_softmax(logits, dim=-1)
                for row, pos in enumerate(chunk):
                    total += float(logprobs[row, pos, ids[pos]])
            scores.append(total)
        return np.array(scores)
