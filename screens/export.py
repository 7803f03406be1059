"""Step 6, Export: save the recipe, and ship the adapter and report of a finished run.

Two recipes can be shown: the draft (exactly what `ctrl+s` would write, comments kept) and, when
the App follows a run, that run's frozen recipe with its `[environment]` lock. Saving writes the
shown text to the path given, without changing which file the draft belongs to. Merging loads the
base model, so `merge_and_export` runs in a thread worker.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, Checkbox, Input, Select, Static
from textual.worker import Worker

from tuner_tui.recipe import dumps_recipe
from tuner_tui.runs.layout import RunDir
from tuner_tui.screens.confirm import ConfirmModal
from tuner_tui.screens.step import NO_DRAFT, StepScreen

if TYPE_CHECKING:
    from tuner_tui.views.draft import Draft

DRAFT, RUN = "draft", "run"


def shown_path(path: Path) -> str:
    """A path as the user would type it: relative to the working folder when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


@dataclass
class RunExported(Message):
    """merge_and_export wrote `out` for `run`."""

    run: Path
    out: Path
    merged: bool


@dataclass
class RunNotExported(Message):
    """merge_and_export failed; `message` says why."""

    run: Path
    message: str


def save_refusal(path: Path, runs_dir: Path) -> str:
    """Why the recipe shown may not be saved to `path` at all ('' when it may)."""
    if path.is_dir():
        return f"{path} is a folder: give a file name, e.g. {path / 'recipe.toml'}."
    resolved = path.resolve()
    for parent in resolved.parents:
        if RunDir(parent).looks_like_a_run():
            return (
                f"{path} is inside the run directory {parent}: a run's files are its record and "
                "are never rewritten. Save the recipe elsewhere."
            )
    return ""


def save_questions(path: Path, text: str) -> list[str]:
    """What to ask before saving `text` to `path`: it replaces a different file, or it is not
    named .toml (`tuner run` reads any name, but a typo'd path is the likelier cause)."""
    questions = []
    try:
        if path.exists() and path.read_text(encoding="utf-8") != text:
            questions.append(f"{path} exists and holds something else, which would be replaced.")
    except (OSError, UnicodeDecodeError):
        questions.append(f"{path} exists and cannot be read as text; it would be replaced.")
    if path.suffix.lower() != ".toml":
        questions.append(f"{path.name} does not end in .toml.")
    return questions


class ExportScreen(StepScreen):
    STEP = "export"
    STEP_TITLE = "Export"
    JUMP_KEY = "6"
    SECTIONS = ("environment",)
    INTRO = (
        "Save the recipe as TOML, and export a finished run: its adapter (safetensors), "
        "optionally merged into the base model, and its evaluation report."
    )
    CSS_PATH = ["step.tcss", "export.tcss"]
    BINDINGS = [Binding("w", "save_copy", "Write TOML")]

    def __init__(self) -> None:
        super().__init__()
        self.toml_text = ""
        """The TOML shown (and saved by Save)."""
        self.exporting = False

    def compose_content(self) -> ComposeResult:
        yield Static(self.STEP_TITLE, classes="step-title")
        yield Static(self.INTRO, classes="step-intro", markup=False)
        yield Static("", id="draft-note", markup=False)
        with Vertical(id="export-form"):
            with Horizontal(classes="row"):
                yield Static("recipe", classes="label")
                yield Select[str](
                    [("Draft recipe", DRAFT)], id="source", value=DRAFT, allow_blank=False, compact=True
                )
            with Horizontal(classes="row"):
                yield Static("save to", classes="label")
                yield Input(
                    id="save-path",
                    placeholder="recipe.toml",
                    tooltip="Where Save writes the TOML shown below",
                )
                yield Button("Save", id="save", compact=True, variant="primary", tooltip="w")
            yield Static("", id="command")
            yield Static("Export the followed run", classes="section")
            yield Static("", id="adapter", markup=False)
            with Horizontal(classes="row", id="export-row"):
                yield Static("export to", classes="label")
                yield Input(id="export-path", tooltip="An empty or new folder")
                yield Checkbox(
                    "merge into the base model",
                    id="merge",
                    compact=True,
                    tooltip="Fold the adapter into the base weights: a standalone model",
                )
                yield Button("Export", id="export", compact=True)
            yield Static("", id="export-result")
            # Last: the TOML is long, and the actions above must stay in view.
            yield Static("", id="toml")
        yield Static("", id="problems")

    def on_mount(self) -> None:
        self.watch(self.app, "run_dir", self._run_dir_changed)
        # The adapter and the frozen recipe appear as the run goes: redraw on every phase.
        self.watch(self.app, "run_phase", self._run_phase_changed, init=False)

    def _run_phase_changed(self, phase: str | None) -> None:
        self._draw_run(self.tuner.run_dir)

    # --- drawing ---------------------------------------------------------------------------------

    def show_draft(self, draft: Draft | None) -> None:
        note = self.query_one("#draft-note", Static)
        note.display = draft is None
        note.update(NO_DRAFT)
        save_path = self.query_one("#save-path", Input)
        if draft is not None and not save_path.value:
            default = draft.path or Path(f"{draft.recipe.project.name or 'recipe'}.toml")
            save_path.value = shown_path(default)
        self.query_one("#problems", Static).update(self._problems_text(draft.problems) if draft else "")
        self._draw_recipe()

    def _run_dir_changed(self, run_dir: Path | None) -> None:
        if run_dir is not None:
            self.query_one("#export-path", Input).value = shown_path(Path(run_dir) / "export")
        self._draw_run(run_dir)

    def _draw_run(self, run_dir: Path | None) -> None:
        """What depends on the followed run: its recipe as a source, its adapter, the command."""
        source = self.query_one("#source", Select)
        options = [("Draft recipe", DRAFT)]
        if run_dir is not None and (Path(run_dir) / "recipe.toml").exists():
            options.append((f"Frozen recipe of run {Path(run_dir).name}", RUN))
        current = source.value
        if self.tuner.draft is None and len(options) > 1:
            current = RUN  # opened only to attach: the run's recipe is the one there is
        with self.prevent(Select.Changed):
            source.set_options(options)
            source.value = current if current in {v for _, v in options} else DRAFT
        self._draw_adapter()
        self._draw_recipe()

    @on(Select.Changed, "#source")
    def _source_changed(self) -> None:
        self._draw_recipe()

    def _recipe_text(self) -> tuple[str, str]:
        """(TOML, where it comes from) for the chosen source."""
        run_dir = self.tuner.run_dir
        if self.query_one("#source", Select).value == RUN and run_dir is not None:
            path = Path(run_dir) / "recipe.toml"
            try:
                return path.read_text(encoding="utf-8"), f"frozen recipe of {Path(run_dir).name}"
            except OSError as error:
                return "", f"{path} could not be read: {error}"
        draft = self.tuner.draft
        if draft is None:
            return "", ""
        return dumps_recipe(draft.recipe, draft.document), "draft recipe"

    def _draw_recipe(self) -> None:
        # Here, not at module scope: rich.syntax pulls in pygments, which start-up does not need.
        from rich.syntax import Syntax

        self.toml_text, origin = self._recipe_text()
        toml = self.query_one("#toml", Static)
        toml.update(
            Syntax(self.toml_text, "toml", theme="ansi_dark", word_wrap=True) if self.toml_text else origin
        )
        self._draw_command()

    def _draw_command(self) -> None:
        path = self.query_one("#save-path", Input).value.strip()
        run_dir = self.tuner.run_dir
        frozen = Path(run_dir) / "recipe.toml" if run_dir is not None else None
        if not path and frozen is not None and frozen.exists():
            path = shown_path(frozen)  # no draft to save: the run's own recipe runs as it is
        text = Text()
        if not path:
            text.append("Run it headless: ", "dim").append("save the recipe first, then tuner run FILE")
            self.query_one("#command", Static).update(text)
            return
        text.append("Run it headless: ", "dim").append(f"tuner run {path}", "bold")
        draft = self.tuner.draft
        if draft is not None and draft.problems and self.query_one("#source", Select).value == DRAFT:
            text.append(f"\n(the draft has {len(draft.problems)} problem(s) to fix first)", "yellow")
        self.query_one("#command", Static).update(text)

    def _draw_adapter(self) -> None:
        run_dir = self.tuner.run_dir
        widget = self.query_one("#adapter", Static)
        enabled = run_dir is not None and (Path(run_dir) / "adapter").is_dir()
        if run_dir is None:
            widget.update("No run followed yet: start one from the Training step (press 4).")
        elif enabled:
            widget.update(f"adapter: {Path(run_dir) / 'adapter'}")
        else:
            widget.update(f"{Path(run_dir).name} has no adapter yet: it appears when training completes.")
        self.query_one("#export-row").display = enabled

    @on(Input.Changed, "#save-path")
    def _save_path_changed(self) -> None:
        self._draw_command()

    # --- actions ----------------------------------------------------------------------------------

    @on(Button.Pressed, "#save")
    @on(Input.Submitted, "#save-path")
    def action_save_copy(self) -> None:
        """Write the TOML shown to the path in the field, asking first before it replaces a
        different file or writes somewhere odd (not .toml); never into a run directory."""
        text = self.toml_text
        raw = self.query_one("#save-path", Input).value.strip()
        if not text or not raw:
            self.notify("Nothing to save, or no path given.", severity="warning")
            return
        path = Path(raw).expanduser()
        refused = save_refusal(path, Path(self.tuner.runs_dir))
        if refused:
            self.notify(refused, severity="error", timeout=10, markup=False)
            return
        questions = save_questions(path, text)
        if not questions:
            self._write_copy(path, text)
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._write_copy(path, text)
            else:
                self.notify(f"Not saved; {path} is as it was.", markup=False)

        self.app.push_screen(ConfirmModal(" ".join(questions) + " Save anyway?", confirm="Save"), answered)

    def _write_copy(self, path: Path, text: str) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, path)  # atomic: a crash never leaves half a recipe
        except OSError as error:
            self.notify(f"Could not save {path}: {error}", severity="error", markup=False)
            return
        self.notify(f"Saved {path}.", markup=False)

    @on(Button.Pressed, "#export")
    def _export_pressed(self) -> None:
        run_dir = self.tuner.run_dir
        raw = self.query_one("#export-path", Input).value.strip()
        if run_dir is None or not raw:
            self.notify("No run to export, or no folder given.", severity="warning")
            return
        if self.exporting:
            return
        merge = self.query_one("#merge", Checkbox).value
        self.exporting = True
        self.query_one("#export", Button).disabled = True
        result = self.query_one("#export-result", Static)
        result.set_class(False, "-error")
        result.update("Merging the adapter into the base model…" if merge else "Copying the adapter…")
        self._export(Path(run_dir), Path(raw).expanduser(), merge)

    @work(thread=True, exit_on_error=False, exclusive=True, group="export", description="Export a run")
    def _export(self, run_dir: Path, out: Path, merge: bool) -> None:
        # Merging imports torch/peft and loads the base model: never on the event loop.
        from tuner_tui.modeling.export import merge_and_export

        written = merge_and_export(run_dir, out, merge)
        self.post_message(RunExported(run_dir, Path(written), merge))

    def worker_failed(self, worker: Worker[Any], message: str) -> None:
        # A full disk, or a peft/transformers error merging: said under the button, the wizard lives.
        if worker.name == "_export":
            self._not_exported(RunNotExported(Path(), message))
        else:
            super().worker_failed(worker, message)

    @on(RunExported)
    def _exported(self, message: RunExported) -> None:
        self._export_ended()
        what = "Merged model" if message.merged else "Adapter"
        self.query_one("#export-result", Static).update(f"{what} written to {message.out}")
        self.notify(f"{what} written to {message.out}.", markup=False)

    @on(RunNotExported)
    def _not_exported(self, message: RunNotExported) -> None:
        self._export_ended()
        result = self.query_one("#export-result", Static)
        result.set_class(True, "-error")
        result.update(Text(f"Export failed: {message.message}"))

    def _export_ended(self) -> None:
        self.exporting = False
        self.query_one("#export", Button).disabled = False

    def rows(self, recipe: Any) -> list[tuple[str, Any]]:
        return []
