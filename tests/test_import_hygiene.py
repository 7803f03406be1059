"""Import boundaries: the TUI never pulls in the ML stack; the engine never pulls in Textual.

Each check runs in a fresh interpreter, so modules this test process already imported cannot hide
(or fake) an import.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
import textwrap

import tuner_tui

HEAVY = ("torch", "transformers", "peft", "datasets", "evaluate")
UI_PACKAGES = ("tuner_tui.screens", "tuner_tui.widgets")
UI_MODULES = ("tuner_tui.app", "tuner_tui.cli")
# Not Python code the engine runs: package data.
NOT_ENGINE = ("tuner_tui.assets",)


def run_python(code: str) -> dict:
    """Run `code` in a fresh interpreter; it prints one JSON object as its last line."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, f"subprocess failed:\n{result.stdout}\n{result.stderr}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def _raise(name: str) -> None:
    raise ImportError(f"cannot import {name} while walking the package")


def engine_modules() -> list[str]:
    """Every module of tuner_tui except the UI layer (app, cli, screens, widgets)."""
    names = [info.name for info in pkgutil.walk_packages(tuner_tui.__path__, "tuner_tui.", onerror=_raise)]
    ui = (*UI_MODULES, *UI_PACKAGES, *NOT_ENGINE)
    engine = [n for n in names if not any(n == u or n.startswith(u + ".") for u in ui)]
    return ["tuner_tui", *engine]


def test_engine_module_list_is_complete() -> None:
    names = engine_modules()
    for expected in (
        "tuner_tui.recipe",
        "tuner_tui.errors",
        "tuner_tui.runs",
        "tuner_tui.training",
        "tuner_tui.data",
        "tuner_tui.modeling",
        "tuner_tui.evaluation",
    ):
        assert expected in names
    assert not any(n.startswith(("tuner_tui.screens", "tuner_tui.widgets")) for n in names)


def test_ui_modules_do_not_import_the_ml_stack() -> None:
    found = run_python(
        f"""
        import importlib, json, pkgutil, sys

        def fail(name):
            raise ImportError(f"cannot import {{name}} while walking the package")

        imported = []
        for name in {list(UI_MODULES)!r}:
            importlib.import_module(name)
            imported.append(name)
        for package_name in {list(UI_PACKAGES)!r}:
            package = importlib.import_module(package_name)
            imported.append(package_name)
            for info in pkgutil.walk_packages(
                package.__path__, package_name + ".", onerror=fail
            ):
                importlib.import_module(info.name)
                imported.append(info.name)
        heavy = [m for m in {HEAVY!r} if m in sys.modules]
        print(json.dumps({{"imported": imported, "heavy": heavy}}))
        """
    )
    assert found["heavy"] == [], f"importing the UI pulled in {found['heavy']}"
    # The walk really reached the screens and widgets.
    assert "tuner_tui.screens.welcome" in found["imported"]
    assert "tuner_tui.widgets.step_sidebar" in found["imported"]


def test_tuner_help_does_not_import_the_ml_stack() -> None:
    found = run_python(
        f"""
        import contextlib, io, json, sys
        from tuner_tui.cli import main
        sys.argv = ["tuner", "--help"]
        out = io.StringIO()
        code = None
        with contextlib.redirect_stdout(out):
            try:
                main()
            except SystemExit as exit_:
                code = exit_.code
        heavy = [m for m in {HEAVY!r} if m in sys.modules]
        print(json.dumps({{"code": code, "help": out.getvalue(), "heavy": heavy}}))
        """
    )
    assert found["code"] in (0, None)
    assert "Usage" in found["help"]
    assert found["heavy"] == [], f"`tuner --help` imported {found['heavy']}"


def test_engine_modules_do_not_import_textual() -> None:
    modules = engine_modules()
    # One interpreter for all of them (the ML stack is slow to import), checking sys.modules
    # after each import, so a failure names the first module that brought Textual in.
    found = run_python(
        f"""
        import importlib, json, sys
        culprit = None
        for name in {modules!r}:
            importlib.import_module(name)
            if culprit is None and "textual" in sys.modules:
                culprit = name
        print(json.dumps({{"culprit": culprit}}))
        """
    )
    assert found["culprit"] is None, f"importing {found['culprit']} imported textual"
