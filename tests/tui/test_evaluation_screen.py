"""The Evaluation step: a run's report (verdict, tables, samples, bias), report.md, re-evaluate.

Reports are written the way the engine writes them: `write_report` (report.json + report.md from
`render_markdown`) with the structure `evaluate_run` and `bias_report` produce. Re-evaluation is a
detached process (tests/runs/test_reevaluate.py runs the real one from a real wizard); here the
launcher's part is played by `fake_launcher` and the evaluation's by the test, which writes the
run's state and events as that process would.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from textual.pilot import Pilot
from textual.widgets import Button, DataTable, MarkdownViewer, Select, Static

from tests.tui.conftest import until, workers_done
from tuner_tui.app import TunerApp
from tuner_tui.evaluation.report import write_report
from tuner_tui.runs import launcher
from tuner_tui.runs.events import EventWriter
from tuner_tui.runs.layout import RunDir
from tuner_tui.runs.state import process_start_time, write_state
from tuner_tui.screens.evaluation import EvaluationScreen
from tuner_tui.widgets.markdown_modal import MarkdownModal

SIZE = (120, 40)
RUN_ID = "20250101-120000-support-intents-abc123"
LABELS = ["card_lost", "refund", "transfer"]


def report_for(run_id: str = RUN_ID, verdict: str = "fail") -> dict[str, Any]:
    """A classification report as evaluate_run writes it (demo-sized, two objectives)."""
    tuned = {"accuracy": 0.8667, "f1_macro": 0.7211, "loss": 0.4123}
    base = {"accuracy": 0.3333, "f1_macro": 0.2105, "loss": 1.0986}
    return {
        "run_id": run_id,
        "task": "sequence_classification",
        "split": "test",
        "examples": 30,
        "verdict": verdict,
        "objectives": [
            {
                "metric": "accuracy",
                "target": 0.8,
                "split": "test",
                "measured_on": "test",
                "direction": ">=",
                "base": 0.3333,
                "tuned": 0.8667,
                "passed": True,
                "margin": 0.0667,
            },
            {
                "metric": "f1_macro",
                "target": 0.75,
                "split": "test",
                "measured_on": "test",
                "direction": ">=",
                "base": 0.2105,
                "tuned": 0.7211,
                "passed": False,
                "margin": -0.0289,
            },
        ],  # fmt: skip
        "metrics": {
            "base": {
                **base,
                "confusion_matrix": {"labels": LABELS, "matrix": [[10, 0, 0], [10, 0, 0], [10, 0, 0]]},
            },
            "tuned": {
                **tuned,
                "confusion_matrix": {"labels": LABELS, "matrix": [[9, 1, 0], [0, 8, 2], [0, 1, 9]]},
            },
        },
        "samples": {
            "shown": [
                {
                    "input": "I lost my card at the station",
                    "reference": "card_lost",
                    "base": "card_lost",
                    "tuned": "card_lost",
                    "tuned_p_reference": 0.97,
                },
                {
                    "input": "Where is my money back for the jacket?",
                    "reference": "refund",
                    "base": "card_lost",
                    "tuned": "refund",
                    "tuned_p_reference": 0.88,
                },
            ],
            "best": [
                {
                    "input": "I lost my card at the station",
                    "reference": "card_lost",
                    "base": "card_lost",
                    "tuned": "card_lost",
                    "tuned_p_reference": 0.97,
                }
            ],
            "worst": [
                {
                    "input": "Send 50 euros to my landlord please",
                    "reference": "transfer",
                    "base": "card_lost",
                    "tuned": "refund",
                    "tuned_p_reference": 0.12,
                }
            ],
        },  # fmt: skip
        "bias": {
            "data_audit": {
                "status": "ok",
                "method": "Counts rows that mention each group's terms (word lists in lexicons.py).",
                "thresholds": {"skew_share_difference": 0.2, "skew_min_z": 2.0, "min_group_rows": 5},
                "families": {
                    "gender": {
                        "groups": {
                            "female": {
                                "rows": 12,
                                "share_of_rows": 0.06,
                                "top_terms": [["her", 8], ["she", 4]],
                            },
                            "male": {
                                "rows": 30,
                                "share_of_rows": 0.15,
                                "top_terms": [["his", 20], ["he", 10]],
                            },
                        }
                    },
                },  # fmt: skip
                "flags": [
                    {
                        "kind": "label_skew",
                        "family": "gender",
                        "group": "male",
                        "label": "refund",
                        "rows": 30,
                        "group_share": 0.6,
                        "overall_share": 0.33,
                        "difference": 0.27,
                    },
                ],  # fmt: skip
                "findings": [
                    "Rows mentioning male terms are labelled 'refund' 27 points more often than overall."
                ],
            },
            "counterfactual": {
                "status": "ok",
                "method": "Swaps group terms in test inputs and compares the predictions.",
                "kind": "classification",
                "pairs": {
                    "total": 40,
                    "by_source": {"test split": 40},
                    "examples": [{"family": "gender", "original": "his card", "swapped": "her card"}],
                },
                "base": {"flip_rate": 0.0},
                "tuned": {"flip_rate": 0.05},
                "comparison": {
                    "overall": {
                        "n": 40,
                        "base_flip_rate": 0.0,
                        "tuned_flip_rate": 0.05,
                        "base_mean_abs_shift": 0.01,
                        "tuned_mean_abs_shift": 0.04,
                        "gap_increased": True,
                    },
                    "by_group_pair": [
                        {
                            "family": "gender",
                            "group_x": "male",
                            "group_y": "female",
                            "n": 40,
                            "base_flip_rate": 0.0,
                            "tuned_flip_rate": 0.05,
                            "base_mean_abs_shift": 0.01,
                            "tuned_mean_abs_shift": 0.04,
                            "gap_increased": True,
                        },
                    ],
                },  # fmt: skip
                "thresholds": {"flip_rate": 0.02, "mean_abs_shift": 0.05},
                "findings": ["Tuning raised the flip rate on gender swaps from 0.0% to 5.0% (threshold 2%)."],
            },
            "paired": {"status": "not_requested"},
        },
    }


def make_run(
    root: Path, phase: str = "completed", *, report: dict[str, Any] | None = None, adapter: bool = True
) -> RunDir:
    """A run directory as a finished worker leaves it (a living pid when the run must look active)."""
    run = RunDir(root)
    run.create()
    demo = (Path(__file__).parents[2] / "assets" / "demo" / "recipe.toml").read_text(encoding="utf-8")
    run.recipe.write_text(
        demo + '\n[environment]\ntorch = "2.5.1"\ntransformers = "4.57.0"\npython = "3.11.9"\n',
        encoding="utf-8",
    )
    write_state(run.state, run_id=run.run_id, phase=phase, step=40, max_steps=40)
    if phase in ("training", "evaluating"):  # this (living) process plays the worker
        write_state(run.state, pid=os.getpid(), pid_started=process_start_time(os.getpid()))
    if adapter:
        run.adapter.mkdir()
        (run.adapter / "adapter_config.json").write_text('{"peft_type": "LORA"}', encoding="utf-8")
        (run.adapter / "adapter_model.safetensors").write_bytes(b"\0" * 64)
    if report is not None:
        write_report(report, run.report)
    return run


async def settle(pilot: Pilot) -> None:
    """Until the shown run's phase is known and the screen's other workers are done (the one that
    watches the phase runs as long as a run is shown)."""
    await pilot.pause()
    screen = pilot.app.screen
    if isinstance(screen, EvaluationScreen) and screen.run_root is not None:
        await until(pilot, lambda: screen.state.phase is not None, "the run's phase")
    await workers_done(pilot, skip_groups=("watch-run",))
    await pilot.pause()


def screen_of(app: TunerApp) -> EvaluationScreen:
    return cast(EvaluationScreen, app.screen)


def fake_launcher(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Path, str]]:
    """`start_evaluation` as far as the screen sees it: the phase `evaluating` and its status event
    written, a process handed the run. This (living) test process plays that process: the test
    ends the evaluation with `end_evaluation`. Returns the calls (run, by)."""
    calls: list[tuple[Path, str]] = []

    def start_evaluation(run_dir: Path, pairs: Path | None = None, by: str = "") -> Any:
        run = RunDir.open(run_dir)
        calls.append((Path(run_dir), by))
        offset = run.events.stat().st_size if run.events.exists() else 0
        write_state(
            run.state, phase="evaluating", pid=os.getpid(), pid_started=process_start_time(os.getpid())
        )
        with EventWriter(run.events) as events:
            events.emit("status", phase="evaluating", reevaluation=True, by=by)
        return launcher.StartedEvaluation(run, cast(Any, SimpleNamespace(pid=os.getpid())), offset)

    monkeypatch.setattr(launcher, "start_evaluation", start_evaluation)
    return calls


def end_evaluation(run: RunDir, phase: str, **fields: Any) -> None:
    """What the evaluation process writes last: its error (if any), state.json, the status event."""
    with EventWriter(run.events) as events:
        if phase == "failed":
            events.emit("error", kind="evaluation", message=fields.pop("message"), hint=fields.pop("hint"))
        write_state(run.state, phase=phase, **fields)
        events.emit("status", phase=phase, **fields)


def rows(app: TunerApp, selector: str) -> list[list[str]]:
    table = app.screen.query_one(selector, DataTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def text_of(app: TunerApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).content)


async def test_the_report_of_the_followed_run(tmp_path: Path) -> None:
    run = make_run(tmp_path / "runs" / RUN_ID, report=report_for())
    app = TunerApp(demo=True, runs_dir=tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        app.run_dir = run.root
        await pilot.press("5")
        await settle(pilot)
        assert "FAIL" in text_of(app, "#verdict") and "30 examples" in text_of(app, "#verdict")
        assert rows(app, "#objectives") == [
            ["accuracy", ">= 0.8000", "0.3333", "0.8667", "0.0667", "pass"],
            ["f1_macro", ">= 0.7500", "0.2105", "0.7211", "-0.0289", "FAIL"],
        ]
        assert ["accuracy", "0.3333", "0.8667"] in rows(app, "#metrics")
        assert rows(app, "#confusion")[1] == ["refund", "0", "8", "2"]
        samples = rows(app, "#samples")
        assert samples[1] == ["Where is my money back for the jacket?", "refund", "card_lost", "refund"]
        ranked = rows(app, "#best-worst")
        assert ranked[0][0] == "best" and ranked[-1][:2] == ["worst", "Send 50 euros to my landlord please"]
        bias = text_of(app, "#bias")
        assert "Data audit: 1 flag: label skew for gender/male" in bias and "gender/male 30" in bias
        assert "27 points more often" in bias
        assert "Counterfactual probes: Tuning widened the gap between groups: the flip rate rose from" in bias
        assert "rose from 0.0% to 5.0%" in bias
        assert "flip rate: base 0.0%, tuned 5.0%" in bias
        assert "Paired sentences: not requested" in bias
        # The run picker knows the run, by id and phase.
        assert app.screen.query_one("#run-select", Select).value == str(run.root)


async def test_no_report_yet_says_why(tmp_path: Path) -> None:
    training = make_run(tmp_path / "runs" / "20250102-000000-x-aaaaaa", phase="training", adapter=False)
    completed = make_run(tmp_path / "runs" / "20250103-000000-x-bbbbbb")
    app = TunerApp(demo=True, runs_dir=tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        await settle(pilot)
        assert "No run chosen" in text_of(app, "#report-status")
        app.run_dir = training.root
        await settle(pilot)
        assert "the run is still training" in text_of(app, "#report-status")
        assert not app.screen.query_one("#report").display
        # Picking another run from the list shows that one.
        app.screen.query_one("#run-select", Select).value = str(completed.root)
        await settle(pilot)
        assert "press e to evaluate it now" in text_of(app, "#report-status")


async def test_report_md_opens_inside_the_app(tmp_path: Path) -> None:
    run = make_run(tmp_path / "runs" / RUN_ID, report=report_for())
    app = TunerApp(demo=True, runs_dir=tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        app.run_dir = run.root
        await pilot.press("5")
        await settle(pilot)
        await pilot.press("o")
        await settle(pilot)
        assert isinstance(app.screen, MarkdownModal)
        assert app.screen.markdown == (run.report / "report.md").read_text(encoding="utf-8")
        assert "# Evaluation report" in app.screen.markdown
        assert app.screen.query_one(MarkdownViewer) is not None
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, MarkdownModal)


async def test_reevaluate_starts_a_detached_evaluation_and_shows_its_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = make_run(tmp_path / "runs" / RUN_ID, report=report_for(verdict="fail"))
    calls = fake_launcher(monkeypatch)
    app = TunerApp(demo=True, runs_dir=tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        app.run_dir = run.root
        await pilot.press("5")
        await settle(pilot)
        assert "FAIL" in text_of(app, "#verdict")
        await pilot.press("e")
        screen = screen_of(app)
        await until(pilot, lambda: "is evaluating now" in text_of(app, "#report-status"), "evaluating")
        assert calls == [(run.root, "tuner (TUI)")]
        assert screen.evaluating and screen.query_one("#reevaluate", Button).disabled
        assert app.run_phase == "evaluating"  # followed like a run: stop is offered
        assert "FAIL" in text_of(app, "#verdict")  # the previous report, until the new one
        await pilot.press("e")  # a second press while it runs starts nothing
        await pilot.pause()
        assert len(calls) == 1
        # The evaluation process writes its report and ends.
        report = report_for(verdict="pass")
        report["objectives"][1].update(tuned=0.79, passed=True, margin=0.04)
        write_report(report, run.report)
        end_evaluation(run, "completed", verdict="pass")
        await until(pilot, lambda: "PASS" in text_of(app, "#verdict"), "the new report")
        assert rows(app, "#objectives")[1][-1] == "pass"
        await until(pilot, lambda: app.run_phase == "completed", "the phase to end")
        assert not screen.evaluating and not screen.query_one("#reevaluate", Button).disabled
        assert not screen.query_one("#report-status", Static).display


async def test_a_failed_reevaluation_says_why_and_keeps_the_old_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = make_run(tmp_path / "runs" / RUN_ID, report=report_for(verdict="fail"))
    fake_launcher(monkeypatch)
    app = TunerApp(demo=True, runs_dir=tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        app.run_dir = run.root
        await pilot.press("5")
        await settle(pilot)
        await pilot.press("e")
        await until(pilot, lambda: screen_of(app).state.phase == "evaluating", "evaluating")
        end_evaluation(
            run, "failed", error_kind="evaluation", message="Training completed but evaluation failed: boom",
            hint="Fix the cause, then: tuner eval RUN",
        )  # fmt: skip
        await until(pilot, lambda: "Re-evaluation failed" in text_of(app, "#report-status"), "the failure")
        status = text_of(app, "#report-status")
        assert "evaluation failed: boom" in status and "Fix the cause, then: tuner eval RUN" in status
        assert "FAIL" in text_of(app, "#verdict")  # the report it had is still shown
        assert not screen_of(app).query_one("#reevaluate", Button).disabled


async def test_the_report_appears_when_the_followed_run_completes(tmp_path: Path) -> None:
    run = make_run(tmp_path / "runs" / RUN_ID, phase="evaluating")
    app = TunerApp(demo=True, runs_dir=tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        app.run_dir = run.root
        await pilot.press("5")
        await settle(pilot)
        assert "the run is still evaluating" in text_of(app, "#report-status")
        write_report(report_for(), run.report)  # the worker finishes
        end_evaluation(run, "completed", verdict="fail")
        await until(pilot, lambda: "FAIL" in text_of(app, "#verdict"), "the report")
        assert not screen_of(app).query_one("#report-status", Static).display


async def test_a_reevaluation_the_launcher_refuses_is_shown(tmp_path: Path) -> None:
    # The real launcher: a run without an adapter is refused before anything is written or started.
    run = make_run(tmp_path / "runs" / RUN_ID, adapter=False, phase="stopped")
    app = TunerApp(demo=True, runs_dir=tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        app.run_dir = run.root
        await pilot.press("5")
        await settle(pilot)
        assert "ended as 'stopped'" in text_of(app, "#report-status")
        await pilot.press("e")
        await settle(pilot)
        assert "Re-evaluation not started" in text_of(app, "#report-status")
        assert "no trained adapter" in text_of(app, "#report-status")
        assert not screen_of(app).evaluating
        assert not screen_of(app).query_one("#reevaluate", Button).disabled
    assert not (run.root / "events.jsonl").exists() or "evaluating" not in run.events.read_text()


@pytest.mark.parametrize("size", [(80, 24), (140, 40)])
def test_snapshot(snap_compare: Any, tmp_path: Path, size: tuple[int, int]) -> None:
    run = make_run(tmp_path / "runs" / RUN_ID, report=report_for())

    async def run_before(pilot: Pilot) -> None:
        pilot.app.run_dir = run.root
        await pilot.press("5")
        await settle(pilot)

    app = TunerApp(demo=True, runs_dir=tmp_path / "runs")
    assert snap_compare(app, terminal_size=size, run_before=run_before)
