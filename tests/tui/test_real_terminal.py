"""The wizard in a real terminal (tmux): keys arrive at a fast typist's speed and as a paste, while
the app is still answering the previous ones; what is saved must be exactly what was typed.

Pilot types synchronously and cannot see these races; this test drives the `tuner` process the way
a person's terminal does. It needs tmux (skipped without it; CI installs it).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.tiny import write_recipe

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux (apt-get install tmux)")


class Terminal:
    """One tmux session running a command, read and typed into like a person's terminal."""

    def __init__(self, command: list[str], cols: int, rows: int, cwd: Path) -> None:
        self.name = f"tuner-test-{uuid.uuid4().hex[:8]}"
        line = " ".join(f"'{part}'" for part in command)
        env = f"env TERM=xterm-256color PATH='{os.environ.get('PATH', '')}' HF_HUB_OFFLINE=1"
        subprocess.run(
            [
                "tmux",
                "new-session",
                "-d",
                "-s",
                self.name,
                "-x",
                str(cols),
                "-y",
                str(rows),
                "-c",
                str(cwd),
                f"{env} {line}; sleep 600",
            ],  # fmt: skip
            check=True,
        )

    def screen(self) -> str:
        result = subprocess.run(
            ["tmux", "capture-pane", "-p", "-t", self.name], capture_output=True, text=True
        )
        return result.stdout

    def wait_for(self, what: Callable[[str], bool] | str, timeout: float = 60.0) -> str:
        test = (lambda s: re.search(what, s) is not None) if isinstance(what, str) else what
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            shown = self.screen()
            if test(shown):
                return shown
            time.sleep(0.1)
        raise AssertionError(f"never shown: {what}\n{self.screen()}")

    def keys(self, *keys: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, *keys], check=True)

    def type(self, text: str, per_char: float = 0.02) -> None:
        """50 characters a second: each key leaves before the app has answered the last."""
        for char in text:
            subprocess.run(["tmux", "send-keys", "-t", self.name, "-l", char], check=True)
            time.sleep(per_char)

    def paste(self, text: str) -> None:
        """All at once, as a terminal delivers a paste (bracketed, like a real one)."""
        buffer = f"buf-{self.name}"
        subprocess.run(["tmux", "set-buffer", "-b", buffer, text], check=True)
        subprocess.run(["tmux", "paste-buffer", "-p", "-b", buffer, "-t", self.name], check=True)

    def click_beside(self, label: str, offset: int) -> None:
        """Click `offset` columns right of the first `label` that stands as a word on screen."""
        for row, line in enumerate(self.wait_for(rf"\b{label}\b").splitlines(), start=1):
            found = re.search(rf"\b{label}\b", line)
            if found:
                col = found.start() + 1 + offset
                for seq in (f"\x1b[<0;{col};{row}M", f"\x1b[<0;{col};{row}m"):
                    self.keys("-H", *[f"{b:02x}" for b in seq.encode()])
                return

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


def saved(recipe: Path) -> dict:
    return tomllib.loads(recipe.read_text(encoding="utf-8"))


@pytest.mark.slow
@pytest.mark.parametrize("size", [(80, 24), (140, 40)], ids=["80x24", "140x40"])
def test_typing_fast_and_pasting_saves_exactly_what_was_typed(
    size: tuple[int, int], tiny_assets, tmp_path: Path
) -> None:
    recipe = write_recipe(tmp_path / "recipe.toml", tiny_assets["data"], tiny_assets["model"])
    text = recipe.read_text(encoding="utf-8").replace('name = "tiny"', 'name = "x"')
    recipe.write_text(text, encoding="utf-8")
    name = "credit-risk-classifier-for-loan-officers-v2"
    domain = "financial news"
    pasted = ("Classify loan applications by default risk from the officer's notes. " * 4)[:200]
    term = Terminal(
        [
            sys.executable,
            "-m",
            "tuner_tui.cli",
            "--recipe",
            str(recipe),
            "--runs-dir",
            str(tmp_path / "runs"),
        ],
        *size,
        tmp_path,
    )
    try:
        term.wait_for("Objective")
        term.click_beside("name", 26)  # the project name's field, right of its label
        term.wait_for("Leave field")  # focused: the footer offers the way out (a person sees the cursor)
        # Keys a person presses (not a burst from one chunk: Textual 8.2.8's input parser can
        # deliver a key that shares a read with an escape sequence after the next read's keys).
        term.keys("End")
        time.sleep(0.1)
        term.keys("BSpace")
        time.sleep(0.1)
        term.type(name)
        term.keys("Tab")
        term.type(domain)
        term.keys("Tab")
        term.paste(pasted)
        term.wait_for(lambda s: name[-12:] in s)
        # Leave the field, then step 4. (Sent apart: ESC and a key within a few milliseconds are
        # one Alt+key to any terminal program.)
        term.keys("Escape")
        term.wait_for(lambda s: "Leave field" not in s)
        term.keys("4")
        term.wait_for("Training loop")
        term.keys("1")
        term.wait_for("Objective")
        term.keys("C-s")
        try:
            wait_until(lambda: saved(recipe)["project"].get("name") == name)
        except AssertionError:
            raise AssertionError(f"not saved:\n{recipe.read_text()}\n{term.screen()}") from None
        project = saved(recipe)["project"]
        assert project["name"] == name
        assert project["domain"] == domain
        assert project["description"] == pasted
    finally:
        term.close()
