"""The server process `tuner serve` starts: an existing engine with the request log added.

    python -m tuner_tui.deploy.server transformers MODEL_DIR --host H --port P
    python -m tuner_tui.deploy.server vllm MODEL --host H --port P [--lora NAME=DIR] ...

`transformers`: transformers' own `transformers serve` (its `Serve` command, pinned to the merged
model), with `RequestLogMiddleware` added to the FastAPI app it builds. `vllm`: `vllm serve`
(replacing this process, so the recorded pid is vLLM's), given the middleware through its
documented `--middleware` option. The request log's path and the prompt switch come from the
environment (`requestlog.LOG_ENV`, `requestlog.PROMPTS_ENV`), which `tuner serve` sets.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

MIDDLEWARE = "tuner_tui.deploy.requestlog.RequestLogMiddleware"


def run_transformers(model: str, host: str, port: int, device: str) -> None:
    """Serve `model` (a folder) with `transformers serve`, the request log in its app."""
    from transformers.cli.serving import server as hf_server

    from tuner_tui.deploy.requestlog import RequestLogMiddleware

    build = getattr(hf_server, "build_server", None)
    if build is None:  # the hook this relies on moved: say so instead of serving without a log
        raise SystemExit(
            "transformers.cli.serving.server.build_server is missing in this transformers version; "
            "tuner serve needs it to add the request log. Install transformers 5.x with `transformers "
            "serve` (pip install 'tuner-tui[serve]')."
        )

    def build_with_log(*args: Any, **kwargs: Any) -> Any:
        app = build(*args, **kwargs)
        app.add_middleware(RequestLogMiddleware)  # settings from the environment
        return app

    hf_server.build_server = build_with_log  # Serve imports it when it builds the app
    from transformers.cli.serve import Serve

    Serve(force_model=model, host=host, port=port, device=device, log_level="warning")


def vllm_command(
    model: str,
    host: str,
    port: int,
    served_name: str,
    lora: str | None = None,
    max_lora_rank: int | None = None,
    chat_template: str | None = None,
) -> list[str]:
    """`vllm serve` as vLLM documents it: a LoRA adapter with --enable-lora --lora-modules
    NAME=PATH on its base model, else the (merged) model under --served-model-name."""
    command = ["vllm", "serve", model, "--host", host, "--port", str(port), "--middleware", MIDDLEWARE]
    if lora:
        command += ["--enable-lora", "--lora-modules", lora]
        if max_lora_rank:
            command += ["--max-lora-rank", str(max_lora_rank)]
    else:
        command += ["--served-model-name", served_name]
    if chat_template:  # the template the run trained with, not the base tokenizer's
        command += ["--chat-template", chat_template]
    return command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tuner_tui.deploy.server")
    parser.add_argument("engine", choices=("transformers", "vllm"))
    parser.add_argument("model")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--served-name", default="")
    parser.add_argument("--lora", default=None, help="vllm: NAME=ADAPTER_DIR")
    parser.add_argument("--max-lora-rank", type=int, default=None)
    parser.add_argument("--chat-template", default=None)
    args = parser.parse_args(argv)
    if args.engine == "transformers":
        run_transformers(args.model, args.host, args.port, args.device)
        return 0
    command = vllm_command(
        args.model, args.host, args.port, args.served_name, args.lora, args.max_lora_rank, args.chat_template
    )
    print("tuner serve: " + " ".join(command), flush=True)
    os.execvp(command[0], command)  # vLLM's pid is the recorded one; its output goes to the log


if __name__ == "__main__":
    sys.exit(main())
