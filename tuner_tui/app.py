"""The Textual app: owns the draft recipe and wires the wizard's step screens together.

Each step is a screen in its own mode (`MODES`), so switching steps keeps every screen's
state. Screens read `TunerApp.draft` and `TunerApp.step_status` (reactives they watch) and
report back with messages; they never talk to each other.

Nothing here imports torch, transformers, peft, datasets or evaluate: heavy work happens in the
worker process or lazily inside Textual workers.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.resources
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from textual import on, work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.message import Message
from textual.reactive import var
from textual.screen import Screen
from textual.widgets import Input, OptionList, TextArea

from tuner_tui.errors import EXIT_OK, TunerError
from tuner_tui.recipe import Recipe, dumps_recipe, make_paths_absolute, read_recipe, save_recipe
from tuner_tui.runs import control
from tuner_tui.runs.launcher import start_run
from tuner_tui.runs.layout import RunDir
from tuner_tui.runs.state import ACTIVE_PHASES
from tuner_tui.screens.confirm import ConfirmModal
from tuner_tui.screens.help import HelpScreen
from tuner_tui.screens.messages import DataInspected, DraftEdited, RunChosen, RunPhaseChanged
from tuner_tui.screens.steps import STEPS, step_of_problem
from tuner_tui.screens.welcome import WelcomeScreen
from tuner_tui.views.draft import DEMO_ORIGIN, Draft, demo_recipe, draft_problems
from tuner_tui.widgets.step_sidebar import SidebarStep, StepSidebar, StepStatus


def step_statuses(
    draft: Draft | None, run_phase: str | None = None, inspected: str | None = None
) -> dict[str, StepStatus]:
    """Each step's sidebar status, true to what is known:

    - a problem in a key the step edits: needs attention;
    - Data: ok only once the current path was inspected without error (`inspected`);
    - Training, Evaluation and Export: the followed run's phase, never a bare tick;
    - any other step with a draft and no problem: ok.
    """
    flagged = {step_of_problem(p.path) for p in draft.problems} if draft is not None else set()
    statuses = {}
    for step in STEPS:
        if not step.has_status:
            continue
        if draft is None and run_phase is None:
            status = StepStatus.NOT_STARTED
        elif step.key in flagged:
            status = StepStatus.NEEDS_ATTENTION
        elif step.key in ("training", "evaluation", "export"):
            status = _run_status(step.key, run_phase)
        elif draft is None:
            status = StepStatus.NOT_STARTED
        elif step.key == "data":
            status = StepStatus.OK if inspected == draft.recipe.data.path else StepStatus.UNCHECKED
        else:
            status = StepStatus.OK
        statuses[step.key] = status
    return statuses


def _run_status(step: str, phase: str | None) -> StepStatus:
    if phase is None or phase == "queued" and step != "training":
        return StepStatus.NOT_STARTED
    if phase == "completed":
        return StepStatus.FINISHED
    if phase in ACTIVE_PHASES:
        busy = step == "training" or (step == "evaluation" and phase == "evaluating")
        return StepStatus.RUNNING if busy else StepStatus.NOT_STARTED
    return StepStatus.FAILED if step == "training" else StepStatus.NOT_STARTED


@dataclass
class RunStarted(Message):
    """A run directory was created from the draft and its worker spawned."""

    run: Path
    other_nodes: str = ""  # for nnodes > 1: the command each other node must run


@dataclass
class RunNotStarted(Message):
    """Starting a run failed; `message` says why and what to do."""

    message: str


@dataclass
class ControlRequested(Message):
    """A control request file (stop, save-now) was written for the followed run."""

    name: str
    path: Path


class TunerApp(App[None]):
    """The fine-tuning wizard."""

    TITLE = "tuner"
    MODES = {step.key: step.factory() for step in STEPS}
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("t", "toggle_dark", "Theme"),
        Binding("ctrl+s", "save_recipe", "Save"),
        # While a text field has focus the digit keys type digits, so the step keys are hidden
        # from the footer and this one is shown: it leaves the field for the step list.
        # Priority bindings run in the App's own key order. A plain binding would run only once the
        # key had travelled through the focused field's queue, while the keys typed after it were
        # already routed to that same field: "name<Tab>domain" put the domain's first letters into
        # the name, and "<Esc>3" typed the 3 into the field it was meant to leave.
        Binding("escape", "leave_field", "Leave field", priority=True),
        Binding("tab", "focus_next", "Next field", show=False, priority=True),
        Binding("shift+tab", "focus_previous", "Previous field", show=False, priority=True),
        *(
            Binding(
                step.jump_key,
                f"goto('{step.key}')",
                "Steps",
                # One footer entry stands for all the jump keys; help lists each one.
                show=step.jump_key == "1",
                key_display="0-6" if step.jump_key == "1" else None,
                tooltip=f"Go to {step.title}",
            )
            for step in STEPS
        ),
    ]

    draft: var[Draft | None] = var(None, always_update=True)
    """The draft recipe; None until the user picks the demo, a file or blank."""
    step_status: var[dict[str, StepStatus]] = var(dict)
    """Status of each step, shown in the sidebar; replace the dict to update it."""
    run_dir: var[Path | None] = var(None)
    """The run directory the Training step follows: from `--attach`, or the last run started here."""
    run_phase: var[str | None] = var(None)
    """That run's phase as the Training step shows it; enables stop and save-now."""
    data_inspected: str | None = None
    """The data path the Data step last inspected without error (its status is ok only then)."""
    unsaved: bool = False
    """The draft has edits that are not in its file yet (they are autosaved beside it)."""

    def __init__(
        self,
        recipe_path: Path | None = None,
        *,
        demo: bool = False,
        runs_dir: Path = Path("runs"),
        attach: Path | None = None,
    ) -> None:
        super().__init__()
        self.recipe_path = recipe_path
        """Recipe to open at start-up."""
        self.demo = demo
        """Start from the built-in demo recipe."""
        self.runs_dir = runs_dir
        """Where new run directories are created."""
        self.attach = attach
        """A run directory to watch, from `--attach`."""
        self.set_reactive(
            TunerApp.step_status,
            {step.key: StepStatus.NOT_STARTED for step in STEPS if step.has_status},
        )

    # --- start-up ------------------------------------------------------------------------

    async def on_mount(self) -> None:
        start = "welcome"
        if self.demo:
            if self.load_demo():
                start = "objective"
        elif self.recipe_path is not None:
            if self.open_recipe(self.recipe_path):
                start = "objective"
        if self.attach is not None:
            self.run_dir = Path(self.attach)  # the Training step replays and follows it
            start = "training"
        await self.switch_mode(start)
        if start == "welcome" and self.recipe_path is not None and isinstance(self.screen, WelcomeScreen):
            self.screen.set_path(self.recipe_path)  # let the user fix the path and retry

    def sidebar_steps(self) -> list[SidebarStep]:
        """The sidebar's entries, in wizard order."""
        return [SidebarStep(s.key, s.title, s.jump_key, has_status=s.has_status) for s in STEPS]

    # --- the draft recipe ----------------------------------------------------------------

    def load_demo(self) -> bool:
        """Make the built-in demo recipe the draft; False (and a notification) if it fails."""
        resource = demo_recipe()
        if not resource.is_file():
            self.notify(
                "The built-in demo recipe is missing from this installation "
                "(tuner_tui/assets/demo/recipe.toml). Open a recipe file or start blank.",
                title="No demo",
                severity="error",
                markup=False,
            )
            return False
        with importlib.resources.as_file(resource) as path:
            return self._read_draft(path, origin=DEMO_ORIGIN, keep_path=False)

    def open_recipe(self, path: Path) -> bool:
        """Make the recipe at `path` the draft; False (and a notification) if it can't be read."""
        return self._read_draft(Path(path), origin=str(path), keep_path=True)

    def start_blank(self) -> None:
        """Make a recipe of defaults the draft; unsaved edits of the current one are kept (their
        autosave is moved aside when the blank draft would reuse its name), after a confirmation."""
        draft = self.draft
        if draft is None or not self.unsaved:
            self._start_blank()
            return
        keep = self.autosave_path(draft)

        def answered(start: bool | None) -> None:
            if start:
                self._keep_autosave(keep)
                self._start_blank()

        self.push_screen(
            ConfirmModal(
                f"The current draft has unsaved changes (autosaved in {keep}). Start a blank recipe? "
                "The autosave is kept.",
                confirm="Start blank",
            ),
            answered,
        )

    def _keep_autosave(self, path: Path) -> None:
        """A blank draft autosaves to one fixed name: move the old one aside instead of over it."""
        blank = Path(self.runs_dir) / "recipes" / "unsaved.draft.toml"
        if path == blank and path.exists():
            kept = path.with_name(f"unsaved-{time.strftime('%Y%m%d-%H%M%S')}.draft.toml")
            path.rename(kept)
            self.notify(f"The previous draft's autosave is kept as {kept}.", markup=False)

    def _start_blank(self) -> None:
        recipe = Recipe()
        self.unsaved = False
        self.draft = Draft(
            recipe, draft_problems(recipe, recipe.problems(), Path.cwd()), origin="blank recipe"
        )
        self.notify("Started a blank recipe; each step lists what it still needs.")

    def set_step_status(self, step: str, status: StepStatus) -> None:
        """Show `status` beside `step` in the sidebar."""
        self.step_status = {**self.step_status, step: status}

    def _read_draft(self, path: Path, *, origin: str, keep_path: bool) -> bool:
        try:
            recipe, problems, document = read_recipe(path)
        except TunerError as error:
            self.notify(str(error), title="Cannot open recipe", severity="error", timeout=10, markup=False)
            return False
        self.unsaved = False
        try:
            text = path.read_text(encoding="utf-8") if keep_path else None
        except OSError:
            text = None
        draft = Draft(recipe, (), origin, path if keep_path else None, document, text)
        problems = list(draft_problems(recipe, problems, draft.base_dir))
        self.draft = dataclasses.replace(draft, problems=tuple(problems))
        if problems:
            count = f"{len(problems)} problem" + ("s" if len(problems) != 1 else "")
            self.notify(
                f"Opened {origin} with {count}; each step lists its own.",
                severity="warning",
                markup=False,
            )
        else:
            self.notify(f"Opened {origin}.", markup=False)
        return True

    def watch_draft(self, draft: Draft | None) -> None:
        self.sub_title = (draft.origin + (" (unsaved changes)" if self.unsaved else "")) if draft else ""
        self._refresh_statuses()

    def watch_run_phase(self, phase: str | None) -> None:
        self._refresh_statuses()

    def _refresh_statuses(self) -> None:
        self.step_status = step_statuses(self.draft, self.run_phase, self.data_inspected)

    @on(DataInspected)
    def _data_inspected(self, event: DataInspected) -> None:
        self.data_inspected = event.path if event.ok else None
        self._refresh_statuses()

    @on(DraftEdited)
    def _draft_edited(self, event: DraftEdited) -> None:
        draft = self.draft
        if draft is None:
            return
        self.unsaved = True
        self.draft = draft.edited(event.changes)
        self._autosave(self.draft)

    def autosave_path(self, draft: Draft) -> Path:
        """Where unsaved edits are kept: beside the recipe, or under the runs directory."""
        if draft.path is not None:
            return draft.path.with_name(f".{draft.path.stem}.draft.toml")
        # One fixed name: the project name changes as the user types it.
        return Path(self.runs_dir) / "recipes" / "unsaved.draft.toml"

    def _autosave(self, draft: Draft) -> None:
        path = self.autosave_path(draft)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            save_recipe(draft.recipe, path, copy.deepcopy(draft.document))
        except OSError as error:
            self.notify(f"Could not autosave the draft to {path}: {error}", severity="warning", markup=False)

    def action_save_recipe(self) -> None:
        """Save the draft to its file (keeping comments and order); a new draft asks for a path."""
        draft = self.draft
        if draft is None:
            self.notify("Nothing to save yet: pick the demo, a recipe or blank first.", severity="warning")
            return
        if draft.path is None:
            from tuner_tui.screens.save_as import SaveAsModal

            def chosen(path: Path | None) -> None:
                if path is not None:
                    self._save_to(draft, path)

            self.push_screen(
                SaveAsModal(Path.cwd() / f"{draft.recipe.project.name or 'recipe'}.toml"), chosen
            )
            return
        if draft.changed_on_disk():
            self._confirm_overwrite(draft, lambda: self._save_to(draft, draft.path))  # type: ignore[arg-type]
            return
        self._save_to(draft, draft.path)

    def _confirm_overwrite(self, draft: Draft, then: Callable[[], object]) -> None:
        """The recipe file changed outside the wizard: overwrite it only when the user says so."""

        def answered(overwrite: bool | None) -> None:
            if overwrite:
                then()
            else:
                self.notify(
                    f"Kept {draft.path} as it is on disk. Open it again from Welcome (0) to load that "
                    "version; the wizard's edits stay in the draft (and its autosave) until then.",
                    severity="warning",
                    timeout=10,
                    markup=False,
                )

        self.push_screen(
            ConfirmModal(
                f"{draft.path} changed on disk since the wizard read it (edited elsewhere?). Overwrite "
                "it with the wizard's draft? Those edits on disk would be lost.",
                confirm="Overwrite",
            ),
            answered,
        )

    def _save_to(self, draft: Draft, path: Path) -> None:
        try:
            save_recipe(draft.recipe, path, draft.document if path == draft.path else None)
        except OSError as error:
            self.notify(f"Could not save {path}: {error}", severity="error", markup=False)
            return
        self.autosave_path(draft).unlink(missing_ok=True)
        self.unsaved = False
        if path != draft.path:
            # Paths in the recipe were relative to where it came from; keep them pointing there.
            self.open_recipe(path)
        else:
            self.draft = dataclasses.replace(draft, file_text=path.read_text(encoding="utf-8"))
        self.notify(f"Saved {path}.", markup=False)

    async def action_quit(self) -> None:
        if not self.unsaved or self.draft is None:
            self.exit(return_code=EXIT_OK)
            return
        where = self.autosave_path(self.draft)

        def answered(quit_anyway: bool | None) -> None:
            if quit_anyway:
                self.exit(return_code=EXIT_OK)

        self.push_screen(
            ConfirmModal(
                f"The recipe has unsaved changes (a copy is autosaved in {where}). Quit anyway? "
                "Press ctrl+s first to save them.",
                confirm="Quit",
            ),
            answered,
        )

    # --- messages and actions ------------------------------------------------------------

    @on(WelcomeScreen.StartChosen)
    def _start_chosen(self, event: WelcomeScreen.StartChosen) -> None:
        if event.source == "demo":
            started = self.load_demo()
        elif event.source == "file" and event.path is not None:
            started = self.open_recipe(event.path)
        else:
            self.start_blank()
            started = True
        if started:
            self.switch_mode("objective")

    @on(StepSidebar.StepChosen)
    def _step_chosen(self, event: StepSidebar.StepChosen) -> None:
        self.switch_mode(event.step)

    def action_goto(self, step: str) -> None:
        """Show the screen of `step`."""
        self.switch_mode(step)

    def action_help(self) -> None:
        """Open the list of keys that work on the current screen."""
        rows: list[tuple[str, str]] = []
        for active in self.screen.active_bindings.values():
            binding = active.binding
            description = binding.tooltip or binding.description
            # The app's own keys, and whatever the screen shows in its footer. Widget keys
            # (scrolling, cursor) are summarised by the help screen itself.
            if description and (active.node is self or binding.show):
                key = self.get_key_display(dataclasses.replace(binding, key_display=None))
                rows.append((key, description))
        self.push_screen(HelpScreen(rows))

    def _typing(self) -> bool:
        """A text field has focus: printable keys (digits included) go into it."""
        return isinstance(self.focused, (Input, TextArea))

    def action_leave_field(self) -> None:
        """Leave the text field for the step list, where the digit keys jump to steps again."""
        sidebar = self.screen.query(StepSidebar)
        if sidebar:
            sidebar.first().query_one(OptionList).focus()
        else:
            self.screen.set_focus(None)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Over a modal (help), step jumps would switch the mode underneath it.
        if action in ("goto", "help") and self.screen.is_modal:
            return False
        if action == "leave_field":
            return self._typing()
        if action in ("goto", "help", "toggle_dark", "quit") and self._typing():
            return False  # the key types into the field; the footer must not say otherwise
        # None shows the key greyed out: it exists, but the followed run is not in a state for it.
        if action in ("stop_run", "save_now"):
            return True if self.run_phase in ACTIVE_PHASES else None
        if action == "start_run":
            return None if self.run_phase in ACTIVE_PHASES else True
        return True

    # --- runs ----------------------------------------------------------------------------

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand(
            "Open recipe", "Open a recipe file (Welcome)", lambda: self.action_goto("welcome")
        )
        yield SystemCommand("Save recipe", "Save the draft recipe (ctrl+s)", self.action_save_recipe)
        yield SystemCommand(
            "Attach to run", "Pick a run to follow (Welcome lists them)", lambda: self.action_goto("welcome")
        )
        yield SystemCommand(
            "Open report", "The followed run's evaluation report", lambda: self.action_goto("evaluation")
        )
        yield SystemCommand("Start run", "Launch the draft recipe as a detached run", self.action_start_run)
        if self.run_phase in ACTIVE_PHASES:
            yield SystemCommand("Stop run", "Stop the followed run at its next step", self.action_stop_run)
            yield SystemCommand("Save now", "Save a checkpoint of the followed run", self.action_save_now)

    def action_start_run(self) -> None:
        """Save the draft recipe if needed and launch it as a detached worker run."""
        draft = self.draft
        if draft is None:
            self.notify("No recipe yet: press 0 to start from the demo, a file or blank.", severity="warning")
            return
        if draft.problems:
            # The Training step lists them all under its Start button.
            count = f"{len(draft.problems)} problem" + ("s" if len(draft.problems) != 1 else "")
            self.notify(f"Not started: the draft recipe has {count}.", severity="warning", markup=False)
            self.switch_mode("training")
            return
        if self.run_phase in ACTIVE_PHASES:
            self.notify("A run is already going here; stop it first, or start one with `tuner run`.")
            return
        if draft.changed_on_disk():
            # Starting saves the draft into its file: never over edits made there meanwhile.
            self._confirm_overwrite(draft, lambda: self._ask_to_start(draft))
            return
        self._ask_to_start(draft)

    def _ask_to_start(self, draft: Draft) -> None:
        t = draft.recipe.training
        length = f"{t.max_steps} steps" if t.max_steps else f"{t.epochs:g} epoch(s)"
        where = f"{t.world_size} processes" if t.world_size > 1 else f"device {t.device}"

        def answered(start: bool | None) -> None:
            if start:
                self._launch(draft)

        self.push_screen(
            ConfirmModal(
                f"Start training {draft.recipe.project.name}: {length}, {draft.recipe.method.type} on "
                f"{draft.recipe.model.name_or_path or '?'}, {where}? It runs detached under "
                f"{self.runs_dir}; quitting tuner leaves it running.",
                confirm="Start run",
            ),
            answered,
        )

    @work(thread=True, exclusive=True, group="start-run", description="Start a run")
    def _launch(self, draft: Draft) -> None:
        try:
            recipe_path = self._recipe_file(draft)
            run = start_run(recipe_path, self.runs_dir)
        except (TunerError, OSError) as error:
            self.post_message(RunNotStarted(str(error)))
            return
        t = draft.recipe.training
        other_nodes = (
            f"tuner run {recipe_path} --runs-dir {self.runs_dir} --nnodes {t.nnodes} --node-rank K "
            f"--master-addr {t.master_addr} --master-port {t.master_port}"
            if t.nnodes > 1
            else ""
        )
        self.post_message(RunStarted(run.root, other_nodes))

    def _recipe_file(self, draft: Draft) -> Path:
        """The draft as a file start_run can read: its own file, saved if the draft differs from
        it; otherwise a copy under the runs directory (the demo is never overwritten)."""
        if draft.path is not None:
            text = dumps_recipe(draft.recipe, draft.document)
            try:
                unchanged = draft.path.read_text(encoding="utf-8") == text
            except OSError:
                unchanged = False
            if not unchanged:
                save_recipe(draft.recipe, draft.path, draft.document)
            return draft.path
        # Local paths in the draft are relative to where it came from; the copy lives elsewhere.
        recipe = copy.deepcopy(draft.recipe)
        make_paths_absolute(recipe, draft.base_dir)
        folder = Path(self.runs_dir) / "recipes"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{recipe.project.name or 'recipe'}-{recipe.hash()[:6]}.toml"
        save_recipe(recipe, path, draft.document)
        return path

    @on(RunStarted)
    def _run_started(self, event: RunStarted) -> None:
        draft = self.draft
        if draft is not None and draft.path is not None and draft.path.exists():
            # Starting saved the draft into its file: that is what the file holds now.
            self.draft = dataclasses.replace(draft, file_text=draft.path.read_text(encoding="utf-8"))
        self.run_dir = event.run
        self.run_phase = "queued"
        self.notify(f"Started {event.run.name}; quitting tuner leaves it running.", markup=False)
        if event.other_nodes:
            self.notify(
                f"This machine is node 0; training begins when every other node K runs: {event.other_nodes}",
                title="Waiting for the other nodes",
                timeout=30,
                markup=False,
            )
        self.switch_mode("training")

    @on(RunNotStarted)
    def _run_not_started(self, event: RunNotStarted) -> None:
        self.notify(event.message, title="Run not started", severity="error", timeout=10, markup=False)

    @on(RunChosen)
    def _run_chosen(self, event: RunChosen) -> None:
        self.run_dir = event.run
        self.switch_mode("training")

    @on(RunPhaseChanged)
    def _run_phase_changed(self, event: RunPhaseChanged) -> None:
        if event.run == self.run_dir:
            self.run_phase = event.phase
            self.refresh_bindings()

    def action_stop_run(self) -> None:
        """Ask the followed run to stop (after a confirmation); it saves a checkpoint first."""
        if self.run_dir is None or self.run_phase not in ACTIVE_PHASES:
            self.notify("No active run to stop.", severity="warning")
            return
        run = RunDir(self.run_dir)

        def answered(stop: bool | None) -> None:
            if stop:
                self._request(run, "stop")

        self.push_screen(
            ConfirmModal(
                f"Stop {run.run_id}? The worker saves a checkpoint at its next step and ends; "
                f"`tuner run --resume {run.root}` continues it later.",
                confirm="Stop run",
            ),
            answered,
        )

    def action_save_now(self) -> None:
        """Ask the followed run to save a checkpoint at its next step."""
        if self.run_dir is None or self.run_phase not in ACTIVE_PHASES:
            self.notify("No active run to save.", severity="warning")
            return
        self._request(RunDir(self.run_dir), "save-now")

    @work(thread=True, group="control", description="Write a control request")
    def _request(self, run: RunDir, name: str) -> None:
        try:
            path = control.request(run.control, name, by="tuner (TUI)")
        except OSError as error:
            self.post_message(RunNotStarted(f"Could not write the {name} request: {error}"))
            return
        self.post_message(ControlRequested(name, path))

    @on(ControlRequested)
    def _control_requested(self, event: ControlRequested) -> None:
        what = "Stop requested" if event.name == "stop" else "Save requested"
        self.notify(f"{what}: the worker acts at its next step.", markup=False)


def run_app(
    recipe_path: Path | None = None,
    *,
    demo: bool = False,
    runs_dir: Path = Path("runs"),
    attach: Path | None = None,
) -> int:
    """Run the wizard until the user quits; return the process exit code."""
    app = TunerApp(recipe_path, demo=demo, runs_dir=runs_dir, attach=attach)
    app.run()
    return app.return_code or EXIT_OK
