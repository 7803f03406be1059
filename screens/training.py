"""Step 4, Training: the loop's settings, and the live dashboard of the run being followed.

Attach and live are one code path: whichever run the App follows (`TunerApp.run_dir`, from
`--attach` or from a run started here), this screen replays its `events.jsonl` from the first
byte and then tails it. A thread worker does all file I/O and posts batches of events; the
screen folds them into a `RunView` and redraws at most a few times a second, only what changed.
The viewer owns nothing: leaving or quitting never touches the run.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.message import Message
from textual.widgets import Button, Collapsible, ProgressBar, Sparkline, Static
from textual.worker import get_current_worker

from tuner_tui.errors import TunerError
from tuner_tui.recipe import Recipe, read_recipe
from tuner_tui.runs.layout import RunDir
from tuner_tui.runs.state import ACTIVE_PHASES, CRASHED, RunStatus
from tuner_tui.screens.messages import RunPhaseChanged
from tuner_tui.screens.step import NO_DRAFT, StepScreen
from tuner_tui.views.follow import RunFollower
from tuner_tui.views.run_view import EVAL_FIGURES, RunView, number
from tuner_tui.views.series import Trace
from tuner_tui.widgets.checkpoint_list import CheckpointList
from tuner_tui.widgets.gauges import Cell, GaugePanel, MetricCells, telemetry_gauges
from tuner_tui.widgets.log_tail import LogFollower, LogTail
from tuner_tui.widgets.recipe_form import RecipeForm

if TYPE_CHECKING:
    from tuner_tui.views.draft import Draft
    from tuner_tui.widgets.run_charts import MetricChart

TRAINING_LOOP = (
    "training.epochs",
    "training.max_steps",
    "training.learning_rate",
    "training.lr_scheduler",
    "training.warmup_ratio",
    "training.weight_decay",
    "training.max_grad_norm",
    "training.gradient_accumulation",
    "training.packing",
    "training.bucket_by_length",
    "training.completion_only_loss",
    "training.log_every_steps",
    "training.eval_every_steps",
    "training.save_every_steps",
    "training.keep_checkpoints",
    "training.device",
    "training.deterministic",
    "training.report_to",
)
"""The loop's settings, edited here; memory-shaping ones (batch, length, processes) are on Model."""

METRICS = ("loss", "lr", "grad norm", "speed", "tokens", "eval loss")
"""The labelled cells of the metric row, in reading order."""
LOOP_TITLE = "Training loop (saved in the recipe)"

POLL_S = 0.2
"""How often the follower looks for new events (a stat call when nothing changed)."""
STATE_POLL_S = 1.0
"""How often it re-reads state.json: the only way to learn that a worker died silently."""
REDRAW_S = 0.25
"""At most this often the dashboard redraws, however fast events arrive."""
BATCH = 2000
"""Most events in one message: replaying a long run must not block the event loop in one go."""
BATCHES_IN_FLIGHT = 4
"""Most batches posted and not yet folded: the follower reads ahead no further than this."""


# --- messages (posted by the follow worker, handled on the event loop) ------------------------


@dataclass
class EventsArrived(Message):
    """New complete events from the run's events.jsonl, in order (never coalesced)."""

    run: Path
    events: list[dict[str, Any]]
    credit: threading.Semaphore
    """Released once the batch is folded: the follower posts the next one then."""


@dataclass
class RunStateRead(Message):
    """state.json as a viewer sees it (phase `crashed` when the worker is gone)."""

    run: Path
    state: RunStatus


@dataclass
class LogLinesRead(Message):
    """New lines at the end of worker.log; `replace` when they are the whole tail."""

    run: Path
    lines: list[str]
    replace: bool


@dataclass
class RunUnreadable(Message):
    """The path to follow is not a run directory."""

    run: Path
    message: str


def _fmt(value: Any, spec: str, unit: str = "") -> str:
    figure = number(value)
    if figure is None:
        return "-"
    if not math.isfinite(figure):
        return str(value)
    return format(figure, spec) + unit


def _duration(seconds: Any) -> str:
    figure = number(seconds)
    if figure is None or not math.isfinite(figure):
        return "-"
    minutes, secs = divmod(int(figure), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


# --- the screen --------------------------------------------------------------------------------


class TrainingScreen(StepScreen):
    STEP = "training"
    STEP_TITLE = "Training"
    JUMP_KEY = "4"
    SECTIONS = ("training",)
    INTRO = (
        "Set the training loop, then launch it as a detached worker that writes a run "
        "directory; this screen replays and follows that run's events (loss, throughput, "
        "checkpoints), and can stop it or save a checkpoint."
    )
    CSS_PATH = ["step.tcss", "training.tcss"]
    # Charts side by side only where both stay readable.
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    BINDINGS = [
        Binding("r", "app.start_run", "Start"),
        Binding("s", "app.stop_run", "Stop"),
        Binding("v", "app.save_now", "Save now"),
        Binding("l", "toggle_log_noise", "Log noise"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.run_root: Path | None = None
        """The run directory being followed (None: no run)."""
        self.view = RunView()
        self.state = RunStatus()
        self.unreadable: str | None = None
        self._dirty: set[str] = set()
        self._shown_phase: str | None = None
        self.frozen: Recipe | None = None
        """The followed run's frozen recipe, shown read-only when there is no draft (attach only)."""

    def compose_content(self) -> ComposeResult:
        # plotext is imported here, not at module scope: the wizard starts without it.
        from tuner_tui.widgets.run_charts import MetricChart

        yield Static(self.STEP_TITLE, classes="step-title")
        yield Static(self.INTRO, classes="step-intro", markup=False)
        yield Static("No run yet.", id="run-name", markup=False)
        with Horizontal(id="run-bar"):
            yield Static("", id="phase")
            yield Button("Start run", id="start", variant="primary", compact=True, tooltip="r")
            yield Button("Stop", id="stop", variant="error", compact=True, tooltip="s")
            yield Button("Save now", id="save-now", compact=True, tooltip="v")
        yield Static("", id="start-problems")
        yield Static("", id="run-error")
        with Vertical(id="dashboard"):
            with Horizontal(id="progress-row"):
                yield ProgressBar(id="progress", show_eta=False)
                yield Static("", id="progress-text", markup=False)
            yield MetricCells(METRICS, id="metrics")
            with Horizontal(id="grad-row"):
                yield Static("grad norm", id="grad-label")
                yield Sparkline([], id="grad-spark")
            with Horizontal(id="charts"):
                yield MetricChart("loss", id="loss-chart")
                yield MetricChart("learning rate", id="lr-chart")
            yield Static("", id="stats")
            with Horizontal(id="panels"):
                with Vertical(id="telemetry-box"):
                    yield GaugePanel(id="telemetry")
                with Vertical(id="checkpoints-box"):
                    yield CheckpointList(id="checkpoints")
            yield LogTail(id="log")
        yield Static("", id="draft-note", markup=False)
        with Collapsible(title=LOOP_TITLE, id="loop-box", collapsed=False):
            yield RecipeForm(TRAINING_LOOP, id="loop")
            yield Static("", id="run-settings", markup=False)
        yield Static("", id="problems")

    def on_mount(self) -> None:
        # StepScreen.on_mount runs too (Textual dispatches on_mount along the MRO).
        self.query_one("#telemetry-box").border_title = "Hardware"
        self.query_one("#checkpoints-box").border_title = "Checkpoints"
        self.query_one("#log", LogTail).border_title = "worker.log"
        self._draw_following()
        self.watch(self.app, "run_dir", self._run_dir_changed)
        self.set_interval(REDRAW_S, self._redraw_if_dirty)
        self._dirty |= {"phase", "metric", "telemetry", "error"}
        self._redraw_if_dirty()

    # --- which run ---------------------------------------------------------------------------

    def _run_dir_changed(self, run_dir: Path | None) -> None:
        root = Path(run_dir) if run_dir is not None else None
        if root == self.run_root:
            return
        self.run_root = root
        self.view = RunView()
        self.state = RunStatus()
        self.unreadable = None
        self._shown_phase = None
        self.query_one(CheckpointList).clear()
        self.query_one(LogTail).clear()
        self.workers.cancel_group(self, "follow")
        if root is not None:
            self._follow(root)
        self._draw_following()
        self.show_draft(self.tuner.draft)
        self._dirty = {"metric", "phase", "telemetry", "error"}
        self._redraw_if_dirty()

    def _draw_following(self) -> None:
        """A followed run gets the screen: the intro gives way and the loop form folds away, so
        progress, figures and the loss chart are above the fold at 80x24; with no run, the loop
        form is what there is to do here."""
        following = self.run_root is not None
        self.set_class(following, "-following")
        self.refresh_bindings()
        self.query_one(".step-intro").display = not following
        box = self.query_one("#loop-box", Collapsible)
        if box.collapsed != following:
            # Not `box.collapsed = ...`: its watcher scrolls the box into view, away from the run.
            box.set_reactive(Collapsible.collapsed, following)
            box._update_collapsed(following)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "toggle_log_noise":
            return self.run_root is not None  # no run, no log: not in the footer
        return super().check_action(action, parameters)

    def action_toggle_log_noise(self) -> None:
        """Show every line of worker.log, or hide library noise again."""
        self.query_one(LogTail).toggle_noise()

    @work(
        thread=True, exit_on_error=False, exclusive=True, group="follow", description="Follow a run directory"
    )
    def _follow(self, root: Path) -> None:
        """Replay the run's events from the start, then tail them, its state and its log."""
        worker = get_current_worker()
        try:
            run = RunDir.open(root)
        except TunerError as error:
            self.post_message(RunUnreadable(root, str(error)))
            return
        follower = RunFollower(run)
        credit = threading.Semaphore(BATCHES_IN_FLIGHT)
        log = LogFollower(run.log)
        next_state_at = 0.0
        while not worker.is_cancelled:
            now = time.monotonic()
            if now >= next_state_at:
                next_state_at = now + STATE_POLL_S
                state = follower.changed_state()
                if state is not None:
                    self.post_message(RunStateRead(root, RunStatus.of(state)))
            # Each batch is posted only once the screen has room for it: a long history streams
            # through, never all in memory (or in the message queue) at once.
            for batch in follower.new_events(BATCH):
                while not credit.acquire(timeout=0.2):
                    if worker.is_cancelled:
                        return
                self.post_message(EventsArrived(root, batch, credit))
            update = log.poll()
            if update is not None:
                self.post_message(LogLinesRead(root, *update))
            time.sleep(POLL_S)

    @on(EventsArrived)
    def _events_arrived(self, message: EventsArrived) -> None:
        message.credit.release()
        if message.run != self.run_root:
            return  # from a follower that was replaced by a newer one
        self._dirty |= self.view.fold(message.events)
        if "checkpoint" in self._dirty:
            self.query_one(CheckpointList).add_events(message.events)
            self._dirty.discard("checkpoint")
        if self._dirty & {"phase", "error"}:
            # Rare, and the user acts on them: no reason to wait for the next redraw tick.
            self._redraw_if_dirty()

    @on(RunStateRead)
    def _state_read(self, message: RunStateRead) -> None:
        if message.run != self.run_root:
            return
        self.state = message.state
        self._dirty |= {"phase", "metric"}
        self._redraw_if_dirty()

    @on(LogLinesRead)
    def _log_read(self, message: LogLinesRead) -> None:
        if message.run == self.run_root:
            self.query_one(LogTail).show_lines(message.lines, message.replace)

    @on(RunUnreadable)
    def _unreadable(self, message: RunUnreadable) -> None:
        if message.run == self.run_root:
            self.unreadable = message.message
            self._dirty |= {"phase", "error"}
            self._redraw_if_dirty()

    # --- buttons (the keys are App actions, enabled by the App from RunPhaseChanged) -----------

    @on(Button.Pressed, "#start")
    async def _start_pressed(self) -> None:
        await self.app.run_action("start_run")

    @on(Button.Pressed, "#stop")
    async def _stop_pressed(self) -> None:
        await self.app.run_action("stop_run")

    @on(Button.Pressed, "#save-now")
    async def _save_pressed(self) -> None:
        await self.app.run_action("save_now")

    # --- drawing ----------------------------------------------------------------------------

    @property
    def phase(self) -> str | None:
        """The phase shown: the events' latest, unless state.json says the worker is gone."""
        if self.state.phase == CRASHED:
            return CRASHED
        return self.view.phase or self.state.phase

    @property
    def active(self) -> bool:
        return self.phase in ACTIVE_PHASES

    def _redraw_if_dirty(self) -> None:
        dirty, self._dirty = self._dirty, set()
        if not dirty:
            return
        if "phase" in dirty or "error" in dirty:
            self._draw_run_bar()
            self._draw_errors()
        if "metric" in dirty:
            self._draw_progress()
            self._draw_charts()
        if "telemetry" in dirty:
            telemetry = self.view.telemetry
            self.query_one(GaugePanel).set_gauges(telemetry_gauges(telemetry) if telemetry else [])

    def _draw_run_bar(self) -> None:
        root, phase = self.run_root, self.phase
        name = self.query_one("#run-name", Static)
        badge = self.query_one("#phase", Static)
        name.update("No run yet." if root is None else f"Run {root.name}")
        name.tooltip = None if root is None else str(root)
        badge.update(phase or "")
        badge.display = phase is not None
        badge.set_classes(f"-{phase}" if phase else "")
        badge.set_class(phase in ACTIVE_PHASES, "-active")
        self.query_one("#dashboard").display = root is not None and self.unreadable is None
        # Start is for when there is nothing running here; stop and save only act on a live run.
        self.query_one("#start", Button).display = not self.active
        for selector in ("#stop", "#save-now"):
            button = self.query_one(selector, Button)
            button.display = root is not None
            button.disabled = not self.active
        self._draw_start_problems()
        if phase != self._shown_phase and root is not None:
            self._shown_phase = phase
            self.post_message(RunPhaseChanged(root, phase))
        self.refresh_bindings()

    def _draw_start_problems(self) -> None:
        widget = self.query_one("#start-problems", Static)
        draft = self.tuner.draft
        if self.active or draft is None or not draft.problems:
            widget.update("")
            widget.display = False
            return
        count = f"{len(draft.problems)} problem" + ("s" if len(draft.problems) != 1 else "")
        lines = [Content.styled(f"Cannot start a run: the draft recipe has {count}:", "bold $text-warning")]
        lines.extend(Content(f"• {problem}") for problem in draft.problems)
        widget.update(Content("\n").join(lines))
        widget.display = True

    def show_draft(self, draft: Draft | None) -> None:
        box = self.query_one("#loop-box", Collapsible)
        form = self.query_one("#loop", RecipeForm)
        self.frozen = self._frozen_recipe() if draft is None else None
        form.disabled = draft is None
        if self.frozen is not None:
            # Opened only to attach: the run's own settings, frozen when it started, not editable.
            assert self.run_root is not None
            note = self.query_one("#draft-note", Static)
            note.update(
                f"No draft recipe: the settings below are the frozen recipe of run {self.run_root.name} "
                f"({self.run_root / 'recipe.toml'}), read-only. {NO_DRAFT}"
            )
            note.display = True
            box.display = True
            box.title = f"Training loop of run {self.run_root.name} (frozen recipe, read-only)"
            form.show(self.frozen)
            self.query_one("#run-settings", Static).update(self._run_settings(self.frozen))
            self.query_one("#problems", Static).update("")
        elif self.show_form(draft, "#loop-box"):
            assert draft is not None
            box.title = LOOP_TITLE
            form.show(draft.recipe, draft.problems)
            self.query_one("#run-settings", Static).update(self._run_settings(draft.recipe))
            shown = set(TRAINING_LOOP)
            self.query_one("#problems", Static).update(
                self._problems_text(tuple(p for p in draft.problems if p.path not in shown))
            )
        self._draw_start_problems()

    def _frozen_recipe(self) -> Recipe | None:
        """RUN/recipe.toml of the followed run, read leniently (None: no run, or not readable)."""
        if self.run_root is None:
            return None
        try:
            recipe, _, _ = read_recipe(self.run_root / "recipe.toml")
        except TunerError:  # RecipeError included: a run without a readable recipe shows none
            return None
        return recipe

    def _draw_errors(self) -> None:
        widget = self.query_one("#run-error", Static)
        parts: list[Text] = []
        if self.unreadable is not None:
            parts.append(Text(self.unreadable))
        for error in self.view.errors[-3:]:
            kind, message = error.get("kind", "error"), error.get("message", "")
            parts.append(Text.assemble((f"{kind}: ", "bold"), str(message)))
            if error.get("hint"):
                parts.append(Text.assemble(("hint: ", "bold"), str(error["hint"])))
        if self.phase == CRASHED and self.run_root is not None:
            parts.append(
                Text.assemble(
                    ("crashed: ", "bold"),
                    f"the worker (pid {self.state.pid}) is gone while the run was "
                    f"'{self.state.recorded_phase}'. The last lines of worker.log are below; "
                    f"continue from the last complete checkpoint with: tuner run --resume {self.run_root}",
                )
            )
        widget.update(Text("\n").join(parts))
        widget.display = bool(parts)

    def _draw_progress(self) -> None:
        view, metric = self.view, self.view.metric
        step = metric.get("step", self.state.step) or 0
        total = view.max_steps or self.state.max_steps
        self.query_one(ProgressBar).update(total=total or None, progress=step)
        words = [f"step {step}/{total}" if total else f"step {step}"]
        if "epoch" in metric:
            words.append(f"epoch {_fmt(metric.get('epoch'), '.2f')}")
        if self.active and metric.get("eta_s") is not None:
            words.append(f"ETA {_duration(metric.get('eta_s'))}")
        self.query_one("#progress-text", Static).update(" · ".join(words))

        loss = number(metric.get("loss"))
        loss_style = "bold red" if loss is not None and not math.isfinite(loss) else "bold"
        cells = [
            Cell("loss", _fmt(metric.get("loss"), ".4f"), loss_style),
            Cell("lr", _fmt(metric.get("lr"), ".2e")),
            Cell("grad norm", _fmt(metric.get("grad_norm"), ".3f")),
            Cell("speed", _fmt(metric.get("tokens_per_s"), ",.0f", " tokens/s")),
            Cell("tokens", _fmt(metric.get("tokens_seen"), ",.0f")),
        ]
        if len(view.eval_loss):
            cells.append(Cell("eval loss", _fmt(view.eval_loss.last, ".4f")))
        if "reward_margin" in metric:
            cells.append(Cell("reward margin", _fmt(metric.get("reward_margin"), ".3f")))
            cells.append(Cell("reward acc", _fmt(metric.get("reward_accuracy"), ".2f")))
        self.query_one(MetricCells).set_cells(cells)

        stats = Text()
        for model, result in view.final_evals.items():
            shown = ", ".join(f"{key} {_fmt(result[key], '.4f')}" for key in EVAL_FIGURES if key in result)
            stats.append("\n" if stats else "").append(f"{model} model: ", "dim").append(shown or "-")
        widget = self.query_one("#stats", Static)
        widget.update(stats)
        widget.display = bool(stats)

    def _draw_charts(self) -> None:
        view = self.view
        self.query_one("#grad-spark", Sparkline).data = view.grad_norm.plot_points()[1]
        loss_traces = [Trace("train", *view.loss.plot_points(), color="cyan")]
        if len(view.eval_loss):
            loss_traces.append(Trace("eval", *view.eval_loss.plot_points(), points=True, color="orange"))
        cast("MetricChart", self.query_one("#loss-chart")).show(loss_traces)
        second = cast("MetricChart", self.query_one("#lr-chart"))
        if len(view.reward_margin):  # a preference run: what it learns shows here, not the schedule
            second.show(
                [
                    Trace("margin", *view.reward_margin.plot_points(), color="green"),
                    Trace("accuracy", *view.reward_accuracy.plot_points(), color="magenta"),
                ],
                title="reward margin and accuracy",
            )
        else:
            second.show([Trace("lr", *view.lr.plot_points(), color="green")], title="learning rate")

    # --- the recipe's loop settings -------------------------------------------------------------

    def _run_settings(self, recipe: Recipe) -> str:
        """Where runs go, and the settings edited on the Model step that shape a step."""
        t = recipe.training
        lines = [
            f"Per step: batch_size {t.batch_size} x gradient_accumulation {t.gradient_accumulation} x "
            f"{t.world_size} process(es), sequences up to {t.max_length} tokens (batch, length and "
            "processes are set on the Model step, where the memory estimate follows them).",
            f"Runs are written under {self.tuner.runs_dir}.",
        ]
        if self.tuner.attach is not None:
            lines.append(f"Attached to {self.tuner.attach}.")
        return "\n".join(lines)
