"""The worker process: `python -m tuner_tui.runs.worker RUN_DIR`.

Started detached by the launcher (own session, stdin from /dev/null, output to worker.log). It
owns the run directory while it lives: it alone writes events.jsonl, state.json and checkpoints.
Every way out of `run_worker` leaves a terminal phase in state.json and, on failure, an `error`
event with a kind, a message and a hint.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import traceback
from pathlib import Path

from tuner_tui.errors import EXIT_OK, EXIT_RUN_FAILED, TunerError
from tuner_tui.recipe import read_recipe, save_recipe
from tuner_tui.runs import checkpoints
from tuner_tui.runs.events import EventWriter
from tuner_tui.runs.layout import RunDir
from tuner_tui.runs.state import process_start_time, read_raw_state, write_state

HINTS = {
    "diverged": (
        "Lower [training] learning_rate (e.g. by 10x), use dtype = 'float32' or 'bfloat16' "
        "instead of 'float16', or clip harder with a smaller max_grad_norm (e.g. 0.3)."
    ),
    "oom": (
        "Out of memory: lower [training] batch_size (raise gradient_accumulation to keep the "
        "effective batch), set gradient_checkpointing = true, shorten max_length, or use "
        "[method] type = 'qlora' on a GPU. `tuner estimate RECIPE` shows what fits."
    ),
}


def set_phase(run: RunDir, events: EventWriter, phase: str, **fields: object) -> None:
    write_state(run.state, phase=phase, **fields)
    events.emit("status", phase=phase, **fields)


def _is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
    )


def _last_good(run: RunDir) -> str | None:
    path = checkpoints.latest_complete(run.checkpoints, verify=False)
    return str(path) if path else None


def run_worker(run_dir: Path, stop: threading.Event) -> int:
    """Run (or resume) the run in `run_dir`; returns the process exit code."""
    from tuner_tui.training.telemetry import TelemetrySampler

    run = RunDir.open(run_dir)
    events = EventWriter(run.events)
    pid = os.getpid()
    write_state(run.state, pid=pid, pid_started=process_start_time(pid))
    sampler = TelemetrySampler(events)
    try:
        set_phase(run, events, "preparing")
        sampler.start()
        return _prepare_and_train(run, events, stop)
    except BaseException as exc:  # noqa: BLE001 - every failure must end in a terminal phase
        return _fail(run, events, exc)
    finally:
        sampler.stop()
        events.close()


def _prepare_and_train(run: RunDir, events: EventWriter, stop: threading.Event) -> int:
    from tuner_tui.evaluation.run import NoHeldOutData, evaluate_run
    from tuner_tui.runs.environment import environment_lock
    from tuner_tui.training.examples import PreparedData
    from tuner_tui.training.run import resolve_device, train

    recipe, problems, document = read_recipe(run.recipe)
    if problems:
        from tuner_tui.recipe import RecipeError

        raise RecipeError(str(run.recipe), problems)
    removed = checkpoints.remove_incomplete(run.checkpoints)
    for path in removed:
        events.emit(
            "log",
            level="warning",
            message=f"Removed incomplete checkpoint {path.name} (killed mid-save).",
        )
    resume_from = checkpoints.latest_complete(run.checkpoints)
    if resume_from is None and not recipe.environment.get("libraries"):
        device = resolve_device(recipe.training.device)
        recipe.environment.update(environment_lock(recipe.data.path, recipe.model.name_or_path, device))
        save_recipe(recipe, run.recipe, document)
    if resume_from is not None:
        events.emit("log", level="info", message=f"Resuming from {resume_from.name}.")
    if stop.is_set():
        set_phase(run, events, "stopped", step=read_raw_state(run.state).get("step", 0))
        return EXIT_OK

    def record_or_check_data(data: PreparedData) -> None:
        """A fresh run records the cleaned data's fingerprint; a resumed one must see the same."""
        fingerprint = data.source.fingerprint if data.source else None
        recorded = recipe.environment.get("data_content_fingerprint")
        if recorded is None:
            recipe.environment["data_content_fingerprint"] = fingerprint
            if data.chat_template:
                recipe.environment["chat_template"] = data.chat_template  # e.g. fallback:alpaca
            save_recipe(recipe, run.recipe, document)
        elif recorded != fingerprint:
            raise TunerError(
                f"The data at {recipe.data.path} changed since this run started (content fingerprint "
                f"{fingerprint} vs {recorded} in {run.recipe}); resuming would mix two datasets. "
                "Restore the original data, or start a new run with `tuner run`."
            )

    outcome = train(recipe, run, events, stop, resume_from=resume_from, on_data=record_or_check_data)
    if outcome.stopped:
        set_phase(run, events, "stopped", step=outcome.global_step, last_checkpoint=_last_good(run))
        return EXIT_OK
    step = outcome.global_step
    del outcome  # free the training model before evaluation loads fresh copies from disk
    set_phase(run, events, "evaluating", step=step)
    try:
        verdict = evaluate_run(recipe, run, events, resolve_device(recipe.training.device))["verdict"]
    except NoHeldOutData as exc:
        events.emit("log", level="warning", message=f"Evaluation skipped: {exc}")
        verdict = "not_evaluated"
    except Exception as exc:
        raise EvaluationFailed(exc) from exc
    set_phase(run, events, "completed", step=step, adapter=str(run.adapter), verdict=verdict)
    return EXIT_OK


class EvaluationFailed(Exception):
    """Training finished and the adapter is saved, but evaluating it failed."""

    def __init__(self, cause: Exception):
        self.cause = cause
        super().__init__(str(cause))


def _fail(run: RunDir, events: EventWriter, exc: BaseException) -> int:
    from tuner_tui.training.callback import TrainingDiverged

    last_good = _last_good(run)
    if isinstance(exc, TrainingDiverged):
        kind, message = (
            "diverged",
            f"Training diverged at step {exc.step}: loss={exc.loss}, grad_norm={exc.grad_norm}.",
        )
        hint = HINTS["diverged"]
    elif _is_oom(exc):
        kind, message, hint = (
            "oom",
            f"Out of memory: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}.",
            HINTS["oom"],
        )
    elif isinstance(exc, EvaluationFailed):
        cause = exc.cause
        kind, message = "evaluation", f"Training completed but evaluation failed: {cause}"
        hint = f"The adapter is saved in {run.adapter}. Fix the cause, then: tuner eval {run.root}"
        if not isinstance(cause, TunerError):
            hint += f" The full traceback is in {run.log}."
    elif isinstance(exc, TunerError):
        kind, message, hint = (
            "invalid",
            str(exc),
            "Fix the recipe or files named above and run again.",
        )
    elif isinstance(exc, KeyboardInterrupt):
        kind, message, hint = (
            "crash",
            "Interrupted.",
            f"Resume with `tuner run --resume {run.root}`.",
        )
    else:
        kind, message = "crash", f"{type(exc).__name__}: {exc}"
        hint = f"The full traceback is in {run.log}."
    if kind in ("diverged", "oom", "crash") and last_good:
        hint += f" Last good checkpoint: {last_good} (`tuner run --resume {run.root}` continues from it)."
    traceback.print_exc(file=sys.stderr)
    events.emit("error", kind=kind, message=message, hint=hint, last_checkpoint=last_good)
    set_phase(run, events, "failed", error_kind=kind)
    return EXIT_RUN_FAILED


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m tuner_tui.runs.worker RUN_DIR", file=sys.stderr)
        return 2
    stop = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        print(
            f"received {signal.Signals(signum).name}: stopping after this step",
            file=sys.stderr,
            flush=True,
        )
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    return run_worker(Path(args[0]), stop)


if __name__ == "__main__":
    sys.exit(main())
