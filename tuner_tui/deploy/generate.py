"""Answer prompts with a run's tuned model (and its base model), token by token.

`RunModels` loads a completed run once: the tokenizer saved beside the adapter (it carries
exactly the chat template the run trained with), the tuned model, and the base model (for a PEFT
adapter, the same weights with the adapter switched off: no second copy in memory). Causal LMs
stream tokens through transformers' `TextIteratorStreamer`; classifiers give label
probabilities. `tuner chat` uses it in its own process; the wizard's Try it panel talks to it as
a separate process (`python -m tuner_tui.deploy.generate RUN_DIR`) speaking JSON lines, so the
TUI never imports torch:

    stdin   {"id": "1", "messages": [{"role": "user", "content": "..."}], "models": ["base", "tuned"]}
            {"id": "2", "text": "..."}              (a classifier)
            {"cancel": "1"}                         (stop that answer after the current token)
    stdout  {"event": "ready", "task": ..., "labels": [...], "models": [...], "chat_template": ...}
            {"event": "token", "id": "1", "model": "tuned", "text": "..."}
            {"event": "done", "id": "1", "model": "tuned", "text": "...", "tokens": N,
             "seconds": S, "cancelled": false}
            {"event": "probabilities", "id": "2", "model": "tuned", "probabilities": {label: p}}
            {"event": "error", "id": "1", "message": "..."}
"""

from __future__ import annotations

import dataclasses
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuner_tui.errors import TunerError
from tuner_tui.recipe import GenerationConfig, Recipe

MODELS = ("base", "tuned")


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding settings: the run's [evaluation.generation], each overridable (`tuner chat
    --max-new-tokens/--temperature/--top-p/--sample`)."""

    max_new_tokens: int = 128
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0

    @classmethod
    def of(cls, config: GenerationConfig, **overrides: Any) -> GenerationSettings:
        base = cls(config.max_new_tokens, config.do_sample, config.temperature, config.top_p)
        given = {k: v for k, v in overrides.items() if v is not None}
        if "temperature" in given and given["temperature"] <= 0:
            raise TunerError(
                f"--temperature {given['temperature']} must be greater than 0; for greedy answers leave "
                "sampling off (the default unless [evaluation.generation] do_sample = true)."
            )
        if "top_p" in given and not 0 < given["top_p"] <= 1:
            raise TunerError(f"--top-p {given['top_p']} must be in (0, 1].")
        if "max_new_tokens" in given and given["max_new_tokens"] < 1:
            raise TunerError(f"--max-new-tokens {given['max_new_tokens']} must be at least 1.")
        return dataclasses.replace(base, **given)

    def generate_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "do_sample": self.do_sample}
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_p=self.top_p)
        return kwargs


@dataclass
class Answer:
    """One finished (or cancelled) answer."""

    model: str
    text: str
    tokens: int
    seconds: float
    cancelled: bool = False


class RunModels:
    """A completed run's tokenizer and models, loaded once for many prompts."""

    def __init__(self, run_dir: Path | str, with_base: bool = True, device: str = "cpu"):
        from transformers import set_seed

        from tuner_tui.deploy.artifacts import completed_run, load_run_tokenizer
        from tuner_tui.modeling.export import is_peft_adapter, load_tuned_model, read_id2label

        self.run, self.recipe = completed_run(run_dir, "chat with")
        if self.recipe.model.task == "preference":
            self.task = "causal_lm"  # preference tuning makes a causal LM
        else:
            self.task = self.recipe.model.task
        self.tokenizer = load_run_tokenizer(self.run, self.recipe)
        self.id2label = read_id2label(self.run.adapter)
        self.device = device
        # The untuned classifier head is random: seeded as evaluation seeds it, so "base" here is
        # the base model the report measured.
        set_seed(self.recipe.project.seed)
        self.tuned = load_tuned_model(self.recipe, self.run.adapter, device=device)
        self._peft = is_peft_adapter(self.run.adapter)
        self._base: Any = None
        self.with_base = with_base
        if with_base and not self._peft:  # full/freeze tuning saved a whole model: load the base
            from tuner_tui.modeling.loading import load_model

            set_seed(self.recipe.project.seed)
            self._base = load_model(
                self.recipe.model,
                device=device,
                num_labels=len(self.id2label) if self.id2label else None,
                id2label=self.id2label,
            ).eval()
        self.lock = threading.Lock()  # one generation at a time: the adapter switch is shared state

    @property
    def models(self) -> tuple[str, ...]:
        return MODELS if self.with_base else ("tuned",)

    @property
    def chat_template(self) -> str:
        from tuner_tui.deploy.artifacts import uses_chat_template

        if not uses_chat_template(self.recipe):
            return "none (raw text)"
        return str(self.recipe.environment.get("chat_template") or "tokenizer")

    def _model(self, which: str) -> tuple[Any, AbstractContextManager[Any]]:
        """The model to run for `which`, and the context it runs in (the adapter off for base)."""
        if which == "tuned":
            return self.tuned, nullcontext()
        if which != "base" or not self.with_base:
            raise TunerError(f"No '{which}' model here: choose one of {', '.join(self.models)}.")
        if self._peft:
            return self.tuned, self.tuned.disable_adapter()
        return self._base, nullcontext()

    def prompt(self, messages: list[dict[str, str]]) -> str:
        from tuner_tui.deploy.artifacts import render_prompt

        return render_prompt(self.tokenizer, self.recipe, messages)

    def stream(
        self,
        messages: list[dict[str, str]],
        which: str,
        settings: GenerationSettings,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> Iterator[str]:
        """Yield the answer's text piece by piece as the model generates it; ends early (after
        the current token) once `cancelled()` is true."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        if self.task != "causal_lm":
            raise TunerError("This run is a classifier: it gives label probabilities, not text.")
        model, context = self._model(which)
        prompt = self.prompt(messages)
        inputs = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(self.device)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)

        class Cancel(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                return torch.full(
                    (input_ids.shape[0],), cancelled(), dtype=torch.bool, device=input_ids.device
                )

        failure: list[BaseException] = []

        def work() -> None:
            try:
                with self.lock, context, torch.no_grad():
                    model.generate(
                        **inputs,
                        streamer=streamer,
                        stopping_criteria=StoppingCriteriaList([Cancel()]),
                        pad_token_id=self.tokenizer.pad_token_id,
                        **settings.generate_kwargs(),
                    )
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                failure.append(exc)
                streamer.end()

        thread = threading.Thread(target=work, name=f"generate-{which}", daemon=True)
        thread.start()
        try:
            yield from streamer
        finally:
            thread.join()
        if failure:
            raise failure[0]

    def answer(
        self,
        messages: list[dict[str, str]],
        which: str,
        settings: GenerationSettings,
        on_text: Callable[[str], object] = lambda _: None,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> Answer:
        """The whole answer, each piece passed to `on_text` as it arrives."""
        started = time.monotonic()
        parts = []
        for piece in self.stream(messages, which, settings, cancelled):
            if piece:
                parts.append(piece)
                on_text(piece)
        text = "".join(parts)
        tokens = len(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else 0
        return Answer(which, text, tokens, time.monotonic() - started, cancelled())

    def probabilities(self, text: str, which: str) -> dict[str, float]:
        """Label -> probability for `text` (a classifier run), by label order."""
        from tuner_tui.evaluation.scoring import ClassifierScorer

        if self.task != "sequence_classification" or not self.id2label:
            raise TunerError("This run is a causal LM: it answers with text, not label probabilities.")
        model, context = self._model(which)
        scorer = ClassifierScorer(
            model, self.tokenizer, self.id2label, max_length=self.recipe.training.max_length
        )
        with self.lock, context:
            probs = scorer.predict_proba([text])[0]
        return {self.id2label[i]: float(p) for i, p in enumerate(probs)}


def recipe_settings(recipe: Recipe, **overrides: Any) -> GenerationSettings:
    return GenerationSettings.of(recipe.evaluation.generation, **overrides)


# -- the JSON-lines process (the wizard's Try it panel) --------------------------------------------


class _Protocol:
    def __init__(self, models: RunModels, settings: GenerationSettings, out: Any = None):
        self.models, self.settings = models, settings
        self.out = out or sys.stdout
        self.cancelled: set[str] = set()
        self.write_lock = threading.Lock()

    def emit(self, event: str, **fields: Any) -> None:
        with self.write_lock:
            self.out.write(json.dumps({"event": event, **fields}, ensure_ascii=False) + "\n")
            self.out.flush()

    def handle(self, request: dict[str, Any]) -> None:
        rid = str(request.get("id", ""))
        try:
            if "text" in request:
                for which in request.get("models") or self.models.models:
                    probs = self.models.probabilities(str(request["text"]), which)
                    self.emit("probabilities", id=rid, model=which, probabilities=probs)
                self.emit("finished", id=rid)
                return
            messages = request.get("messages")
            if not isinstance(messages, list) or not messages:
                raise TunerError("A request needs 'messages' (a list of {role, content}) or 'text'.")
            settings = dataclasses.replace(
                self.settings, **{k: v for k, v in (request.get("settings") or {}).items()}
            )
            for which in request.get("models") or self.models.models:
                if rid in self.cancelled:
                    break

                def on_text(piece: str, w: str = str(which)) -> None:
                    self.emit("token", id=rid, model=w, text=piece)

                answer = self.models.answer(
                    messages, which, settings, on_text=on_text, cancelled=lambda: rid in self.cancelled
                )
                self.emit(
                    "done",
                    id=rid,
                    model=which,
                    text=answer.text,
                    tokens=answer.tokens,
                    seconds=round(answer.seconds, 3),
                    cancelled=answer.cancelled,
                )
            self.emit("finished", id=rid, cancelled=rid in self.cancelled)
        except Exception as exc:  # noqa: BLE001 - the panel shows it; the process serves on
            self.emit("error", id=rid, message=str(exc) if isinstance(exc, TunerError) else repr(exc))


def serve_lines(models: RunModels, settings: GenerationSettings, lines: Any = None, out: Any = None) -> None:
    """Read requests from `lines` (stdin) until it ends; answer one at a time. Cancellations are
    read while an answer is being generated (a reader thread queues the requests)."""
    import queue

    protocol = _Protocol(models, settings, out)
    pending: queue.Queue[dict[str, Any] | None] = queue.Queue()
    source = lines if lines is not None else sys.stdin

    def read() -> None:
        for line in source:
            line = line.strip()
            if not line:
                continue
            try:
                request = json.loads(line)
            except ValueError:
                protocol.emit("error", id="", message=f"not a JSON line: {line[:80]}")
                continue
            if not isinstance(request, dict):
                continue
            if "cancel" in request:
                protocol.cancelled.add(str(request["cancel"]))
            elif request.get("quit"):
                break
            else:
                pending.put(request)
        pending.put(None)

    threading.Thread(target=read, name="requests", daemon=True).start()
    protocol.emit(
        "ready",
        task=models.task,
        labels=[models.id2label[i] for i in sorted(models.id2label)] if models.id2label else [],
        models=list(models.models),
        chat_template=models.chat_template,
        run=str(models.run.root),
        settings=dataclasses.asdict(settings),
    )
    while (request := pending.get()) is not None:
        protocol.handle(request)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import os

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    parser = argparse.ArgumentParser(prog="python -m tuner_tui.deploy.generate")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--no-base", action="store_true", help="Load the tuned model only.")
    parser.add_argument("--max-new-tokens", type=int, default=None)
    parser.add_argument("--temperature", type=float, default=None)
    parser.add_argument("--top-p", type=float, default=None)
    parser.add_argument("--sample", action="store_true", default=None)
    args = parser.parse_args(argv)
    try:
        models = RunModels(args.run_dir, with_base=not args.no_base)
        settings = recipe_settings(
            models.recipe,
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            top_p=args.top_p,
            do_sample=args.sample,
        )
    except TunerError as exc:
        print(json.dumps({"event": "error", "id": "", "fatal": True, "message": str(exc)}), flush=True)
        return 2
    serve_lines(models, settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
