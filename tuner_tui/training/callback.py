"""The one TrainerCallback: logs -> events, stop/save requests -> control, saves -> commits."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from tuner_tui.runs import checkpoints, ranks
from tuner_tui.runs import control as run_control
from tuner_tui.runs.events import EventWriter
from tuner_tui.runs.layout import RunDir
from tuner_tui.runs.ranks import SINGLE, Rank
from tuner_tui.runs.state import write_state

STATE_EVERY_S = 2.0


class TrainingDiverged(Exception):
    """The loss or gradient norm became NaN or infinite."""

    def __init__(self, step: int, loss: float | None, grad_norm: float | None):
        self.step, self.loss, self.grad_norm = step, loss, grad_norm
        super().__init__(f"non-finite training values at step {step}: loss={loss}, grad_norm={grad_norm}")


def _finite(value: Any) -> bool:
    return value is None or math.isfinite(float(value))


# TRL's preference trainers log these (per logging window); metric events carry them by these names.
PREFERENCE_LOG_KEYS = {
    "rewards/accuracies": "reward_accuracy",
    "rewards/margins": "reward_margin",
    "rewards/chosen": "chosen_reward",
    "rewards/rejected": "rejected_reward",
    "kl": "kl",
}


def preference_metrics(logs: dict[str, float], prefix: str = "") -> dict[str, float]:
    """The reward figures of a TRL preference trainer's log line, by the names events use."""
    return {name: logs[prefix + key] for key, name in PREFERENCE_LOG_KEYS.items() if prefix + key in logs}


class EventCallback(TrainerCallback):
    """Turns Trainer logs into `metric`/`eval` events and commits checkpoints atomically.

    `stop` is set by the worker's SIGTERM/SIGINT handler; the `control/stop` file is the same
    request from a viewer. Either ends training after the current step with a checkpoint. With
    several ranks, rank 0 alone reads control/ and writes state and commits; the stop and save
    requests are OR-ed over all ranks after every step, so all of them stop or save at the same one.
    """

    def __init__(
        self,
        run: RunDir,
        events: EventWriter,
        stop: threading.Event,
        keep_checkpoints: int,
        rank: Rank = SINGLE,
        verified: Iterable[Path] = (),
    ):
        """`verified`: checkpoints this process has checked already (the one resumed from)."""
        self.run = run
        self.events = events
        self.stop = stop
        self.keep = keep_checkpoints
        self.rank = rank
        self.verified = set(verified)  # pruning hashes each older checkpoint once, not at every save
        self.stop_requested = False
        self._t0 = 0.0
        self._step0 = 0
        self._last_log_time = 0.0
        self._last_tokens = 0
        self._last_state_write = 0.0

    # -- progress ---------------------------------------------------------------------------
    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._t0 = self._last_log_time = time.perf_counter()
        self._step0 = state.global_step
        self._last_tokens = state.num_input_tokens_seen or 0
        self._write_state(phase="training", step=state.global_step, max_steps=state.max_steps)
        self.events.emit("status", phase="training", step=state.global_step, max_steps=state.max_steps)

    def on_log(
        self,
        args: Any,
        state: Any,
        control: Any,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        logs = logs or {}
        step = state.global_step
        if "loss" in logs:
            loss, grad_norm = logs.get("loss"), logs.get("grad_norm")
            if not (_finite(loss) and _finite(grad_norm)):
                raise TrainingDiverged(step, loss, grad_norm)
            now = time.perf_counter()
            tokens = state.num_input_tokens_seen or 0
            elapsed = max(now - self._last_log_time, 1e-9)
            done = step - self._step0
            eta = (now - self._t0) / done * (state.max_steps - step) if done > 0 else None
            self.events.emit(
                "metric",
                step=step,
                max_steps=state.max_steps,
                epoch=round(state.epoch or 0.0, 4),
                loss=loss,
                lr=logs.get("learning_rate"),
                grad_norm=grad_norm,
                tokens_per_s=(tokens - self._last_tokens) / elapsed,
                tokens_seen=tokens,
                eta_s=eta,
                **preference_metrics(logs),
            )
            self._last_log_time, self._last_tokens = now, tokens
            if now - self._last_state_write >= STATE_EVERY_S:
                self._write_state(step=step, max_steps=state.max_steps, loss=loss)
                self._last_state_write = now
        elif "train_runtime" in logs:
            self.events.emit(
                "log",
                level="info",
                message=f"Training loop finished in {logs['train_runtime']:.1f}s.",
                train_runtime=logs["train_runtime"],
                tokens_seen=state.num_input_tokens_seen or 0,
                step=step,
            )
        elif "eval_loss" in logs:
            metrics = {k.removeprefix("eval_"): v for k, v in logs.items() if k.startswith("eval_")}
            metrics = {k: v for k, v in metrics.items() if "/" not in k}  # TRL's own, renamed below
            metrics.update(preference_metrics(logs, prefix="eval_"))
            self.events.emit("eval", split="validation", step=step, epoch=state.epoch, **metrics)

    # -- requests ---------------------------------------------------------------------------
    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        primary = self.rank.primary
        stop = self.stop.is_set() or (primary and run_control.consume(self.run.control, "stop") is not None)
        save = primary and run_control.consume(self.run.control, "save-now") is not None
        stop, save = ranks.any_rank([stop, save], self.rank)
        if stop:
            if self.rank.distributed:  # each rank's own log shows where it stopped
                print(f"rank {self.rank.rank}: stopping at step {state.global_step}", flush=True)
            self.stop_requested = True
            control.should_save = True
            control.should_training_stop = True
            self.events.emit(
                "log", level="info", message=f"Stop requested: saving at step {state.global_step}."
            )
        if save:
            control.should_save = True
            self.events.emit(
                "log", level="info", message=f"Save requested: saving at step {state.global_step}."
            )

    # -- checkpoints ------------------------------------------------------------------------
    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        ranks.barrier(self.rank)  # every rank's files (its RNG state at least) are written
        if not self.rank.primary:
            return
        path = self.run.checkpoints / f"checkpoint-{state.global_step}"
        rng_states = (
            [f"rng_state_{r}.pth" for r in range(self.rank.world_size)] if self.rank.distributed else []
        )
        marker = checkpoints.commit(path, state.global_step, required=rng_states)
        # Only checkpoints whose files verify count among the `keep`: a damaged one is set aside,
        # never kept in place of a good one (nor left to crowd out the one just saved).
        pruned = checkpoints.prune(self.run.checkpoints, self.keep, self.verified | {path})
        self.verified = set(pruned.kept)
        for moved in pruned.set_aside:
            self.events.emit("log", level="warning", message=moved.describe(), set_aside=str(moved.path))
        self.events.emit(
            "checkpoint",
            step=state.global_step,
            path=str(path),
            bytes=sum(f["bytes"] for f in marker["files"].values()),
            removed=[p.name for p in pruned.removed],
            set_aside=[moved.name for moved in pruned.set_aside],
        )
        self._write_state(step=state.global_step, last_checkpoint=str(path))

    def _write_state(self, **fields: Any) -> None:
        if self.rank.primary:
            write_state(self.run.state, **fields)
