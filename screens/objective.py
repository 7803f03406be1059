"""Step 1, Objective: what the project is and which measurable targets it must reach.

Every field edits the App's draft through `DraftEdited`; this screen only mirrors the draft back
into its widgets. Widgets post a change only when their value differs from the draft, so redrawing
from the draft never echoes an edit back, and a value the user is typing is never overwritten.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.widgets import Button, Input, Label, Select, Static

from tuner_tui.recipe import METRIC_TASKS, SPLITS, TASKS, Objective, Problem, field_help
from tuner_tui.screens.step import StepScreen
from tuner_tui.widgets.recipe_form import RecipeForm

if TYPE_CHECKING:
    from tuner_tui.views.draft import Draft

PROJECT_FIELDS = ("project.name", "project.domain", "project.description", "project.seed")
TASK_LABELS = {
    "causal_lm": "causal_lm: generate text",
    "sequence_classification": "sequence_classification: pick a label",
    "preference": "preference: prefer the better answer (DPO and friends)",
}


def objective_help(key: str) -> str:
    """Help of an [[objectives]] key; `field_help` covers sections, objectives are a list of them."""
    for f in dataclasses.fields(Objective):
        if f.name == key:
            return str(f.metadata.get("help", ""))
    raise KeyError(f"objectives.{key}")


def metric_options(task: str, current: str | None = None) -> list[tuple[str, str]]:
    """The metrics that fit `task`; a current metric that does not fit stays listed (marked), so
    the row can show it next to its problem until the user picks another."""
    options = [(metric, metric) for metric, fits in METRIC_TASKS.items() if fits == task]
    if current and all(value != current for _, value in options):
        options.insert(0, (f"{current} (wrong task)", current))
    return options


def parse_target(text: str) -> float | None:
    """The target as a number, or None when the text is not one."""
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if value == value and abs(value) != float("inf") else None  # no nan/inf


def problems_at(problems: tuple[Problem, ...], *prefixes: str) -> list[Problem]:
    """Problems at these key paths or below them (`objectives[0]` covers `objectives[0].metric`)."""
    return [
        p for p in problems if any(p.path == x or p.path.startswith((x + ".", x + "[")) for x in prefixes)
    ]


def problems_content(problems: list[Problem]) -> Content:
    return Content("\n").join(Content.styled(f"⚠ {p}", "$text-warning") for p in problems)


class ObjectiveRow(Vertical):
    """One [[objectives]] entry: metric, target, split and a remove button; its problems below."""

    def __init__(self, index: int, objective: Objective, task: str) -> None:
        super().__init__(classes="objective-row")
        self.index = index
        """Position in the recipe's objectives list."""
        self.objective = objective
        self.metric_task = task

    def compose(self) -> ComposeResult:
        with Horizontal(classes="row-fields"):
            yield from self._compose_fields()
        yield Static("", classes="row-problems")

    def show_problems(self, problems: list[Problem], target_error: str | None = None) -> None:
        """The row's own problems (and a target that is not a number) under it."""
        box = self.query_one(".row-problems", Static)
        lines = [Content.styled(f"⚠ {target_error}", "$text-error")] if target_error else []
        lines += [Content.styled(f"⚠ {p}", "$text-warning") for p in problems]
        box.update(Content("\n").join(lines))
        box.display = bool(lines)
        self.set_class(bool(lines), "-problem")

    def _compose_fields(self) -> ComposeResult:
        objective = self.objective
        yield Label(f"{self.index + 1}.", classes="row-number")
        yield Select(
            metric_options(self.metric_task, objective.metric),
            value=objective.metric,
            allow_blank=False,
            compact=True,
            classes="metric",
            tooltip=objective_help("metric"),
        )
        yield Label(">=" if objective.higher_is_better else "<=", classes="sign")
        yield Input(
            f"{objective.target:g}",
            placeholder="target",
            compact=True,
            classes="target",
            tooltip=objective_help("target"),
        )
        yield Label("on", classes="on")
        yield Select(
            [(split, split) for split in SPLITS],
            value=objective.split,
            allow_blank=False,
            compact=True,
            classes="split",
            tooltip=objective_help("split"),
        )
        yield Button(
            "Remove", classes="remove", compact=True, variant="error", tooltip="Remove this objective"
        )


class ObjectiveScreen(StepScreen):
    STEP = "objective"
    STEP_TITLE = "Objective"
    JUMP_KEY = "1"
    EDITS = {"model.task": "model-task"}
    SECTIONS = ("schema_version", "project", "objectives")
    INTRO = (
        "Name the project and its domain, and set measurable objectives: a metric, a target "
        "and the split it is measured on. Evaluation checks the tuned model against them."
    )
    CSS_PATH = ["step.tcss", "objective.tcss"]

    def __init__(self) -> None:
        super().__init__()
        self._rows_key: tuple[int, str] | None = None
        """(objective count, task) the rows were built for: rebuild only when that changes."""
        self._row_problems: dict[int, list[Problem]] = {}
        """The draft's problems per objective row, by index."""

    def compose_content(self) -> ComposeResult:
        yield Static(self.STEP_TITLE, classes="step-title")
        yield Static(self.INTRO, classes="step-intro", markup=False)
        yield Static("", id="draft-note", markup=False)
        with Vertical(id="form"):
            yield RecipeForm(PROJECT_FIELDS, id="project-form")
            with Horizontal(classes="field"):
                yield Label("task", classes="field-label")
                draft = self.tuner.draft
                # Built with the draft's value: a Select without one picks its first option and
                # reports that as a change.
                yield Select(
                    [(TASK_LABELS.get(task, task), task) for task in TASKS],
                    value=draft.recipe.model.task
                    if draft and draft.recipe.model.task in TASKS
                    else Select.NULL,
                    id="model-task",
                    allow_blank=False,
                    compact=True,
                    tooltip=field_help("model", "task"),
                )
            yield Static("", id="project-problems", classes="inline-problems")
            yield Static("Objectives", classes="section-title")
            yield Vertical(id="objective-rows")
            yield Static("", id="objective-note", classes="inline-problems")
            yield Button("Add objective", id="add-objective", compact=True, variant="primary")
        yield Static("", id="problems")

    # --- draft -> widgets ----------------------------------------------------------------------

    def show_draft(self, draft: Draft | None) -> None:
        if not self.show_form(draft, "#form"):
            return
        assert draft is not None
        recipe = draft.recipe
        self.query_one("#project-form", RecipeForm).show(recipe, draft.problems)
        with self.prevent(Select.Changed):
            task = self.query_one("#model-task", Select)
            if recipe.model.task in TASKS and task.value != recipe.model.task:
                task.value = recipe.model.task
        project_problems = self.query_one("#project-problems", Static)
        project_problems.update(problems_content(problems_at(draft.problems, "model.task")))
        project_problems.display = bool(problems_at(draft.problems, "model.task"))
        self._show_objectives(draft)
        # Anything not shown beside a field (schema_version, a malformed objectives list).
        shown = problems_at(draft.problems, "project", "model.task", "objectives")
        rest = tuple(p for p in draft.problems if p not in shown or p.path == "objectives")
        self.query_one("#problems", Static).update(self._problems_text(rest))

    def _show_objectives(self, draft: Draft) -> None:
        recipe = draft.recipe
        rows = self.query_one("#objective-rows", Vertical)
        key = (len(recipe.objectives), recipe.model.task)
        if key != self._rows_key:
            # A new count or task changes which widgets (and metric choices) exist: rebuild.
            self._rows_key = key
            rows.remove_children()
            rows.mount_all([ObjectiveRow(i, o, recipe.model.task) for i, o in enumerate(recipe.objectives)])
        else:
            with self.prevent(Input.Changed, Select.Changed):
                for row in rows.query(ObjectiveRow):
                    objective = recipe.objectives[row.index]
                    row.objective = objective
                    metric = row.query_one(".metric", Select)
                    if metric.value != objective.metric:
                        metric.set_options(metric_options(recipe.model.task, objective.metric))
                        metric.value = objective.metric
                    split = row.query_one(".split", Select)
                    if split.value != objective.split:
                        split.value = objective.split
                    target = row.query_one(".target", Input)
                    if parse_target(target.value) != objective.target and not target.has_class("-invalid"):
                        target.value = f"{objective.target:g}"
                    row.query_one(".sign", Label).update(">=" if objective.higher_is_better else "<=")
        note = self.query_one("#objective-note", Static)
        general = [p for p in draft.problems if p.path == "objectives"]
        if not recipe.objectives:
            note.update(
                Content.styled("No objectives yet: add one so evaluation has a target.", "$text-muted")
            )
        else:
            note.update(problems_content(general))
        note.display = not recipe.objectives or bool(general)
        self._row_problems = {
            i: problems_at(draft.problems, f"objectives[{i}]") for i in range(len(recipe.objectives))
        }
        # Rows mounted just now compose after this call: show their problems once they exist.
        self.call_after_refresh(self._show_row_problems)

    def _show_row_problems(self) -> None:
        for row in self.query(ObjectiveRow):
            if row.is_mounted and row.query(".row-problems"):
                target = row.query_one(".target", Input)
                error = None
                if target.has_class("-invalid"):
                    error = f"target: '{target.value}' is not a number; write one, e.g. 0.8."
                row.show_problems(self._row_problems.get(row.index, []), error)

    # --- widgets -> DraftEdited ----------------------------------------------------------------

    def _edit(self, changes: dict[str, Any]) -> None:
        self.post_message(self._draft_edited(changes))

    @staticmethod
    def _draft_edited(changes: dict[str, Any]) -> Any:
        from tuner_tui.app import DraftEdited  # the app imports this module: import when used

        return DraftEdited(changes)

    @on(Select.Changed, "#model-task")
    def _task_changed(self, event: Select.Changed) -> None:
        draft = self.tuner.draft
        if draft is not None and event.value != Select.NULL and event.value != draft.recipe.model.task:
            self._edit({"model.task": event.value})

    def _objectives_with(self, index: int, **values: Any) -> list[dict[str, Any]] | None:
        draft = self.tuner.draft
        if draft is None or index >= len(draft.recipe.objectives):
            return None
        objectives = [dataclasses.asdict(o) for o in draft.recipe.objectives]
        if all(objectives[index][k] == v for k, v in values.items()):
            return None  # the draft says so already: this change is the redraw's echo
        objectives[index].update(values)
        return objectives

    @on(Select.Changed, "ObjectiveRow Select")
    def _objective_choice_changed(self, event: Select.Changed) -> None:
        event.stop()
        row = event.select.query_ancestor(ObjectiveRow)
        if event.value == Select.NULL:
            return
        key = "metric" if event.select.has_class("metric") else "split"
        objectives = self._objectives_with(row.index, **{key: event.value})
        if objectives is not None:
            self._edit({"objectives": objectives})

    @on(Input.Changed, "ObjectiveRow .target")
    def _target_changed(self, event: Input.Changed) -> None:
        event.stop()
        row = event.input.query_ancestor(ObjectiveRow)
        value = parse_target(event.value)
        # A target that is not a number never reaches the draft (it would silently fall back to
        # the default): the row says what is wrong and the draft keeps the last good value.
        event.input.set_class(value is None, "-invalid")
        self._show_row_problems()
        if value is None:
            return
        objectives = self._objectives_with(row.index, target=value)
        if objectives is not None:
            self._edit({"objectives": objectives})

    @on(Button.Pressed, "ObjectiveRow .remove")
    def _remove_objective(self, event: Button.Pressed) -> None:
        event.stop()
        draft = self.tuner.draft
        row = event.button.query_ancestor(ObjectiveRow)
        if draft is None:
            return
        objectives = [dataclasses.asdict(o) for i, o in enumerate(draft.recipe.objectives) if i != row.index]
        self._edit({"objectives": objectives})

    @on(Button.Pressed, "#add-objective")
    def _add_objective(self) -> None:
        draft = self.tuner.draft
        if draft is None:
            return
        task = draft.recipe.model.task
        used = {o.metric for o in draft.recipe.objectives}
        fitting = [m for m, t in METRIC_TASKS.items() if t == task]
        # The first fitting metric not used yet, so a new row does not duplicate an old one.
        metric = next((m for m in fitting if m not in used), fitting[0] if fitting else "accuracy")
        new = dataclasses.asdict(Objective(metric=metric))
        self._edit({"objectives": [*(dataclasses.asdict(o) for o in draft.recipe.objectives), new]})
