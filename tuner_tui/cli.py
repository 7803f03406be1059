"""The `tuner` command. Bare `tuner` opens the wizard; subcommands are its headless equivalents.

Exit codes: 0 ok, 1 a run that failed, 2 invalid input, 3 objectives not met (`tuner eval`).
Nothing here imports torch, transformers, peft, datasets or evaluate at module scope: `tuner
--help` and the TUI start in a fraction of a second.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tuner_tui.errors import EXIT_INVALID_INPUT, EXIT_OK, TunerError
from tuner_tui.recipe import DATA_FORMATS

if TYPE_CHECKING:
    from tuner_tui.runs.layout import RunDir

app = typer.Typer(
    name="tuner",
    help="Fine-tune language models for your domain: a terminal wizard and its headless commands.",
    # Help texts name recipe sections ("[training] nnodes"): printed literally, never as markup.
    rich_markup_mode=None,
    no_args_is_help=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)
# soft_wrap: printed paths and commands stay on one line, ready to copy. markup=False: messages
# name recipe sections ("[data] path") and lists ("[a, b]"), which must print as written; styling
# is given as Text styles instead.
console = Console(soft_wrap=True, markup=False)
err_console = Console(stderr=True, soft_wrap=True, markup=False)

RunsDir = Annotated[Path, typer.Option("--runs-dir", help="Folder that holds run directories.")]
DEFAULT_RUNS_DIR = Path("runs")


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    recipe: Annotated[
        Path | None, typer.Option("--recipe", "-r", help="Open this recipe in the wizard.")
    ] = None,
    runs_dir: RunsDir = DEFAULT_RUNS_DIR,
) -> None:
    """Open the wizard (no subcommand), or run one of the commands below."""
    if ctx.invoked_subcommand is None:
        from tuner_tui.app import run_app

        raise typer.Exit(run_app(recipe, runs_dir=runs_dir))


@app.command()
def demo(runs_dir: RunsDir = DEFAULT_RUNS_DIR) -> None:
    """Open the wizard on the built-in demo (support-ticket intents, offline MiniLM)."""
    from tuner_tui.app import run_app

    raise typer.Exit(run_app(None, demo=True, runs_dir=runs_dir))


@app.command()
def validate(recipe: Annotated[Path, typer.Argument(help="Recipe TOML file.")]) -> None:
    """Check a recipe and print every problem at once (exit 2 if any)."""
    from tuner_tui.preflight import check_runnable
    from tuner_tui.recipe import RecipeError, read_recipe

    loaded, problems, _ = read_recipe(recipe)
    # Type problems first (a value that failed to parse is left at its default, and pre-flight
    # would judge the default), then every problem of a well-typed recipe at once.
    if problems:
        raise RecipeError(str(recipe), problems)
    check_runnable(loaded, recipe.resolve().parent, recipe)
    console.print(Text.assemble(("OK", "green"), f" {recipe}: recipe hash {loaded.hash()[:12]}"))


@app.command()
def run(
    recipe: Annotated[Path | None, typer.Argument(help="Recipe TOML file.")] = None,
    resume: Annotated[
        Path | None,
        typer.Option("--resume", help="Resume this run directory from its last complete checkpoint."),
    ] = None,
    runs_dir: RunsDir = DEFAULT_RUNS_DIR,
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Start the run and return at once.")] = False,
    nnodes: Annotated[
        int | None, typer.Option("--nnodes", min=1, help="Nodes taking part (overrides [training] nnodes).")
    ] = None,
    node_rank: Annotated[
        int, typer.Option("--node-rank", min=0, help="This node's number, 0 to nnodes-1; node 0 leads.")
    ] = 0,
    master_addr: Annotated[
        str | None, typer.Option("--master-addr", help="Node 0's address, where the nodes meet.")
    ] = None,
    master_port: Annotated[
        int | None, typer.Option("--master-port", min=1, max=65535, help="Node 0's rendezvous port.")
    ] = None,
) -> None:
    """Start a training run (or --resume one) in a detached worker; follow it unless --detach.

    On several nodes, run the same command on each with its own --node-rank (see assets/slurm/)."""
    from tuner_tui.runs.control import request as request_stop
    from tuner_tui.runs.launcher import Placement, join_run, resume_run, start_run
    from tuner_tui.runs.viewer import follow_node, follow_run

    if (recipe is None) == (resume is None):
        raise TunerError("Give either a RECIPE to start a run or --resume RUN_DIR, not both or neither.")
    placement = Placement(nnodes, node_rank, master_addr, master_port)
    if node_rank > 0:
        node = join_run(recipe, runs_dir, placement, resume)
        console.print(
            f"Node {node.node_rank} of {node.nnodes}: joining the run node 0 leads at {node.rendezvous}; "
            f"this node's log: {node.log}",
            highlight=False,
        )
        if detach:
            raise typer.Exit(EXIT_OK)
        _stop_on_sigterm(lambda: os.kill(node.proc.pid, signal.SIGTERM))
        raise typer.Exit(follow_node(node.proc, node.log, console, offset=node.log_offset))
    if resume:
        run_dir = resume_run(resume, placement)
    else:
        run_dir = start_run(recipe, runs_dir, placement)  # type: ignore[arg-type]
    console.print(Text.assemble("Run ", (run_dir.run_id, "bold"), f" started: {run_dir.root}"))
    if detach:
        console.print(f"Follow it: tuner attach {run_dir.root}    Stop it: tuner stop {run_dir.root}")
        raise typer.Exit(EXIT_OK)
    _stop_on_sigterm(
        lambda: request_stop(run_dir.control, "stop", by=f"SIGTERM to tuner run (pid {os.getpid()})")
    )
    raise typer.Exit(follow_run(run_dir, console, until_exited=True))


def _stop_on_sigterm(stop: Callable[[], object]) -> None:
    """The `tuner run` that follows its run is what a scheduler (Slurm, Kubernetes, systemd)
    signals to end a job: SIGTERM stops the run gracefully (every rank after the same step, with
    a checkpoint) and this command follows it to the end. Ctrl-C still only detaches."""

    def handler(signum: int, frame: object) -> None:
        console.print("SIGTERM: stopping the run after its current step (it saves a checkpoint).")
        stop()

    signal.signal(signal.SIGTERM, handler)


@app.command()
def attach(
    run_dir: Annotated[Path, typer.Argument(help="Run directory.")],
    plain: Annotated[
        bool, typer.Option("--plain", help="Follow in plain terminal output instead of the wizard.")
    ] = False,
    runs_dir: RunsDir = DEFAULT_RUNS_DIR,
) -> None:
    """Open the run's live dashboard (history replayed, then followed); leaving never stops the run."""
    from tuner_tui.runs.layout import RunDir

    run_ = RunDir.open(run_dir)
    if plain:
        from tuner_tui.runs.viewer import follow_run

        raise typer.Exit(follow_run(run_, console))
    from tuner_tui.app import run_app

    raise typer.Exit(run_app(None, runs_dir=runs_dir, attach=run_.root))


@app.command()
def runs(runs_dir: RunsDir = DEFAULT_RUNS_DIR) -> None:
    """List runs with their phase, step, last loss and age."""
    from rich.text import Text

    from tuner_tui.runs.layout import list_runs
    from tuner_tui.views.runs import RUN_COLUMNS, run_cells, run_notes

    rows = list_runs(runs_dir)
    if not rows:
        console.print(Text(f"No runs under {runs_dir}."))
        return
    table = Table(*RUN_COLUMNS, title=Text(f"Runs in {runs_dir}"))
    for row in rows:
        table.add_row(*(Text(cell) for cell in run_cells(row)))
    console.print(table)
    for note in run_notes(rows):
        console.print(Text(note))


@app.command()
def stop(run_dir: Annotated[Path, typer.Argument(help="Run directory.")]) -> None:
    """Ask a run to stop gracefully: it finishes the step, saves a checkpoint, and ends 'stopped'."""
    from tuner_tui.runs import control
    from tuner_tui.runs.layout import RunDir
    from tuner_tui.runs.state import TERMINAL_PHASES, read_state

    run_ = RunDir.open(run_dir)
    phase = read_state(run_.state).get("phase")
    if phase in TERMINAL_PHASES or phase == "crashed":
        raise TunerError(f"The run {run_.root} is not running (phase {phase}); nothing to stop.")
    control.request(run_.control, "stop", by="tuner stop")
    if phase == "evaluating":
        console.print(
            "Stop requested; the run is evaluating: it ends 'stopped' after the current batch, keeping "
            f"the trained adapter. Evaluate it later with: tuner eval {run_.root}"
        )
        return
    console.print(
        f"Stop requested; the run saves a checkpoint at its next step. Watch: tuner attach {run_.root}"
    )


def _quiet_libraries() -> None:
    """Library progress bars and deprecation chatter would bury this command's own output."""
    import os
    import warnings

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", category=FutureWarning)
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()


@app.command()
def inspect(
    data: Annotated[str, typer.Argument(help="Data file, folder, save_to_disk folder or hub id.")],
    recipe: Annotated[
        Path | None,
        typer.Option("--recipe", "-r", help="Use this recipe's format, fields, tokenizer and max_length."),
    ] = None,
    data_format: Annotated[
        str | None,
        typer.Option(
            "--format",
            help=f"The data format ({', '.join(DATA_FORMATS)}); overrides the recipe's. Default: "
            "detected from the columns.",
        ),
    ] = None,
    field: Annotated[
        list[str] | None,
        typer.Option(
            "--field",
            metavar="ROLE=COLUMN",
            help="Map a role to a column, e.g. --field text=abstract --field label=condition; repeat it for "
            "each role. Merged over the recipe's fields.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    skip_bad_rows: Annotated[
        bool, typer.Option("--skip-bad-rows", help="Skip and count malformed rows instead of stopping.")
    ] = False,
) -> None:
    """Inspect a dataset: format, token lengths, duplicates, PII, labels, label conflicts."""
    import json

    _quiet_libraries()
    from tuner_tui.data.probe import inspect_data_config
    from tuner_tui.data.report import inspect_dataset
    from tuner_tui.views.data_report import render_report

    tokenizer, data_config, max_length, base_dir = None, None, None, None
    if recipe is not None:
        from tuner_tui.modeling.loading import load_tokenizer
        from tuner_tui.recipe import load_recipe

        loaded = load_recipe(recipe)
        data_config, max_length, base_dir = loaded.data, loaded.training.max_length, recipe.resolve().parent
        tokenizer = load_tokenizer(loaded.model, base_dir)
    # checked against the file's header first, so a bad flag is named before anything loads
    data_config = inspect_data_config(data, data_config, data_format, field or [], base_dir)
    with err_console.status(f"Inspecting {data}..."):
        report = inspect_dataset(
            data,
            recipe_data=data_config,
            tokenizer=tokenizer,
            max_length=max_length,
            base_dir=base_dir,
            skip_bad_rows=skip_bad_rows,
        )
    if as_json:
        print(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
    else:
        render_report(report, console)


@app.command()
def estimate(
    recipe: Annotated[Path, typer.Argument(help="Recipe TOML file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the estimate as JSON.")] = False,
) -> None:
    """Estimate training memory for a recipe against this machine: fits, tight or won't fit."""
    import json

    _quiet_libraries()
    from tuner_tui.modeling.estimate import estimate_memory
    from tuner_tui.recipe import load_recipe
    from tuner_tui.views.estimate import print_estimate

    loaded = load_recipe(recipe)
    result = estimate_memory(loaded, base_dir=recipe.resolve().parent)
    if as_json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print_estimate(console, result, nodes=loaded.training.nnodes)


@app.command(name="eval")
def eval_(
    run_dir: Annotated[Path, typer.Argument(help="Run directory.")],
    pairs: Annotated[
        Path | None, typer.Option("--pairs", help="CrowS-Pairs-format CSV for the paired bias benchmark.")
    ] = None,
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Start the evaluation and return at once.")
    ] = False,
) -> None:
    """Evaluate a finished run again against its objectives: exit 0 pass, 3 objectives not met.

    The evaluation runs detached, holding the run's lock (exit 2, naming the pid, while another
    process holds it), and this command follows it: Ctrl-C or a dropped connection only detaches
    (exit 130; the evaluation goes on), SIGTERM stops it (the old report is kept)."""
    from tuner_tui.runs import control
    from tuner_tui.runs.launcher import start_evaluation

    started = start_evaluation(run_dir, pairs, by="tuner eval")
    run_ = started.run
    if detach:
        console.print(f"Evaluating {run_.run_id} in the background (pid {started.pid}).")
        console.print(f"Follow it: tuner attach {run_.root}    Stop it: tuner stop {run_.root}")
        raise typer.Exit(EXIT_OK)

    def stop_evaluation(signum: int, frame: object) -> None:
        console.print("SIGTERM: stopping the evaluation after its current batch (the old report is kept).")
        control.request(run_.control, "stop", by=f"SIGTERM to tuner eval (pid {os.getpid()})")

    signal.signal(signal.SIGTERM, stop_evaluation)
    try:
        with console.status("Evaluating base and tuned models...") as status:
            state, errors = _follow_evaluation(run_, started.events_offset, status.update)
    except KeyboardInterrupt:
        console.print(
            Text.assemble(
                f"\nDetached; the evaluation goes on (pid {started.pid}). Follow it: ",
                (f"tuner attach {run_.root}", "bold"),
                "  Stop it: ",
                (f"tuner stop {run_.root}", "bold"),
            )
        )
        raise typer.Exit(130) from None
    _print_evaluation(run_, state, errors)


def _follow_evaluation(
    run: RunDir, offset: int, say: Callable[[str], object], poll_s: float = 0.25
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read the evaluation's events from `offset` until its phase ends; returns the final state
    and the `error` events it wrote."""
    from tuner_tui.views.follow import RunFollower, has_ended

    errors: list[dict[str, Any]] = []
    follower = RunFollower(run, offset)

    def take() -> bool:
        read = False
        for events in follower.new_events():
            read = True
            for event in events:
                if event.get("type") == "error":
                    errors.append(event)
                elif event.get("type") == "eval" and "model" in event:
                    say(f"Evaluating base and tuned models... ({event['model']} model measured)")
        return read

    while True:
        if take():
            continue
        state = follower.state()
        if has_ended(state):
            take()  # written after state.json
            return state, errors
        time.sleep(poll_s)


def _print_evaluation(run: RunDir, state: dict[str, Any], errors: list[dict[str, Any]]) -> None:
    """The objectives table and the verdict of a finished evaluation; the exit code says it."""
    from tuner_tui.errors import EXIT_OBJECTIVES_FAILED, RunFailedError
    from tuner_tui.views.evaluation_report import load_report, objectives_table, verdict_line

    phase = state.get("phase")
    if phase == "stopped":
        raise TunerError(
            f"Evaluation of {run.root} stopped as requested; its report is unchanged. Evaluate it "
            f"again with: tuner eval {run.root}"
        )
    if phase != "completed":
        if errors:
            last = errors[-1]
            raise RunFailedError(f"{last.get('message')}\nhint: {last.get('hint')}")
        raise RunFailedError(
            f"The evaluation of {run.root} ended '{phase}' (pid {state.get('pid')} is gone) without "
            f"saying why. See {run.log}; evaluate again with: tuner eval {run.root}"
        )
    report = load_report(run.report / "report.json")
    if report.objectives:
        console.print(objectives_table(report, f"Objectives ({report.where})"))
    console.print(verdict_line(report))
    console.print(Text(f"Report: {run.report / 'report.md'}"))
    raise typer.Exit(EXIT_OBJECTIVES_FAILED if report.verdict == "fail" else EXIT_OK)


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="Run directory.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the export into.")] = Path(
        "export"
    ),
    merge: Annotated[
        bool, typer.Option("--merge", help="Merge the adapter into the base model (full safetensors model).")
    ] = False,
    gguf: Annotated[
        bool,
        typer.Option("--gguf", help="Also write a GGUF (llama.cpp) and an Ollama Modelfile; causal LMs."),
    ] = False,
    quant: Annotated[
        str,
        typer.Option(
            "--quant",
            help="GGUF type: q8_0 (default), f16, bf16, f32; k-quants (q4_k_m, ...) need llama-quantize.",
        ),
    ] = "q8_0",
) -> None:
    """Export a run: its recipe, model card (README.md) and adapter, or (--merge) a merged model;
    --gguf adds a GGUF file and an Ollama Modelfile."""
    _quiet_libraries()
    from tuner_tui.modeling.export import merge_and_export
    from tuner_tui.runs.layout import RunDir

    run_ = RunDir.open(run_dir)
    if gguf:
        from tuner_tui.ship.gguf import add_gguf, check_gguf_run

        check_gguf_run(run_.root, quant)  # converter, quantizer and task, before anything is written
    with console.status("Merging the adapter into the base model..." if merge else "Exporting..."):
        written = merge_and_export(run_.root, out, merge)
    console.print(f"Exported {'merged model' if merge else 'adapter'} and its model card to {written}")
    if gguf:
        with console.status(f"Converting to GGUF ({quant})..."):
            made = add_gguf(run_.root, written, quant, merged_dir=written if merge else None)
        console.print(f"GGUF: {made.gguf} ({made.converter}); Ollama: ollama create NAME -f {made.modelfile}")
        console.print(made.note)
    console.print(f"Re-run headless: tuner run {written / 'tuner_recipe.toml'}")


@app.command()
def doctor(
    recipe: Annotated[
        Path | None, typer.Argument(help="Also check that everything this recipe needs is available offline.")
    ] = None,
    runs_dir: RunsDir = DEFAULT_RUNS_DIR,
) -> None:
    """Check this machine (and a recipe's assets): exit 2 when the recipe cannot run as configured."""
    _quiet_libraries()
    from tuner_tui.modeling.doctor import doctor_checks
    from tuner_tui.recipe import load_recipe
    from tuner_tui.runs.environment import library_versions

    loaded = load_recipe(recipe) if recipe is not None else None
    checks = doctor_checks(loaded, runs_dir, base_dir=recipe.resolve().parent if recipe else None)
    versions = ", ".join(f"{name} {version}" for name, version in library_versions().items())
    table = Table("check", "status", "detail", title="tuner doctor", caption=versions)
    for check in checks:
        status = (
            Text("ok", "green")
            if check.ok
            else Text.assemble(("blocking", "red") if check.blocking else ("warning", "yellow"))
        )
        detail = (
            Text(check.detail)
            if check.ok
            else Text.assemble(f"{check.problem}\n", ("fix:", "dim"), f" {check.fix}")
        )
        table.add_row(check.name, status, detail)
    console.print(table)
    if any(check.blocking for check in checks):
        raise typer.Exit(EXIT_INVALID_INPUT)


def _register_stage_commands() -> None:
    """The later stages (iterate, deploy, ship) keep their commands beside their engines."""
    from tuner_tui.deploy.commands import register as register_deploy
    from tuner_tui.iterate.commands import register as register_iterate
    from tuner_tui.ship.commands import register as register_ship

    for register in (register_iterate, register_ship, register_deploy):
        register(app)


_register_stage_commands()


def print_error(error: TunerError) -> None:
    """One paragraph on stderr, exactly as the message is written (brackets included)."""
    err_console.print(Text.assemble(("error:", "bold red"), f" {error}"), highlight=False, soft_wrap=True)


def main() -> None:
    """Console-script entry point: user errors print one paragraph and exit with their code."""
    try:
        app(standalone_mode=True)
    except TunerError as exc:
        print_error(exc)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # a bug in tuner: short message here, full traceback in a file
        report = _write_crash_report(exc, sys.argv[1:])
        err_console.print(
            Text.assemble(
                ("internal error:", "bold red"),
                f" {type(exc).__name__}: {exc}\nThis is a bug in tuner, not in your input. The "
                f"traceback is in {report}; please include it in a bug report.",
            ),
            highlight=False,
        )
        sys.exit(1)


def _write_crash_report(exc: BaseException, args: list[str] | None = None) -> Path | str:
    """Write the traceback of `exc` to a new file that only this user can read; returns its path.

    The file goes into the run directory the command was given (`tuner eval RUN_DIR`, ...) when
    one of `args` names one, else into the user's state folder ($XDG_STATE_HOME/tuner, by default
    ~/.local/state/tuner), else the cache folder ($XDG_CACHE_HOME/tuner, ~/.cache/tuner), else
    the temp folder. Never a fixed or guessable name in a shared folder: each report is created
    exclusively (mkstemp: O_CREAT|O_EXCL, mode 0600, a unique name), so a planted symlink is
    never followed and two crashes in one second write two reports. When no folder takes it,
    the traceback goes to stderr and the result says so.
    """
    import tempfile
    import traceback

    text = "".join(traceback.format_exception(exc))

    def is_run_dir(arg: str) -> bool:
        try:
            return (Path(arg) / "state.json").is_file() and (Path(arg) / "recipe.toml").is_file()
        except (OSError, ValueError):  # a name too long, a NUL byte: not a run directory
            return False

    folders = [Path(arg) for arg in args or [] if not arg.startswith("-") and is_run_dir(arg)][:1]
    try:
        home: Path | None = Path.home()
    except RuntimeError:  # no HOME and no password entry
        home = None
    for variable, default in (("XDG_STATE_HOME", ".local/state"), ("XDG_CACHE_HOME", ".cache")):
        configured = Path(os.environ.get(variable, ""))
        # The XDG spec: a relative path is invalid and must be ignored.
        if configured.is_absolute():
            folders.append(configured / "tuner")
        elif home is not None:
            folders.append(home / default / "tuner")
    folders.append(Path(tempfile.gettempdir()))
    for folder in folders:
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(
                prefix=f"tuner-crash-{time.strftime('%Y%m%d-%H%M%S')}-", suffix=".log", dir=folder
            )
        except OSError:
            continue
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as report:
                report.write(text)
        except OSError:  # e.g. a full disk: try the next folder
            Path(name).unlink(missing_ok=True)
            continue
        return Path(name)
    sys.stderr.write(text)
    return "the output above (no folder could take a report)"


if __name__ == "__main__":
    main()
