"""What the deploy commands read from a run: its completed phase, frozen recipe, tokenizer (with
the chat template training recorded) and tuned model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuner_tui.errors import TunerError
from tuner_tui.recipe import Recipe, RecipeError, read_recipe
from tuner_tui.runs.layout import RunDir


class NotCompleted(TunerError):
    """The run has not finished training (or it failed): there is no tuned model to use."""


def completed_run(run_dir: Path | str, doing: str) -> tuple[RunDir, Recipe]:
    """The run directory and its frozen recipe, when the run completed and saved its adapter.

    Args:
        run_dir: The run directory.
        doing: What the caller is about to do, for the message ("serve", "chat with").

    Raises:
        NotCompleted: the run is still going, stopped, failed or crashed, or saved no adapter.
    """
    from tuner_tui.runs.launcher import adapter_saved
    from tuner_tui.runs.state import read_state

    run = RunDir.open(run_dir)
    phase = read_state(run.state).get("phase")
    if phase != "completed" or not adapter_saved(run):
        if phase in ("queued", "preparing", "training", "evaluating"):
            fix = f"wait for it to complete (follow it with `tuner attach {run.root}`)"
        elif phase == "completed":
            fix = (
                f"its adapter/ folder is missing or incomplete: train it again with `tuner run {run.recipe}`"
            )
        else:
            fix = f"resume it with `tuner run --resume {run.root}` and let it complete"
        raise NotCompleted(
            f"Cannot {doing} {run.root}: the run is '{phase}', not 'completed', so it has no finished "
            f"tuned model in {run.adapter}. {fix[0].upper() + fix[1:]}, then {doing} it."
        )
    recipe, problems, _ = read_recipe(run.recipe)
    if problems:
        raise RecipeError(str(run.recipe), problems)
    return run, recipe


def uses_chat_template(recipe: Recipe) -> bool:
    """The run trained on conversations rendered with a chat template (training records which
    one in the frozen recipe's [environment] chat_template); prompt/completion and plain-text
    runs trained on raw text, and are prompted with raw text."""
    return bool(recipe.environment.get("chat_template")) or recipe.model.task == "preference"


def load_run_tokenizer(run: RunDir, recipe: Recipe) -> Any:
    """The tokenizer the run saved beside its adapter: it carries exactly the chat template the
    run trained with. Runs whose adapter folder has no tokenizer get the recipe's, with the same
    fallback template training would have given it."""
    from tuner_tui.modeling.loading import ensure_chat_template, load_tokenizer

    if (run.adapter / "tokenizer_config.json").exists():
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(run.adapter))
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    else:
        tokenizer = load_tokenizer(recipe.model)
    if uses_chat_template(recipe):
        ensure_chat_template(tokenizer)
    return tokenizer


def render_prompt(tokenizer: Any, recipe: Recipe, messages: list[dict[str, str]]) -> str:
    """The text the model continues for `messages`: the run's chat template with the generation
    prompt, or (a run without one) the user's text as it is."""
    if uses_chat_template(recipe):
        return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    return "\n\n".join(m["content"] for m in messages if m["role"] != "system")
