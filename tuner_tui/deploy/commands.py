"""The `tuner` subcommands of this stage, registered on the app by `tuner_tui.cli`.

Import-light like cli.py: typer and rich at module scope, the engine inside each command.
"""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.text import Text

if TYPE_CHECKING:
    from tuner_tui.deploy.generate import GenerationSettings, RunModels

RunArg = Annotated[Path, typer.Argument(help="A completed run directory.")]


def _quiet() -> None:
    """The CLI's own quieting, and every warning off: a chat or a served answer is the output."""
    import warnings

    from tuner_tui.cli import _quiet_libraries

    _quiet_libraries()
    warnings.filterwarnings("ignore")


def chat(
    run_dir: RunArg,
    compare: Annotated[
        bool, typer.Option("--compare", help="Answer with the base and the tuned model side by side.")
    ] = False,
    system: Annotated[
        str | None, typer.Option("--system", help="A system message before the conversation.")
    ] = None,
    max_new_tokens: Annotated[
        int | None,
        typer.Option("--max-new-tokens", help="Longest answer (default: [evaluation.generation])."),
    ] = None,
    temperature: Annotated[
        float | None, typer.Option("--temperature", help="Sampling temperature (with --sample).")
    ] = None,
    top_p: Annotated[
        float | None, typer.Option("--top-p", help="Nucleus sampling threshold (with --sample).")
    ] = None,
    sample: Annotated[
        bool | None,
        typer.Option(
            "--sample/--greedy",
            help="Sample, or decode greedily (default: [evaluation.generation] do_sample).",
        ),
    ] = None,
) -> None:
    """Chat with a run's tuned model in the terminal, streaming its answer (the run's own chat
    template); a classifier shows label probabilities, base vs tuned. Ctrl-C stops an answer,
    Ctrl-D (or /quit) ends the chat, /reset forgets the conversation."""
    _quiet()
    from tuner_tui.cli import console, err_console
    from tuner_tui.deploy.generate import RunModels, recipe_settings

    with err_console.status(f"Loading {run_dir}..."):
        models = RunModels(run_dir, with_base=compare)
    settings = recipe_settings(
        models.recipe, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, do_sample=sample
    )
    task = (
        "classifier: type a text to see its label probabilities"
        if models.task != "causal_lm"
        else (
            f"chat template {models.chat_template}; {settings.max_new_tokens} new tokens at most, "
            + ("sampling" if settings.do_sample else "greedy")
        )
    )
    console.print(Text.assemble(("tuner chat", "bold"), f" {models.run.run_id} ({task}). Ctrl-D ends."))
    histories: dict[str, list[dict[str, str]]] = {}

    def reset() -> None:
        start = [{"role": "system", "content": system}] if system else []
        histories.update({which: list(start) for which in ("base", "tuned")})

    reset()
    while True:
        try:
            line = console.input("you> ")
        except (EOFError, KeyboardInterrupt):
            console.print()
            return
        text = line.strip()
        if not text:
            continue
        if text in ("/quit", "/exit"):
            return
        if text == "/reset":
            reset()
            console.print("(conversation forgotten)")
            continue
        if models.task != "causal_lm":
            _print_probabilities(models, text, compare)
            continue
        shown = ("base", "tuned") if compare else ("tuned",)
        for which in shown:
            histories[which].append({"role": "user", "content": text})
        answers = _stream_answers(models, histories, shown, settings)
        for which, answer in answers.items():
            histories[which].append({"role": "assistant", "content": answer})


def _stream_answers(
    models: RunModels,
    histories: dict[str, list[dict[str, str]]],
    shown: tuple[str, ...],
    settings: GenerationSettings,
) -> dict[str, str]:
    """Each model's answer streamed as it is generated; Ctrl-C stops the answer in progress
    (and the next model's)."""
    from rich.live import Live
    from rich.table import Table

    from tuner_tui.cli import console

    cancel = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda signum, frame: cancel.set())
    texts = dict.fromkeys(shown, "")
    finished: set[str] = set()
    try:
        if len(shown) == 1:
            console.print(Text("tuned> ", style="bold cyan"), end="")
            for piece in models.stream(histories["tuned"], "tuned", settings, cancel.is_set):
                texts["tuned"] += piece
                console.print(_shown(piece), end="")
            console.print(Text(" [stopped]", style="yellow") if cancel.is_set() else "")
            return texts

        def table() -> Table:
            grid = Table(*(f"{w} model" for w in shown), expand=True, show_lines=False)
            grid.add_row(
                *(
                    _shown(texts[w]) if texts[w] or w not in finished else Text("(empty answer)", style="dim")
                    for w in shown
                )
            )
            return grid

        with Live(table(), console=console, refresh_per_second=12) as live:
            for which in shown:
                if cancel.is_set():
                    break
                for piece in models.stream(histories[which], which, settings, cancel.is_set):
                    texts[which] += piece
                    live.update(table())
                finished.add(which)
                live.update(table())
        if cancel.is_set():
            console.print(Text("[stopped]", style="yellow"))
        return texts
    finally:
        signal.signal(signal.SIGINT, previous)


def _shown(text: str) -> Text:
    """Model output as terminal text: control characters (a tiny model's stray bytes) made
    visible instead of moving the cursor or vanishing."""
    return Text("".join(c if c.isprintable() or c in "\n\t" else "\ufffd" for c in text))


def _print_probabilities(models: RunModels, text: str, compare: bool) -> None:
    from rich.table import Table

    from tuner_tui.cli import console

    shown = models.models if compare else ("tuned",)
    probs = {which: models.probabilities(text, which) for which in shown}
    table = Table("label", *(f"{w} p" for w in shown))
    labels = list(probs["tuned"])
    for label in sorted(labels, key=lambda k: -probs["tuned"][k]):
        table.add_row(label, *(f"{probs[w][label]:.3f}" for w in shown))
    console.print(table)
    best = max(probs["tuned"], key=lambda k: probs["tuned"][k])
    console.print(Text.assemble("tuned> ", (best, "bold")))


def serve(
    run_dir: RunArg,
    host: Annotated[
        str,
        typer.Option(
            "--host",
            help="Address to listen on; 127.0.0.1 (this machine only) by default: reach it with ssh -L.",
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")] = 8000,
    detach: Annotated[
        bool,
        typer.Option("--detach", "-d", help="Run the server in its own session and return once it answers."),
    ] = False,
    engine: Annotated[
        str,
        typer.Option(
            "--engine",
            help="auto (vllm with a GPU and vllm installed, else transformers), vllm or transformers.",
        ),
    ] = "auto",
    log_prompts: Annotated[
        bool,
        typer.Option(
            "--log-prompts",
            help="Also log each prompt's text to serve/requests.jsonl (off: prompts may hold PII).",
        ),
    ] = False,
    stop: Annotated[bool, typer.Option("--stop", help="Stop the run's server.")] = False,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Send held-out prompts through the endpoint and compare with the offline greedy outputs.",
        ),
    ] = False,
    url: Annotated[
        str | None,
        typer.Option("--url", help="With --check: the endpoint to check (default: the run's server)."),
    ] = None,
    count: Annotated[
        int, typer.Option("--count", min=1, help="With --check: how many held-out prompts to send.")
    ] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="With --check: print the result as JSON.")] = False,
) -> None:
    """Serve a run on an OpenAI-compatible endpoint (/v1/models, /v1/chat/completions, streaming):
    vLLM on a GPU, else transformers serve. Every answered request is logged to
    RUN_DIR/serve/requests.jsonl. --stop ends it, --check tests its chat template."""
    _quiet()
    from tuner_tui.cli import console, err_console
    from tuner_tui.deploy import serve as serving
    from tuner_tui.errors import TunerError

    if sum((stop, check)) > 1:
        raise TunerError("Give one of --stop and --check, not both.")
    if stop:
        state = serving.stop_server(run_dir)
        console.print(f"Stopped the server of {run_dir} (pid {state.get('pid')}, {state.get('url')}).")
        return
    if check:
        with err_console.status("Checking the endpoint against the offline greedy outputs..."):
            result = serving.check_server(run_dir, url, count)
        if as_json:
            print(json.dumps(result.to_json(), indent=2, ensure_ascii=False))
        _print_check(result, quiet=as_json)
        return
    started = serving.start_server(run_dir, host, port, engine, log_prompts, detach, say=err_console.print)
    state = started.state
    console.print(
        Text.assemble(
            ("Serving ", "bold"),
            f"{run_dir} with {state['engine']} at ",
            (state["url"], "bold"),
            f" (model '{state['model']}', pid {state['pid']}).",
        )
    )
    console.print(
        f"Try it: curl {state['url']}/v1/chat/completions -H 'Content-Type: application/json' "
        f'-d \'{{"messages": [{{"role": "user", "content": "Hello"}}]}}\''
    )
    if host in ("127.0.0.1", "localhost", "::1"):
        console.print(
            f"From another machine: ssh -L {port}:127.0.0.1:{port} THIS_HOST, then use the same URL."
        )
    console.print(
        f"Requests are logged to {state['requests_log']}"
        + (
            " (with prompts)."
            if log_prompts
            else " (token counts and latency; --log-prompts adds the prompt text)."
        )
    )
    if detach:
        console.print(f"Stop it: tuner serve --stop {run_dir}    Check it: tuner serve --check {run_dir}")
        return
    console.print("Ctrl-C stops the server.")
    code = serving.serve_foreground(started, Path(run_dir))
    console.print(f"Server stopped (exit code {code}).")


def _print_check(result: Any, quiet: bool = False) -> None:
    from tuner_tui.cli import console
    from tuner_tui.deploy.serve import CheckFailed

    first = result.first_difference
    matching = sum(e.same for e in result.examples)
    if first is None:
        if not quiet:
            console.print(
                Text.assemble(
                    ("PASS", "bold green"),
                    f" {matching}/{len(result.examples)} answers of "
                    f"{result.url} equal the offline greedy outputs ({result.source}).",
                )
            )
        return
    prompt = first.request.get("messages") or first.request.get("prompt")
    raise CheckFailed(
        f"Template check FAILED: {matching}/{len(result.examples)} answers of {result.url} equal the offline "
        f"greedy outputs. First difference: held-out row {first.row_id}, prompt "
        f"{json.dumps(prompt, ensure_ascii=False)}: offline {first.expected.strip()!r}, endpoint "
        f"{first.answered.strip()!r}. The server most likely renders prompts with another chat template "
        "than the run trained with (or decodes differently): serve the model folder tuner serve writes "
        "(RUN_DIR/serve/model, its chat_template.jinja is the run's), with greedy decoding."
    )


def predict(
    run_dir: RunArg,
    input_path: Annotated[
        Path, typer.Argument(metavar="INPUT", help="JSONL, JSON, CSV/TSV or Parquet file of inputs.")
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="JSONL to write (default: INPUT.predictions.jsonl); rows already in it are skipped.",
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Rows per forward pass.")] = 16,
    field: Annotated[
        str | None,
        typer.Option("--field", help="The input column to predict on (default: the recipe's field mapping)."),
    ] = None,
) -> None:
    """Batch inference: one JSON line per input row with `label` and `probabilities` (classifier)
    or `completion` (causal LM). Resumable: run it again to finish an interrupted file."""
    _quiet()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from tuner_tui.cli import console, err_console
    from tuner_tui.deploy.predict import predict_file

    with Progress(TextColumn("predicting"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=err_console, transient=True) as bar:  # fmt: skip
        task = bar.add_task("predict", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        summary = predict_file(run_dir, input_path, out, batch_size, field, progress)
    skipped = f" ({summary.skipped} already there, skipped)" if summary.skipped else ""
    console.print(
        f"Wrote {summary.written} predictions{skipped} to {summary.out} (input column '{summary.column}')."
    )


def monitor(
    run_dir: RunArg,
    inputs: Annotated[
        Path | None,
        typer.Option(
            "--inputs",
            help="Production inputs (JSONL/CSV/Parquet) or a requests log (default: serve/requests.jsonl).",
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the report as JSON (key 'drift': true/false).")
    ] = False,
    field: Annotated[
        str | None, typer.Option("--field", help="The input column (default: the recipe's field mapping).")
    ] = None,
    max_inputs: Annotated[
        int, typer.Option("--max-inputs", min=1, help="Measure a seeded sample of at most this many inputs.")
    ] = 2000,
) -> None:
    """Drift report of production inputs against the run's training data: token lengths (PSI,
    KS), unknown words, PII rate and (classifiers) predicted labels, each with its threshold;
    latency p50/p95 from a requests log."""
    _quiet()
    from tuner_tui.cli import console, err_console
    from tuner_tui.deploy.monitor import monitor_run
    from tuner_tui.views.drift import print_report

    with err_console.status("Comparing the inputs with the training data..."):
        report = monitor_run(run_dir, inputs, field, max_inputs).to_json()
    if as_json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        print_report(console, report)


def register(app: typer.Typer) -> None:
    """Add this stage's commands to `app`."""
    app.command()(chat)
    app.command()(serve)
    app.command()(predict)
    app.command()(monitor)
