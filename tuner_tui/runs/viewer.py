"""The plain terminal viewer: replays a run's events, then follows them with a progress bar.

A viewer owns nothing: closing it (Ctrl-C, a dropped connection) leaves the run untouched.

Everything is printed as `Text` with styles, never as markup: messages name recipe sections
("[data] path") and lists ("[a, b]"), and the console may have markup off (the CLI's has).
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.text import Text

from tuner_tui.errors import EXIT_OK, EXIT_RUN_FAILED
from tuner_tui.runs.layout import RunDir
from tuner_tui.runs.state import CRASHED, ranks_alive, read_raw_state, worker_alive
from tuner_tui.views.follow import RunFollower, has_ended
from tuner_tui.views.run_view import EVAL_FIGURES, RunView


def _fmt(value: Any, spec: str) -> str:
    return format(value, spec) if isinstance(value, (int, float)) else str(value or "-")


def describe_metric(event: dict[str, Any]) -> str:
    eta = event.get("eta_s")
    eta_text = time.strftime("%H:%M:%S", time.gmtime(eta)) if isinstance(eta, (int, float)) else "-"
    return (
        f"loss {_fmt(event.get('loss'), '.4f')}  lr {_fmt(event.get('lr'), '.2e')}  "
        f"grad {_fmt(event.get('grad_norm'), '.3f')}  {_fmt(event.get('tokens_per_s'), ',.0f')} tok/s  "
        f"ETA {eta_text}"
    )


def follow_run(
    run: RunDir, console: Console | None = None, poll_s: float = 0.25, until_exited: bool = False
) -> int:
    """Show the run until it ends; returns 0 when completed or stopped, 1 when it failed.

    With `until_exited` (the `tuner run` that started it), return only once the worker and its
    ranks have exited too: a run's last event comes before its processes free the GPU, and the
    next command of a script may need it. Ctrl-C detaches the viewer only.
    """
    console = console or Console()
    progress = Progress(
        TextColumn("[bold]{task.fields[phase]}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[steps]}"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
    task = progress.add_task("run", total=None, phase="queued", steps="")
    metric_line = Text("", style="cyan")
    follower = RunFollower(run)
    view = RunView()
    try:
        with Live(Group(progress, metric_line), console=console, refresh_per_second=4):
            while True:
                read = False
                for events in follower.new_events():
                    read = True
                    _take(events, view, progress, task, metric_line)
                if read:
                    continue
                state = follower.state()
                if has_ended(state):
                    for events in follower.new_events():  # written after state.json
                        _take(events, view, progress, task, metric_line)
                    code = _finish(run, state, progress, task)
                    if until_exited:
                        _wait_for_processes(run, progress.console)
                    return code
                time.sleep(poll_s)
    except KeyboardInterrupt:
        console.print(
            Text.assemble(
                "\nDetached; the run goes on. Re-attach: ",
                (f"tuner attach {run.root}", "bold"),
                " (or --plain)  Stop it: ",
                (f"tuner stop {run.root}", "bold"),
            )
        )
        return EXIT_OK


def _wait_for_processes(run: RunDir, console: Console, timeout_s: float = 120.0) -> None:
    """Until the run's worker (or supervisor) and its ranks on this machine have exited."""
    state = read_raw_state(run.state)
    start = time.monotonic()
    said = False
    while worker_alive(state) or ranks_alive(state):
        waited = time.monotonic() - start
        if waited > timeout_s:
            console.print(Text(f"Its processes are still exiting after {timeout_s:.0f} s."))
            return
        if waited > 2.0 and not said:
            console.print(Text("Waiting for the run's processes to exit...", style="dim"))
            said = True
        time.sleep(0.05)


def _stamped(event: dict[str, Any], *parts: str | tuple[str, str]) -> Text:
    """A line of the run's history: the event's time, dimmed, then `parts` (text or (text, style))."""
    return Text.assemble((str(event.get("time", "")), "dim"), "  ", *parts)


def _take(
    events: list[dict[str, Any]], view: RunView, progress: Progress, task: Any, metric_line: Text
) -> None:
    """Fold `events` into the view, print the lines of those that make the run's history, and
    update the progress bar and the metric line from the view."""
    changed = view.fold(events)
    for event in events:
        _show(event, progress)
    if changed & {"metric", "phase"}:
        step, total = view.metric.get("step", 0), view.max_steps
        progress.update(
            task,
            phase=view.phase or "",
            completed=step,
            total=total or None,
            steps=f"step {step}/{total}" if total else f"step {step}",
        )
        if view.metric:
            metric_line.plain = describe_metric(view.metric)


def _show(event: dict[str, Any], progress: Progress) -> None:
    kind = event.get("type")
    if kind == "status":
        progress.console.print(_stamped(event, "phase → ", (str(event.get("phase")), "bold")))
    elif kind == "checkpoint":
        progress.console.print(_stamped(event, f"checkpoint at step {event.get('step')}"))
    elif kind == "eval":
        values = ", ".join(f"{k} {_fmt(v, '.4f')}" for k, v in event.items() if k in EVAL_FIGURES)
        split, step = event.get("split"), event.get("step")
        where = f"{event['model']} model" if "model" in event else f"step {step}"
        progress.console.print(_stamped(event, f"eval ({split}, {where}): {values}"))
    elif kind == "log":
        line = _stamped(event, str(event.get("message")))
        line.stylize("dim")
        progress.console.print(line)
    elif kind == "error":
        progress.console.print(
            Text.assemble(
                (str(event.get("kind")), "bold red"),
                f": {event.get('message')}\n",
                ("hint:", "yellow"),
                f" {event.get('hint')}",
            )
        )


def _finish(run: RunDir, state: dict[str, Any], progress: Progress, task: Any) -> int:
    phase = state.get("phase")
    progress.update(task, phase=phase)
    console = progress.console
    if phase == "completed":
        console.print(Text.assemble(("Completed.", "green"), f" Adapter: {run.adapter}"))
        return EXIT_OK
    if phase == "stopped":
        console.print(
            Text(f"Stopped at step {state.get('step')}. Continue with: tuner run --resume {run.root}")
        )
        return EXIT_OK
    if phase == CRASHED:
        console.print(
            Text.assemble(
                ("The worker died", "bold red"),
                f" while the run was '{state.get('recorded_phase')}' (pid {state.get('pid')} is gone). "
                f"See {run.log}; resume with: tuner run --resume {run.root}",
            )
        )
    else:
        console.print(Text.assemble(("Failed.", "bold red"), f" See {run.log}"))
    return EXIT_RUN_FAILED


def follow_node(
    proc: Any, log: Any, console: Console | None = None, poll_s: float = 0.5, offset: int = 0
) -> int:
    """Echo a joined node's supervisor log from `offset` until its ranks end; returns 0 when they
    finished, 1 when they failed.

    Ctrl-C detaches: the node's ranks go on (node 0's viewer shows the run)."""
    console = console or Console()

    def echo() -> None:
        nonlocal offset
        try:
            with open(log, encoding="utf-8", errors="replace") as f:
                f.seek(offset)
                text = f.read()
                offset = f.tell()
        except FileNotFoundError:
            return
        if text:
            console.out(text, end="", highlight=False)

    try:
        while proc.poll() is None:
            echo()
            time.sleep(poll_s)
        echo()
    except KeyboardInterrupt:
        console.print(Text(f"\nDetached; this node's ranks go on (pid {proc.pid}). Log: {log}"))
        return EXIT_OK
    return EXIT_OK if proc.returncode == 0 else EXIT_RUN_FAILED
