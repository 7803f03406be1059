"""The `tuner` subcommands of this stage, registered on the app by `tuner_tui.cli`.

Import-light like cli.py: typer and rich at module scope, the engine inside each command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add this stage's commands to `app`."""
    app.command(name="compare")(compare)
    app.command(name="sweep")(sweep)


def compare(
    runs: Annotated[list[Path], typer.Argument(help="Two or more run directories; the first is A.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON.")] = False,
    metric: Annotated[
        str | None, typer.Option("--metric", help="Compare on this metric only (e.g. accuracy).")
    ] = None,
    on: Annotated[
        Path | None,
        typer.Option(
            "--on",
            help="Score every run on this run's test set first (needed when the runs were evaluated on "
            "different rows, or before per-example outputs existed).",
        ),
    ] = None,
) -> None:
    """Compare runs on the same test rows: recipe diff, cost, metrics with paired 95% intervals,
    p-values and a verdict, and the rows where one is right and the other wrong."""
    import json

    from tuner_tui.cli import console
    from tuner_tui.iterate.compare import compare_runs

    if on is not None:
        from tuner_tui.cli import _quiet_libraries

        _quiet_libraries()
        with console.status(f"Scoring the runs on {on}'s test set..."):
            result = compare_runs(list(runs), metric=metric, on=on)
    else:
        result = compare_runs(list(runs), metric=metric)
    if as_json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
        return
    from tuner_tui.views.comparison import comparison_renderables

    for renderable in comparison_renderables(result):
        console.print(renderable)


def sweep(
    recipe: Annotated[Path | None, typer.Argument(help="Recipe TOML file to sweep.")] = None,
    sets: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="KEY=V1,V2",
            help="A recipe key and its values, e.g. --set training.learning_rate=1e-4,3e-4; a range "
            "LOW..HIGH[:log] for random/tpe. Repeat for each key.",
        ),
    ] = None,
    search: Annotated[
        str, typer.Option("--search", help="grid (every combination), random or tpe.")
    ] = "grid",
    trials: Annotated[
        int | None, typer.Option("--trials", min=1, help="Trials to run (grid: all points; else 8).")
    ] = None,
    metric: Annotated[
        str | None, typer.Option("--metric", help="What to optimise (default: the first objective's metric).")
    ] = None,
    parallel: Annotated[
        int, typer.Option("--parallel", min=1, help="Trials at once, one GPU each (needs that many GPUs).")
    ] = 1,
    runs_dir: Annotated[Path, typer.Option("--runs-dir", help="Folder that holds runs and sweeps/.")] = Path(
        "runs"
    ),
    resume: Annotated[
        Path | None,
        typer.Option("--resume", help="Resume a killed or stopped sweep: only the remaining trials run."),
    ] = None,
    show: Annotated[Path | None, typer.Option("--show", help="Print a sweep's leaderboard.")] = None,
    export: Annotated[
        Path | None, typer.Option("--export", help="With --show: write the best trial's recipe here.")
    ] = None,
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Start the sweep and return at once.")
    ] = False,
) -> None:
    """Run a recipe over a grid or an Optuna search (random, TPE) of hyperparameters; each trial is
    an ordinary run. The sweep runs detached and resumes where it stopped (--resume)."""
    from rich.text import Text

    from tuner_tui.cli import console
    from tuner_tui.errors import TunerError
    from tuner_tui.iterate import sweep as engine

    chosen = [x for x in (recipe, resume, show) if x is not None]
    if len(chosen) != 1:
        raise TunerError(
            "Give one of: a RECIPE with --set KEY=V1,V2 to start a sweep, --resume SWEEP_DIR, or "
            "--show SWEEP_DIR."
        )
    if export is not None and show is None:
        raise TunerError(
            "--export works with --show SWEEP_DIR: tuner sweep --show SWEEP_DIR --export best.toml"
        )
    if show is not None:
        _show(show, export)
        return
    if resume is not None:
        folder = Path(resume).resolve()
        engine.read_sweep(folder)
    else:
        folder = engine.create_sweep(recipe, sets or [], runs_dir, search, trials, metric, parallel)  # type: ignore[arg-type]
    proc = engine.start_driver(folder)
    console.print(
        Text.assemble("Sweep ", (folder.name, "bold"), f" running (driver pid {proc.pid}): {folder}")
    )
    if detach:
        console.print(
            f"Leaderboard: tuner sweep --show {folder}    Resume if killed: tuner sweep --resume {folder}"
        )
        return

    def say(state: dict) -> None:
        done = sum(1 for t in state["trials"] if t.get("phase") in engine.DONE)
        latest = state["trials"][-1] if state["trials"] else None
        note = f"; trial {latest['number']} {latest.get('phase')}" if latest else ""
        console.print(f"{done}/{state['trials_planned']} trials done{note}")

    try:
        final = engine.follow_sweep(folder, say, proc)
    except KeyboardInterrupt:
        console.print(f"\nDetached; the sweep goes on. Leaderboard: tuner sweep --show {folder}")
        raise typer.Exit(130) from None
    _show(folder, None, final)


def _show(folder: Path, export: Path | None, sweep: dict | None = None) -> None:
    from tuner_tui.cli import console
    from tuner_tui.iterate import sweep as engine
    from tuner_tui.views.comparison import leaderboard_table

    sweep = sweep or engine.read_sweep(folder)
    console.print(leaderboard_table(sweep))
    running = engine.sweep_running(folder)
    better = "lower" if sweep.get("direction") == "minimize" else "higher"
    console.print(
        f"Phase {sweep.get('phase')}"
        + (f" (driver pid {running})" if running is not None else "")
        + f"; metric {sweep.get('metric')} ({better} is better)."
    )
    best = sweep.get("best")
    if best:
        console.print(
            f"Best: trial {best['trial']} {best['values']} -> {best['metric']:.4f}: {best['run_dir']}"
        )
        best_recipe = Path(folder) / "best-recipe.toml"
        if best_recipe.exists():
            console.print(f"Best recipe: {best_recipe} (tuner run {best_recipe})")
        ranked = [t for t in engine.ranked_trials(sweep) if t.get("metric") is not None and t.get("run_dir")]
        if len(ranked) >= 2:
            console.print(f"Compare the top two: tuner compare {ranked[0]['run_dir']} {ranked[1]['run_dir']}")
    if export is not None:
        written = engine.export_best(folder, export)
        console.print(f"Wrote the best trial's recipe to {written}")
