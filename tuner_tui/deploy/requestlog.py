"""`serve/requests.jsonl`: one JSON object per answered completion request, written by an ASGI
middleware inside the server process.

Neither engine writes a per-request record a drift monitor can read: `transformers serve` logs a
line of free text per request, vLLM's request logging goes to its logger. Both accept standard
ASGI middleware in their own FastAPI app, and this is one (the ASGI "pure middleware" pattern that
Starlette documents, https://www.starlette.io/middleware/#pure-asgi-middleware): vLLM adds it with
its documented `--middleware IMPORT.PATH` option, and for `transformers serve` the server module
(`tuner_tui.deploy.server`) adds it with `app.add_middleware` to the app transformers builds. No
proxy, no second port: the record is taken where the request is answered.

Each line: {"time", "endpoint", "status", "stream", "prompt_tokens", "completion_tokens",
"latency_s", "first_token_s"}; with `--log-prompts` also "prompt" (the user's text) and
"messages". Token counts are the server's own `usage` (in the JSON answer, or in the last
streamed chunk); null when the engine did not report them. Prompts may hold personal data, so
they are written only when asked for.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from tuner_tui.runs.events import now_iso

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LOG_ENV = "TUNER_REQUESTS_LOG"
"""The file the middleware appends to (set by `tuner serve` for the server process)."""
PROMPTS_ENV = "TUNER_LOG_PROMPTS"
"""'1': also record the prompt text (`tuner serve --log-prompts`)."""
LOGGED_PATHS = ("/v1/chat/completions", "/v1/completions")

_write_lock = threading.Lock()


def prompt_text(body: dict[str, Any]) -> str:
    """What the user wrote in a request: the user turns of a chat, or a completion's prompt."""
    messages = body.get("messages")
    if isinstance(messages, list):
        parts = []
        for message in messages:
            if isinstance(message, dict) and message.get("role") == "user":
                content = message.get("content")
                if isinstance(content, list):  # OpenAI content parts
                    content = "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
                parts.append(str(content or ""))
        return "\n".join(parts)
    prompt = body.get("prompt")
    if isinstance(prompt, list):
        return "\n".join(str(p) for p in prompt)
    return str(prompt or "")


def usage_of(body: bytes, stream: bool) -> dict[str, Any] | None:
    """The `usage` object of a JSON answer, or of the last streamed chunk that carries one."""
    if not stream:
        try:
            answer = json.loads(body)
        except ValueError:
            return None
        usage = answer.get("usage") if isinstance(answer, dict) else None
        return usage if isinstance(usage, dict) else None
    found = None
    for line in body.decode("utf-8", errors="replace").splitlines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if not data or data == "[DONE]":
            continue
        try:
            chunk = json.loads(data)
        except ValueError:
            continue
        if isinstance(chunk, dict) and isinstance(chunk.get("usage"), dict):
            found = chunk["usage"]
    return found


def append_record(path: Path, record: dict[str, Any]) -> None:
    """One line, written with one `write` on a file opened for appending (O_APPEND: lines of
    concurrent requests never interleave)."""
    line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    with _write_lock:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


class RequestLogMiddleware:
    """Pure ASGI middleware: time each completion request and append its record.

    Args:
        app: The application it wraps.
        log_path: Where to append; default `$TUNER_REQUESTS_LOG` (vLLM builds the middleware with
            the app alone, so its settings come from the environment).
        log_prompts: Record the prompt text; default `$TUNER_LOG_PROMPTS == "1"`.
    """

    def __init__(self, app: ASGIApp, log_path: str | None = None, log_prompts: bool | None = None):
        self.app = app
        path = log_path or os.environ.get(LOG_ENV, "")
        self.log_path = Path(path) if path else None
        self.log_prompts = log_prompts if log_prompts is not None else os.environ.get(PROMPTS_ENV) == "1"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.log_path is None
            or scope.get("type") != "http"
            or scope.get("method") != "POST"
            or scope.get("path") not in LOGGED_PATHS
        ):
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        request_body = bytearray()
        response_body = bytearray()
        status: dict[str, Any] = {"code": None, "first": None}

        async def receive_wrapper() -> Message:
            message = await receive()
            if message.get("type") == "http.request":
                request_body.extend(message.get("body", b""))
            return message

        async def send_wrapper(message: Message) -> None:
            if message.get("type") == "http.response.start":
                status["code"] = message.get("status")
            elif message.get("type") == "http.response.body":
                chunk = message.get("body", b"")
                if chunk and status["first"] is None:
                    status["first"] = time.monotonic() - started
                response_body.extend(chunk)
            await send(message)

        try:
            await self.app(scope, receive_wrapper, send_wrapper)
        finally:
            self._record(scope, bytes(request_body), bytes(response_body), status, started)

    def _record(
        self, scope: Scope, request: bytes, response: bytes, status: dict[str, Any], started: float
    ) -> None:
        try:
            body = json.loads(request) if request else {}
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        stream = bool(body.get("stream"))
        usage = usage_of(response, stream) or {}
        record: dict[str, Any] = {
            "time": now_iso(),
            "endpoint": scope.get("path"),
            "status": status["code"],
            "stream": stream,
            "prompt_tokens": usage.get("prompt_tokens"),
            "completion_tokens": usage.get("completion_tokens"),
            "latency_s": round(time.monotonic() - started, 6),
            "first_token_s": round(status["first"], 6) if status["first"] is not None else None,
        }
        if self.log_prompts:
            record["prompt"] = prompt_text(body)
            if isinstance(body.get("messages"), list):
                record["messages"] = body["messages"]
        assert self.log_path is not None
        try:
            append_record(self.log_path, record)
        except OSError:  # a full disk must not fail the request that was answered
            pass
