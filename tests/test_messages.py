"""Messages name recipe sections ("[data] path") and show lists ("[a, b]"): every one of them must
reach the user exactly as written, in the CLI, in `--help` and in the wizard, never eaten as markup.

The messages are collected from the source: every string given to a TunerError (or subclass) or to
a recipe Problem, with each interpolated value replaced by a placeholder.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from typer.main import get_command

import tuner_tui
from tuner_tui import cli
from tuner_tui.errors import TunerError

PACKAGE = Path(tuner_tui.__file__).parent
SCREENS = PACKAGE.parent / "screens"
BRACKETED = re.compile(r"\[[^\]\n]*\]")


def _error_classes(trees: list[ast.Module]) -> set[str]:
    names = {"TunerError"}
    grew = True
    while grew:
        grew = False
        for tree in trees:
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef) and node.name not in names:
                    bases = {b.id for b in node.bases if isinstance(b, ast.Name)}
                    if bases & names:
                        names.add(node.name)
                        grew = True
    return names


def _text(node: ast.AST) -> str | None:
    """The literal text of a string expression, '{}' for each interpolated value."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(
            _text(v) or "{}" if not isinstance(v, ast.FormattedValue) else "{}" for v in node.values
        )
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _text(node.left), _text(node.right)
        return (left or "{}") + (right or "{}") if left is not None or right is not None else None
    if isinstance(node, ast.IfExp):
        return _text(node.body) or _text(node.orelse)
    return None


def collect_messages() -> list[str]:
    files = [*PACKAGE.rglob("*.py"), *SCREENS.rglob("*.py")]
    trees = [ast.parse(f.read_text(encoding="utf-8")) for f in files]
    errors = _error_classes(trees)
    messages = []
    for tree in trees:
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = (
                func.id
                if isinstance(func, ast.Name)
                else func.attr
                if isinstance(func, ast.Attribute)
                else ""
            )
            if name in errors and node.args:
                text = _text(node.args[0])
            elif name == "Problem" and len(node.args) >= 2:
                text = _text(node.args[1])
            else:
                continue
            if text and BRACKETED.search(text):
                messages.append(text)
    return messages


MESSAGES = collect_messages()


def test_the_collector_finds_the_bracketed_messages() -> None:
    assert len(MESSAGES) >= 20
    assert any("[model] name_or_path" in m for m in MESSAGES)


def test_cli_prints_every_message_literally(capsys: pytest.CaptureFixture[str]) -> None:
    for message in MESSAGES:
        cli.print_error(TunerError(message))
        err = capsys.readouterr().err
        for bracketed in BRACKETED.findall(message):
            assert bracketed in err, f"{bracketed!r} vanished from: {message}"


def test_help_shows_brackets_literally() -> None:
    from typer.testing import CliRunner

    runner = CliRunner()
    command = get_command(cli.app)
    checked = 0
    for name, sub in command.commands.items():  # type: ignore[attr-defined]
        result = runner.invoke(cli.app, [name, "--help"], env={"COLUMNS": "250"}, terminal_width=250)
        assert result.exit_code == 0, result.output
        flat = " ".join(result.output.split())
        for param in sub.params:
            for bracketed in BRACKETED.findall(getattr(param, "help", None) or ""):
                assert bracketed in flat, f"tuner {name} --help lost {bracketed!r}"
                checked += 1
    assert checked >= 1  # `tuner run --help` names [training] nnodes


async def test_the_wizard_shows_every_message_literally() -> None:
    from tuner_tui.app import RunNotStarted, TunerApp

    app = TunerApp()
    async with app.run_test(size=(120, 40)) as pilot:
        for message in MESSAGES:
            app.post_message(RunNotStarted(message))
        await pilot.pause()
        shown = [str(n.message) for n in app._notifications]
        for message in MESSAGES:
            assert message in shown


def test_problem_lists_in_the_wizard_keep_brackets() -> None:
    from tuner_tui.recipe import Problem
    from tuner_tui.screens.step import StepScreen

    problem = Problem("training.packing", "does not work with [method] type = 'prompt_tuning' [a, b]")

    class Probe(StepScreen):
        SECTIONS = ("training",)

    text = Probe()._problems_text((problem,))
    assert "[method] type" in text.plain and "[a, b]" in text.plain
