"""`tuner serve`: an OpenAI-compatible endpoint for a completed run, on an existing engine.

Engines: vLLM (`vllm serve`, the LoRA adapter on its base model with --enable-lora, or the merged
model) when vllm is installed and a CUDA GPU is present; otherwise `transformers serve` on the
merged model (written once into `serve/model/` with `merge_and_export`). The server runs as
`python -m tuner_tui.deploy.server` (see there), in its own session with `--detach` (like the
worker: a dropped SSH connection does not end it), output to `serve/server.log`. It is recorded
in the run directory:

    serve/state.json      {"pid", "pid_started", "host", "url", "engine", "model", "port",
                           "detached", "log_prompts", "requests_log", "started", "phase"}
    serve/requests.jsonl  one line per answered request (see requestlog.py)
    serve/server.log      the engine's output

`tuner serve --stop RUN_DIR` ends it (SIGTERM to its process group, SIGKILL after a grace
period); `tuner runs` lists the runs being served. `check_server` is `tuner serve --check`: the
held-out prompts through the endpoint against the offline greedy outputs.
"""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuner_tui.errors import EXIT_RUN_FAILED, TunerError
from tuner_tui.runs.events import now_iso
from tuner_tui.runs.layout import RunDir
from tuner_tui.runs.state import atomic_write_json, process_start_time, read_raw_state, worker_alive

ENGINES = ("auto", "vllm", "transformers")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
READY_TIMEOUT_S = 600.0
STOP_GRACE_S = 20.0
SERVE_PACKAGES = ("fastapi", "uvicorn", "openai", "pydantic")
"""What `transformers serve` imports besides transformers (its `serving` extra; ours: `serve`)."""


class CheckFailed(TunerError):
    """The endpoint's answers differ from the offline evaluation's greedy outputs."""

    exit_code = EXIT_RUN_FAILED


def serve_dir(run_root: Path) -> Path:
    return Path(run_root) / "serve"


def state_path(run_root: Path) -> Path:
    return serve_dir(run_root) / "state.json"


def requests_log(run_root: Path) -> Path:
    return serve_dir(run_root) / "requests.jsonl"


def served(run_root: Path) -> dict[str, Any] | None:
    """The run's serve/state.json when its server process is alive (the same process: pid and
    start time, as for workers), else None."""
    state = read_raw_state(state_path(run_root))
    if not state or state.get("phase") != "serving" or not worker_alive(state):
        return None
    return state


# -- the engine ------------------------------------------------------------------------------------


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return bool(torch.cuda.is_available())


def choose_engine(engine: str, has_gpu: Callable[[], bool] = cuda_available) -> str:
    """The engine to serve with: 'vllm' or 'transformers'.

    Raises:
        TunerError: an unknown engine; vllm asked for without a GPU or without the package;
            transformers serve's own packages (fastapi, uvicorn, openai) missing.
    """
    if engine not in ENGINES:
        raise TunerError(f"--engine '{engine}' is not an engine: choose one of {', '.join(ENGINES)}.")
    vllm_installed = importlib.util.find_spec("vllm") is not None
    if engine == "vllm":
        if not has_gpu():
            raise TunerError(
                "--engine vllm needs a CUDA GPU: vLLM runs its kernels on the GPU, and this machine has "
                "none (torch sees no CUDA device). Serve on this machine with --engine transformers "
                "(transformers serve, which runs on the CPU), or run tuner serve on a GPU machine."
            )
        if not vllm_installed:
            raise TunerError(
                "--engine vllm needs the vllm package, which is not installed: pip install vllm (on the "
                "GPU machine), or serve with --engine transformers."
            )
        return "vllm"
    if engine == "auto" and vllm_installed and has_gpu():
        return "vllm"
    missing = [name for name in SERVE_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise TunerError(
            f"Serving with transformers serve needs {', '.join(missing)}, which "
            f"{'is' if len(missing) == 1 else 'are'} not installed: pip install 'tuner-tui[serve]' "
            "(or pip install 'transformers[serving]')."
        )
    return "transformers"


def check_port(host: str, port: int) -> None:
    """Refuse a port another process listens on, before anything is started.

    Raises:
        TunerError: the port is in use, or the address is not one of this machine's.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise TunerError(f"--host {host} is not an address this machine can bind: {exc}.") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise TunerError(
                    f"Port {port} on {host} is in use by another program, so the server cannot listen "
                    f"there. Pass a free one with --port (e.g. --port {port + 1}), or stop what uses it "
                    "(a server of another run: tuner serve --stop RUN_DIR; `tuner runs` lists them)."
                ) from None
            raise TunerError(
                f"Cannot listen on {host}:{port}: {exc}. Choose another --host or --port."
            ) from None


def merged_model(run: RunDir, say: Callable[[str], object] = lambda _: None) -> Path:
    """`serve/model/`: the run's adapter merged into its base (a whole model transformers serve
    loads), written once; a half-written one (interrupted) is replaced."""
    import shutil

    from tuner_tui.modeling.export import merge_and_export

    target = serve_dir(run.root) / "model"
    done = target / ".tuner-merged"
    if done.exists():
        return target
    shutil.rmtree(target, ignore_errors=True)
    partial = serve_dir(run.root) / f".model-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    say(f"Merging the adapter into the base model for serving: {target}")
    merge_and_export(run.root, partial, merge=True)
    (partial / ".tuner-merged").write_text(now_iso() + "\n", encoding="utf-8")
    os.replace(partial, target)
    return target


@dataclass
class ServerPlan:
    """What to start: the command, the name clients put in `model`, and where the state goes."""

    engine: str
    command: list[str]
    model: str
    url: str
    host: str
    port: int
    env: dict[str, str] = field(default_factory=dict)


def plan_server(
    run: RunDir,
    recipe: Any,
    engine: str,
    host: str,
    port: int,
    log_prompts: bool,
    say: Callable[[str], object] = lambda _: None,
) -> ServerPlan:
    """The server command for `engine` ('vllm' or 'transformers'), its model prepared."""
    from tuner_tui.deploy.requestlog import LOG_ENV, PROMPTS_ENV
    from tuner_tui.modeling.export import is_peft_adapter

    env = {LOG_ENV: str(requests_log(run.root)), PROMPTS_ENV: "1" if log_prompts else "0"}
    url = f"http://{_url_host(host)}:{port}"
    entry = [sys.executable, "-m", "tuner_tui.deploy.server"]
    if engine == "vllm":
        adapter_config = run.adapter / "adapter_config.json"
        template = run.adapter / "chat_template.jinja"
        chat = ["--chat-template", str(template)] if template.exists() else []
        if is_peft_adapter(run.adapter) and _peft_type(adapter_config) == "LORA":
            from tuner_tui.modeling.resolve import resolve_model

            rank = int(json.loads(adapter_config.read_text(encoding="utf-8")).get("r", 16))
            base = resolve_model(recipe.model.name_or_path)
            command = [*entry, "vllm", base, "--host", host, "--port", str(port)]
            command += [
                "--lora",
                f"{run.run_id}={run.adapter}",
                "--max-lora-rank",
                str(_vllm_rank(rank)),
                *chat,
            ]
        else:  # another adapter type, or a whole model: vLLM serves the merged weights
            model = merged_model(run, say)
            command = [*entry, "vllm", str(model), "--host", host, "--port", str(port)]
            command += ["--served-name", run.run_id, *chat]
        return ServerPlan("vllm", command, run.run_id, url, host, port, env)
    model = merged_model(run, say)
    command = [*entry, "transformers", str(model), "--host", host, "--port", str(port), "--device", "cpu"]
    if cuda_available():
        command[-1] = "auto"
    # transformers serve names a pinned model by the path it was given.
    return ServerPlan("transformers", command, str(model), url, host, port, env)


def _vllm_rank(rank: int) -> int:
    """vLLM accepts these --max-lora-rank values; the smallest that holds the adapter's rank."""
    for allowed in (8, 16, 32, 64, 128, 256, 320, 512):
        if rank <= allowed:
            return allowed
    return rank


def _peft_type(config: Path) -> str:
    try:
        return str(json.loads(config.read_text(encoding="utf-8")).get("peft_type", ""))
    except (OSError, ValueError):
        return ""


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


@dataclass(frozen=True)
class StartedServer:
    """A server `start_server` started and saw answering."""

    state: dict[str, Any]
    proc: subprocess.Popen

    @property
    def url(self) -> str:
        return str(self.state["url"])


def start_server(
    run_dir: Path,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    engine: str = "auto",
    log_prompts: bool = False,
    detach: bool = True,
    ready_timeout_s: float = READY_TIMEOUT_S,
    say: Callable[[str], object] = lambda _: None,
) -> StartedServer:
    """Start the run's server and wait until it answers `/v1/models`.

    Args:
        detach: Its own session (setsid), so it outlives this process and the terminal; else a
            child of this process (the foreground `tuner serve`, which ends it on Ctrl-C).

    Raises:
        TunerError: the run is not completed or not a causal LM, it is served already, the port is
            in use, the engine cannot run here, or the server exited before it answered.
    """
    from tuner_tui.deploy.artifacts import completed_run

    run, recipe = completed_run(run_dir, "serve")
    if recipe.model.task == "sequence_classification":
        raise TunerError(
            f"{run.root} is a classifier ([model] task = 'sequence_classification'): an OpenAI chat "
            "endpoint serves generative models. Classify with `tuner predict RUN_DIR INPUT`, or try it "
            "with `tuner chat RUN_DIR`."
        )
    current = served(run.root)
    if current is not None:
        raise TunerError(
            f"{run.root} is already being served at {current.get('url')} (pid {current.get('pid')}). "
            f"Stop it first with `tuner serve --stop {run.root}`."
        )
    check_port(host, port)
    chosen = choose_engine(engine)
    serve_dir(run.root).mkdir(exist_ok=True)
    plan = plan_server(run, recipe, chosen, host, port, log_prompts, say)
    log = serve_dir(run.root) / "server.log"
    env = {**os.environ, **plan.env, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            plan.command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=detach,
            close_fds=True,
            cwd=serve_dir(run.root),
            env=env,
        )
    state = {
        "phase": "serving",
        "pid": proc.pid,
        "pid_started": process_start_time(proc.pid),
        "host": socket.gethostname(),
        "bind": host,
        "port": port,
        "url": plan.url,
        "engine": plan.engine,
        "model": plan.model,
        "detached": detach,
        "log_prompts": log_prompts,
        "requests_log": str(requests_log(run.root)),
        "log": str(log),
        "started": now_iso(),
    }
    atomic_write_json(state_path(run.root), state)
    say(f"Starting {plan.engine} on {plan.url} (pid {proc.pid}); its output: {log}")
    try:
        wait_ready(plan.url, proc, log, ready_timeout_s)
    except BaseException:
        _end(proc.pid, detach)
        proc.wait()
        _mark_stopped(run.root, "failed to start")
        raise
    return StartedServer(state, proc)


def wait_ready(url: str, proc: subprocess.Popen, log: Path, timeout_s: float) -> None:
    """Poll `url`/v1/models until it answers 200.

    Raises:
        TunerError: the server process exited first (with the end of its log), or the deadline passed.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        code = proc.poll()
        if code is not None:
            raise TunerError(
                f"The server exited with code {code} before it answered. The end of its log ({log}):\n"
                f"{_tail(log)}"
            )
        try:
            with urllib.request.urlopen(f"{url}/v1/models", timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise TunerError(
                f"The server did not answer {url}/v1/models within {timeout_s:.0f} s. See its log: {log}"
            )
        time.sleep(0.2)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _end(pid: int, own_group: bool, sig: int = signal.SIGTERM) -> None:
    try:
        if own_group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _mark_stopped(run_root: Path, why: str) -> None:
    state = read_raw_state(state_path(run_root))
    if state:
        state.update(phase="stopped", stopped=now_iso(), stopped_why=why)
        atomic_write_json(state_path(run_root), state)


def stop_server(run_dir: Path, grace_s: float = STOP_GRACE_S) -> dict[str, Any]:
    """End the run's server: SIGTERM to it (its process group when detached), SIGKILL after
    `grace_s`; serve/state.json then reads `stopped`. Returns the state it had.

    Raises:
        TunerError: the run is not being served (nothing recorded, or its server is gone).
    """
    run = RunDir.open(run_dir)
    state = served(run.root)
    if state is None:
        recorded = read_raw_state(state_path(run.root))
        if recorded.get("phase") == "serving":  # recorded, but the process is gone
            _mark_stopped(run.root, "found gone")
        raise TunerError(
            f"{run.root} is not being served (no live server in {state_path(run.root)}); nothing to stop. "
            f"Start one with `tuner serve {run.root}`."
        )
    pid, group = int(state["pid"]), bool(state.get("detached", True))
    _end(pid, group)
    deadline = time.monotonic() + grace_s
    while worker_alive(state) and time.monotonic() < deadline:
        time.sleep(0.1)
    if worker_alive(state):
        _end(pid, group, signal.SIGKILL)
        while worker_alive(state) and time.monotonic() < deadline + 5:
            time.sleep(0.05)
    _mark_stopped(run.root, "tuner serve --stop")
    return state


def serve_foreground(started: StartedServer, run_root: Path) -> int:
    """Wait for a foreground server to end; Ctrl-C or SIGTERM ends it. Returns its exit code."""
    proc = started.proc

    def on_sigterm(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        _end(proc.pid, False)
        try:
            code = proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            _end(proc.pid, False, signal.SIGKILL)
            code = proc.wait()
    _mark_stopped(run_root, "foreground server ended")
    return code


# -- the template consistency check ---------------------------------------------------------------


@dataclass(frozen=True)
class CheckedExample:
    row_id: str
    request: dict[str, Any]
    expected: str
    answered: str

    @property
    def same(self) -> bool:
        return self.expected.strip() == self.answered.strip()


@dataclass(frozen=True)
class CheckResult:
    url: str
    examples: list[CheckedExample]
    source: str
    """Where the offline outputs came from: report/predictions.jsonl, or generated here."""

    @property
    def first_difference(self) -> CheckedExample | None:
        return next((e for e in self.examples if not e.same), None)

    @property
    def passed(self) -> bool:
        return bool(self.examples) and self.first_difference is None

    def to_json(self) -> dict[str, Any]:
        first = self.first_difference
        return {
            "url": self.url,
            "passed": self.passed,
            "examples": len(self.examples),
            "matching": sum(e.same for e in self.examples),
            "offline_source": self.source,
            "first_difference": None
            if first is None
            else {
                "row_id": first.row_id,
                "request": first.request,
                "expected": first.expected,
                "answered": first.answered,
            },
        }


def post_json(url: str, body: dict[str, Any], timeout_s: float = 300.0) -> dict[str, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as answer:
            return json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", errors="replace")[:500]
        raise TunerError(f"The server at {url} answered HTTP {exc.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise TunerError(
            f"Cannot reach the server at {url}: {exc}. Is it running? `tuner serve RUN_DIR --detach` "
            "starts it; `tuner runs` lists the runs being served."
        ) from None


def check_server(run_dir: Path, url: str | None = None, count: int = 5) -> CheckResult:
    """Send `count` held-out prompts through the endpoint, greedy, and compare each answer with
    the offline greedy output of the tuned model on the same prompt.

    The offline outputs are the evaluation's (report/predictions.jsonl, matched by row id) when
    it decoded greedily, else generated here with the evaluation's own scorer. Chat runs are sent
    as messages to /v1/chat/completions, so the server applies its own chat template: a server
    with another template answers other text, and the first such example is reported.

    Raises:
        TunerError: no server (and no --url), the run is not completed, or no prompts to send.
    """
    from tuner_tui.deploy.artifacts import completed_run, load_run_tokenizer, uses_chat_template

    run, recipe = completed_run(run_dir, "check the server of")
    state = served(run.root) or {}
    own = url is None or url.rstrip("/") == state.get("url")
    url = url or state.get("url")
    if not url:
        raise TunerError(
            f"{run.root} is not being served, so there is nothing to check: start it with `tuner serve "
            f"{run.root} --detach`, or pass the endpoint with --url."
        )
    url = url.rstrip("/")
    model = (state.get("model") if own else None) or _served_model(url)
    tokenizer = load_run_tokenizer(run, recipe)
    prompts = _check_prompts(recipe, tokenizer, count)
    if not prompts:
        raise TunerError(
            f"The held-out split of {run.root} has no example with a prompt and an answer to check."
        )
    expected, source = _offline_outputs(run, recipe, tokenizer, prompts)
    gen = recipe.evaluation.generation
    chat = uses_chat_template(recipe)
    examples = []
    for (row_id, messages, prompt), offline in zip(prompts, expected, strict=True):
        body: dict[str, Any] = {"model": model, "max_tokens": gen.max_new_tokens, "temperature": 0.0}
        if chat:
            body["messages"] = messages
            answer = post_json(f"{url}/v1/chat/completions", body)
            text = str(((answer.get("choices") or [{}])[0].get("message") or {}).get("content") or "")
        else:
            body["prompt"] = prompt
            answer = post_json(f"{url}/v1/completions", body)
            text = str((answer.get("choices") or [{}])[0].get("text") or "")
        request = {k: v for k, v in body.items() if k != "model"}
        examples.append(CheckedExample(row_id, request, offline, text))
    return CheckResult(url, examples, source)


def _served_model(url: str) -> str | None:
    try:
        with urllib.request.urlopen(f"{url}/v1/models", timeout=10) as answer:
            data = json.loads(answer.read()).get("data") or []
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return str(data[0]["id"]) if data and isinstance(data[0], dict) and "id" in data[0] else None


def _check_prompts(recipe: Any, tokenizer: Any, count: int) -> list[tuple[str, list[dict[str, str]], str]]:
    """(row id, messages, rendered prompt) of the first `count` held-out rows with an answer,
    in evaluation order (the evaluation's own split and sample)."""
    from tuner_tui.data.formats import to_messages
    from tuner_tui.evaluation.run import load_eval_split

    split = load_eval_split(recipe, tokenizer)
    ids = getattr(split, "row_ids", None) or [f"row-{i}" for i in range(len(split.rows))]
    f = split.detection.fields
    found = []
    for row_id, row in zip(ids, split.rows, strict=True):
        if split.detection.format == "text":
            continue  # nothing to answer: a plain-text run has no prompts
        if split.detection.format == "prompt_completion":
            prompt = str(row[f["prompt"]] or "")
            messages = [{"role": "user", "content": prompt}]
            if not str(row[f["completion"]] or ""):
                continue
        else:
            conversation = to_messages(row, split.detection)
            last = max((i for i, m in enumerate(conversation) if m["role"] == "assistant"), default=None)
            if last is None or not conversation[last]["content"]:
                continue
            messages = conversation[:last]
            prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        found.append((row_id, messages, prompt))
        if len(found) >= count:
            break
    return found


def _offline_outputs(
    run: RunDir, recipe: Any, tokenizer: Any, prompts: list[tuple[str, list[dict[str, str]], str]]
) -> tuple[list[str], str]:
    """The tuned model's greedy outputs for `prompts`: from the evaluation's predictions when it
    decoded greedily and has them all, else generated now the way evaluation generates."""
    gen = recipe.evaluation.generation
    predictions = run.report / "predictions.jsonl"
    if predictions.exists() and not gen.do_sample and gen.num_beams == 1:
        by_id: dict[str, Any] = {}
        for line in predictions.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict) and isinstance(row.get("row_id"), str):
                by_id[row["row_id"]] = (row.get("tuned") or {}).get("prediction")
        found = [by_id.get(row_id) for row_id, _, _ in prompts]
        if all(isinstance(text, str) for text in found):
            return [str(t) for t in found], str(predictions)
    from tuner_tui.evaluation.scoring import CausalScorer
    from tuner_tui.modeling.export import load_tuned_model

    model = load_tuned_model(recipe, run.adapter)
    scorer = CausalScorer(model, tokenizer, max_length=recipe.training.max_length, batch_size=1)
    texts = scorer.generate([p for _, _, p in prompts], max_new_tokens=gen.max_new_tokens)
    return texts, "generated offline (greedy, the evaluation's scorer)"
