"""The wizard's side of the generation process (`python -m tuner_tui.deploy.generate`): start it,
send requests, read its events, cancel, end it. Standard library only: the TUI imports this, and
the process does the ML work.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


class GenerationProcess:
    """One generation process for one run: requests in on its stdin, events out on its stdout.

    Its stderr (library warnings, a crash's traceback) goes to a log file, never a pipe nobody
    reads; `log` names it.
    """

    def __init__(self, run_dir: Path | str, *, with_base: bool = True, extra_args: list[str] | None = None):
        command = [sys.executable, "-m", "tuner_tui.deploy.generate", str(run_dir)]
        if not with_base:
            command.append("--no-base")
        command += extra_args or []
        handle, name = tempfile.mkstemp(prefix="tuner-try-it-", suffix=".log")
        self.log = Path(name)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
        with os.fdopen(handle, "wb") as log:
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                encoding="utf-8",
                bufsize=1,
                close_fds=True,
                env=env,
            )
        self._ids = itertools.count(1)
        self._asked: list[str] = []

    @property
    def _stdin(self) -> IO[str]:
        assert self.proc.stdin is not None
        return self.proc.stdin

    def _send(self, message: dict[str, Any]) -> None:
        try:
            self._stdin.write(json.dumps(message, ensure_ascii=False) + "\n")
            self._stdin.flush()
        except (BrokenPipeError, ValueError, OSError):  # the process ended; events() says why
            pass

    def ask(self, messages: list[dict[str, str]] | None = None, text: str | None = None,
            models: list[str] | None = None) -> str:  # fmt: skip
        """Send a chat (`messages`) or a text to classify; returns the request's id."""
        rid = str(next(self._ids))
        self._asked.append(rid)
        request: dict[str, Any] = {"id": rid}
        if text is not None:
            request["text"] = text
        else:
            request["messages"] = messages or []
        if models:
            request["models"] = models
        self._send(request)
        return rid

    def cancel(self, rid: str) -> None:
        """Stop that request's answer after the current token."""
        self._send({"cancel": rid})

    def events(self) -> Iterator[dict[str, Any]]:
        """Events as the process writes them, until it exits (then one `exited` event)."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a library printed to stdout
            if isinstance(event, dict):
                yield event
        code = self.proc.wait()
        yield {"event": "exited", "code": code, "log": str(self.log), "tail": self.log_tail()}

    def log_tail(self, lines: int = 8) -> str:
        try:
            return "\n".join(self.log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def close(self, timeout_s: float = 5.0) -> None:
        """End the process: its stdin closed (it ends after the answer in progress), then SIGTERM."""
        if self.proc.poll() is None:
            for rid in self._asked:  # an answer in progress stops after its current token
                self.cancel(rid)
            try:
                self._stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
