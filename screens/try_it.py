"""Try it: type a prompt, watch the base and the tuned model answer side by side.

The models run in a separate process (`tuner_tui.deploy.generate`, JSON lines over a pipe the
screen reads in a thread worker), so the wizard never imports torch; tokens are posted to the
screen as they arrive. Ctrl+X cancels the answer in progress; Escape closes the panel (and ends
the process). A classifier run shows each label's probability, base vs tuned.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Static

from tuner_tui.deploy.chat_client import GenerationProcess

MODELS = ("base", "tuned")


@dataclass
class GenerationEvented(Message):
    """One event of the generation process (ready, token, done, probabilities, finished, error,
    exited); see tuner_tui/deploy/generate.py. Tokens must not be coalesced: each is text."""

    event: dict[str, Any]


class TryItScreen(Screen[None]):
    """Chat with a completed run's base and tuned models."""

    CSS_PATH = "try_it.tcss"
    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("ctrl+x", "cancel", "Cancel answer"),
    ]

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.process: GenerationProcess | None = None
        """The generation process, once started."""
        self.ready = False
        """It has loaded the models."""
        self.run_task = "causal_lm"
        self.current: str | None = None
        """The id of the request being answered."""
        self.texts: dict[str, str] = dict.fromkeys(MODELS, "")

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="try-it"):
            yield Static(f"Try it: {self.run_dir.name}", classes="step-title", markup=False)
            yield Static("Loading the models in a separate process...", id="try-status", markup=False)
            yield Input(placeholder="Type a prompt and press Enter", id="prompt", disabled=True)
            with Horizontal(id="answers"):
                for which in MODELS:
                    pane = Static("", id=f"answer-{which}", classes="answer", markup=False)
                    pane.border_title = f"{which} model"
                    yield pane
        yield Footer()

    def on_mount(self) -> None:
        self._talk(self.run_dir)

    @work(thread=True, exclusive=True, group="try-it", description="Generation process", exit_on_error=False)
    def _talk(self, run_dir: Path) -> None:
        """Start the process and post each of its events to the screen until it exits."""
        self.process = GenerationProcess(run_dir)
        for event in self.process.events():
            self.post_message(GenerationEvented(event))

    @on(GenerationEvented)
    def _on_event(self, message: GenerationEvented) -> None:
        event = message.event
        kind = event.get("event")
        status = self.query_one("#try-status", Static)
        if kind == "ready":
            self.ready, self.run_task = True, str(event.get("task"))
            prompt = self.query_one("#prompt", Input)
            prompt.disabled = False
            prompt.focus()
            what = "a text to classify" if self.run_task != "causal_lm" else "a prompt"
            status.update(f"Ready (chat template {event.get('chat_template')}): type {what}. Ctrl+X cancels.")
        elif kind == "token" and event.get("id") == self.current:
            which = str(event.get("model"))
            self.texts[which] += str(event.get("text", ""))
            self.query_one(f"#answer-{which}", Static).update(self.texts[which])
        elif kind == "done" and event.get("id") == self.current:
            which = str(event.get("model"))
            note = (
                " [cancelled]"
                if event.get("cancelled")
                else f"\n({event.get('tokens')} tokens, {event.get('seconds')} s)"
            )
            self.query_one(f"#answer-{which}", Static).update((self.texts[which] or "(empty answer)") + note)
        elif kind == "probabilities" and event.get("id") == self.current:
            probs = event.get("probabilities") or {}
            lines = [f"{label}: {p:.3f}" for label, p in sorted(probs.items(), key=lambda kv: -kv[1])]
            self.query_one(f"#answer-{event.get('model')}", Static).update("\n".join(lines))
        elif kind == "finished" and event.get("id") == self.current:
            self.current = None
            status.update("Answered. Type another prompt, or Escape to close.")
        elif kind == "error":
            self.current = None
            status.update(f"Error: {event.get('message')}")
        elif kind == "exited":
            self.ready = False
            self.query_one("#prompt", Input).disabled = True
            if not self.is_closing:
                status.update(
                    f"The generation process ended (code {event.get('code')}). {event.get('tail', '')}"
                )

    is_closing = False

    @on(Input.Submitted, "#prompt")
    def _ask(self, submitted: Input.Submitted) -> None:
        text = submitted.value.strip()
        if not text or not self.ready or self.process is None:
            return
        if self.current is not None:
            self.notify("Still answering: Ctrl+X cancels it.", severity="warning")
            return
        self.texts = dict.fromkeys(MODELS, "")
        for which in MODELS:
            self.query_one(f"#answer-{which}", Static).update("")
        if self.run_task == "causal_lm":
            self.current = self.process.ask([{"role": "user", "content": text}])
        else:
            self.current = self.process.ask(text=text)
        self.query_one("#try-status", Static).update("Answering... (Ctrl+X cancels)")

    def action_cancel(self) -> None:
        if self.process is not None and self.current is not None:
            self.process.cancel(self.current)

    def action_close(self) -> None:
        self.is_closing = True
        if self.process is not None:  # ended off the UI thread: it may finish its current token first
            threading.Thread(target=self.process.close, name="try-it-close", daemon=True).start()
        self.dismiss()
