"""A list of runs as a person reads it: one presenter for `tuner runs` and the wizard's run
pickers (Welcome's table, the Evaluation step's choice). Textual-free."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tuner_tui.runs.layout import RunSummary

RUN_COLUMNS = ("run", "phase", "step", "loss", "age")


def run_cells(run: RunSummary, now: float | None = None) -> tuple[str, str, str, str, str]:
    """The row of `RUN_COLUMNS`: id, phase, step (of max_steps), last loss, age."""
    from tuner_tui.runs.layout import format_age

    steps = f"{run.step}/{run.max_steps}" if run.max_steps else str(run.step)
    loss = f"{run.loss:.4f}" if run.loss is not None else "-"
    return run.run_id, run.phase, steps, loss, format_age(run.created, now)


def run_label(run: RunSummary) -> str:
    """One line naming a run and its phase, for a choice list."""
    return f"{run.run_id} ({run.phase})"


def run_notes(runs: list[RunSummary]) -> list[str]:
    """What a list of runs must say besides its table: runs whose files could not be read, runs
    whose state was rebuilt, and runs being served (`tuner serve`)."""
    from pathlib import Path

    from tuner_tui.deploy.serve import served

    notes = []
    for run in runs:
        server = served(Path(run.path))
        if server:
            notes.append(
                f"{run.run_id}: served at {server.get('url')} ({server.get('engine')}, pid "
                f"{server.get('pid')}); stop it with `tuner serve --stop {run.path}`."
            )
        if run.problem:
            notes.append(f"{run.run_id}: its files could not be read ({run.problem}).")
        elif run.damaged:
            notes.append(
                f"{run.run_id}: {run.damaged}; its state was rebuilt from events.jsonl and its "
                "checkpoints (a resume writes it back)."
            )
    return notes
