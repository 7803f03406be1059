"""The recipe: a TOML file that describes one fine-tuning job, end to end.

The schema is plain dataclasses. Each field's `metadata` carries its help text (shown as widget
tooltips and written as TOML comments on export) and its constraints (`choices`, `min`, `max`,
`gt`). Parsing never stops at the first problem: `parse_recipe` returns the recipe it could build
plus every problem found, each naming its key path, so `tuner validate` can print them all at once.

Round trips go through tomlkit: `save_recipe` updates the document a recipe was loaded from, so a
user's comments, key order and formatting survive load -> edit -> save, and one changed value is a
one-line diff.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import tomlkit
import tomlkit.exceptions
from tomlkit.items import Table

from tuner_tui.data.ops import STEP_PARAMS, UNAVAILABLE_OPS
from tuner_tui.errors import TunerError
from tuner_tui.paths import absolute_if_local

SCHEMA_VERSION = 1

TASKS = ("causal_lm", "sequence_classification", "preference")
PREFERENCE_LOSSES = ("dpo", "ipo", "orpo", "simpo", "kto")
DATA_FORMATS = (
    "auto",
    "alpaca",
    "sharegpt",
    "messages",
    "prompt_completion",
    "text",
    "classification",
    "preference",
    "kto",
)
PAIR_LOSSES = ("dpo", "ipo", "orpo", "simpo")  # need chosen and rejected answers of one prompt
REFERENCE_LOSSES = ("dpo", "ipo", "kto")  # hold the policy to a frozen reference (ORPO, SimPO: none)
PREFERENCE_LOSS_HELP = {
    "dpo": "DPO learns from chosen/rejected pairs while a frozen reference keeps the model near where "
    "it started; the default, and the choice when you have pairs and a model that already does the "
    "task (e.g. after an SFT run, see start_from).",
    "ipo": "IPO is DPO with a bounded loss that stops pushing a pair once its margin is reached; choose "
    "it when the pairs are clean and one-sided and DPO overfits (reward margins keep growing while "
    "held-out preference accuracy stalls).",
    "orpo": "ORPO adds an odds-ratio preference term to the ordinary supervised loss on the chosen "
    "answer, with no reference model; choose it to go from a base model to preferred answers in one "
    "run, with less memory than DPO.",
    "simpo": "SimPO compares length-normalised likelihoods of the two answers against a target margin "
    "(simpo_gamma), with no reference model; choose it when memory is tight or DPO drifts towards "
    "longer answers.",
    "kto": "KTO learns from single answers marked desirable or undesirable instead of pairs; choose it "
    "when your feedback is thumbs up or down rather than a choice between two answers.",
}
"""What each preference loss does and when to choose it, in one sentence (the Model step shows it)."""
PREFERENCE_KNOBS = {
    "dpo": ("beta", "start_from", "label_smoothing"),
    "ipo": ("beta", "start_from"),
    "orpo": ("beta", "start_from"),
    "simpo": ("beta", "start_from", "simpo_gamma"),
    "kto": ("beta", "start_from", "desirable_weight", "undesirable_weight"),
}
"""The [preference] keys each loss reads (the others are ignored by it)."""
DTYPES = ("auto", "float32", "bfloat16", "float16")
METHODS = (
    "lora",
    "dora",
    "qlora",
    "ia3",
    "loha",
    "lokr",
    "adalora",
    "prompt_tuning",
    "prefix_tuning",
    "full",
    "freeze",
)
LR_SCHEDULERS = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
)
OPTIMIZERS = (
    "adamw_torch",
    "adamw_torch_fused",
    "sgd",
    "adafactor",
    "adamw_8bit",
    "paged_adamw_8bit",
)
DEVICES = ("auto", "cpu", "cuda", "mps")
STRATEGIES = ("ddp", "fsdp", "deepspeed")
# Experiment trackers a run can log to ([training] report_to); each is an optional dependency
# (the `trackers` extra) and writes inside the run directory unless told otherwise.
REPORTERS = ("tensorboard", "mlflow", "trackio")
# Where the nodes meet, not what they compute: left out of the recipe hash, and a resumed run may
# meet somewhere else (a new Slurm job has a new head node).
RENDEZVOUS_KEYS = ("master_addr", "master_port")
LORA_INITS = ("default", "gaussian", "pissa", "olora", "loftq")
# Metrics whose smaller values are better; every other metric is "higher is better".
LOWER_IS_BETTER = frozenset({"perplexity", "loss", "eval_loss", "general_perplexity_change"})
# Metric -> the task it fits. evaluation/metrics.py computes each of these.
METRIC_TASKS = {
    "accuracy": "sequence_classification",
    "f1": "sequence_classification",
    "f1_macro": "sequence_classification",
    "precision_macro": "sequence_classification",
    "recall_macro": "sequence_classification",
    "exact_match": "causal_lm",
    "rouge1": "causal_lm",
    "rouge2": "causal_lm",
    "rouge_l": "causal_lm",
    "bleu": "causal_lm",
    "chrf": "causal_lm",
    "perplexity": "causal_lm",
    "loss": "causal_lm",
    # Forgetting: the tuned model's perplexity on [evaluation] general_data relative to the base
    # model's, as a fraction (0.10 = 10% worse). Needs general_data.
    "general_perplexity_change": "causal_lm",
    "preference_accuracy": "preference",
}
METRICS = tuple(METRIC_TASKS)
SPLITS = ("test", "validation")
CLEANING_OPS = (*STEP_PARAMS, *UNAVAILABLE_OPS)  # the engine's registry (stdlib only): one list
# Upper bounds that keep a typo from starting a run that cannot end or allocate: numpy/torch seeds
# are 32-bit; a billion epochs or a batch of 10**12 is never meant.
MAX_SEED = 2**32 - 1
MAX_EPOCHS = 1000.0
MAX_STEPS = 100_000_000
MAX_BATCH = 65_536
MAX_LENGTH = 1_048_576
MAX_NEW_TOKENS = 32_768
# Prompt-learning methods prepend virtual tokens: they cannot see packed (flattened) batches.
PROMPT_METHODS = ("prompt_tuning", "prefix_tuning")
BIAS_GROUPS = ("gender", "race_ethnicity", "religion", "age", "disability", "nationality")


def _f(default: Any = dataclasses.MISSING, help: str = "", **constraints: Any) -> Any:  # noqa: A002
    """A dataclass field with help text and constraints in its metadata."""
    metadata = {"help": help, **constraints}
    if isinstance(default, (list, dict)):
        value = default
        return field(default_factory=lambda: type(value)(value), metadata=metadata)
    return field(default=default, metadata=metadata)


# --- schema -----------------------------------------------------------------------------------


@dataclass
class ProjectConfig:
    name: str = _f("untitled", help="Short name of the project; used in run ids.")
    domain: str = _f("", help="The specialised domain, e.g. 'clinical notes' or 'legal contracts'.")
    description: str = _f("", help="What the tuned model should do, in a sentence or two.")
    seed: int = _f(
        42, help="Random seed for data splits, initialisation and data order.", min=0, max=MAX_SEED
    )


@dataclass
class Objective:
    metric: str = _f("accuracy", help="Metric to reach.", choices=METRICS)
    target: float = _f(0.0, help="Target value; perplexity/loss must be at most this, others at least.")
    split: str = _f("test", help="Split the objective is measured on.", choices=SPLITS)

    @property
    def higher_is_better(self) -> bool:
        return self.metric not in LOWER_IS_BETTER


@dataclass
class DataConfig:
    path: str = _f("", help="Data file, folder, save_to_disk folder or hub dataset id.", path=True)
    format: str = _f("auto", help="Data format; 'auto' detects it.", choices=DATA_FORMATS)
    fields: dict[str, str] = _f(
        {}, help="Role -> column mapping, e.g. instruction = 'question'. Empty: detected."
    )
    validation_fraction: float = _f(0.1, help="Share of rows held out for validation.", min=0.0, max=0.5)
    test_fraction: float = _f(0.1, help="Share of rows held out for the test split.", min=0.0, max=0.5)
    cleaning: list[dict[str, Any]] = _f([], help="Ordered cleaning steps, each {op = '...', ...parameters}.")

    def check(self, path: str) -> list[Problem]:
        problems = []
        if not self.path.strip():
            problems.append(
                Problem(
                    f"{path}.path",
                    "is missing: set it to a data file, folder or hub dataset id, "
                    "e.g. path = 'data/train.jsonl'.",
                )
            )
        if self.validation_fraction + self.test_fraction >= 0.9:
            problems.append(
                Problem(
                    f"{path}.test_fraction",
                    f"validation_fraction + test_fraction = "
                    f"{self.validation_fraction + self.test_fraction:g} leaves almost nothing to "
                    "train on: keep the sum below 0.9.",
                )
            )
        for i, step in enumerate(self.cleaning):
            op = step.get("op")
            where = f"{path}.cleaning[{i}]"
            if not isinstance(op, str):
                problems.append(Problem(f"{where}.op", f"is missing: choose one of {_alts(CLEANING_OPS)}."))
            elif op not in CLEANING_OPS:
                problems.append(Problem(f"{where}.op", _bad_choice(op, CLEANING_OPS)))
        return problems


@dataclass
class ModelConfig:
    name_or_path: str = _f("", help="Local model folder or hub model id.", path=True)
    revision: str = _f("", help="Hub revision (branch, tag or commit) to pin; empty = default branch.")
    task: str = _f("causal_lm", help="What the model learns to do.", choices=TASKS)
    dtype: str = _f("auto", help="Weight dtype for training.", choices=DTYPES)
    trust_remote_code: bool = _f(
        False, help="Run the model repository's own Python code (needs a pinned revision)."
    )
    chat_template: str = _f(
        "",
        help="Jinja chat template, or a named one ('chatml', 'alpaca'); empty = the tokenizer's own, "
        "else the 'alpaca' fallback.",
    )
    allow_pickle_weights: bool = _f(
        False,
        help="Also load .bin/.pt (pickle) weights when no safetensors exist. Pickle files can run "
        "code when loaded: only for sources you trust.",
    )

    def check(self, path: str) -> list[Problem]:
        problems = []
        if not self.name_or_path.strip():
            problems.append(
                Problem(
                    f"{path}.name_or_path",
                    "is missing: set it to a local model folder or a hub id, "
                    "e.g. name_or_path = 'HuggingFaceTB/SmolLM2-135M-Instruct'.",
                )
            )
        if self.trust_remote_code and not self.revision:
            problems.append(
                Problem(
                    f"{path}.trust_remote_code",
                    "is true but no revision is pinned: remote code runs on your machine, so set "
                    "model.revision to the commit you reviewed, or set trust_remote_code = false.",
                )
            )
        return problems


@dataclass
class MethodConfig:
    type: str = _f("lora", help="Fine-tuning method: a PEFT adapter, full tuning or freeze.", choices=METHODS)
    r: int = _f(16, help="Adapter rank (LoRA family).", min=1, max=4096)
    alpha: float = _f(32.0, help="LoRA scaling alpha; the update is scaled by alpha / r.", gt=0.0, max=1e6)
    dropout: float = _f(0.05, help="Dropout on the adapter input.", min=0.0, max=0.9)
    target_modules: str | list[str] = _f(
        "all-linear", help="Modules to adapt: 'all-linear' or a list of module names."
    )
    rslora: bool = _f(False, help="Rank-stabilised LoRA scaling (alpha / sqrt(r)).")
    init: str = _f("default", help="LoRA weight initialisation.", choices=LORA_INITS)
    num_virtual_tokens: int = _f(20, help="Virtual tokens for prompt/prefix tuning.", min=1, max=1024)
    trainable_layers: int = _f(2, help="For 'freeze': train only the last N layers.", min=1, max=10_000)


@dataclass
class PreferenceConfig:
    loss: str = _f(
        "dpo",
        help="Preference loss: dpo (pairs, against a frozen reference), ipo (dpo that does not "
        "overfit near-deterministic pairs), orpo (pairs, no reference, SFT and preference in one), "
        "simpo (pairs, no reference, length-normalised), kto (single answers marked good or bad).",
        choices=PREFERENCE_LOSSES,
    )
    beta: float = _f(
        0.1,
        help="How far the tuned policy may move from the reference (smaller: further).",
        gt=0.0,
        max=100.0,
    )
    start_from: str = _f(
        "",
        help="A run directory or adapter folder whose adapter is the starting policy (e.g. an SFT run); "
        "empty = the base model.",
    )
    label_smoothing: float = _f(
        0.0, help="dpo: the share of pairs assumed mislabelled (robust DPO), in [0, 0.5).", min=0.0, max=0.49
    )
    simpo_gamma: float = _f(0.5, help="simpo: the target reward margin.", min=0.0, max=100.0)
    desirable_weight: float = _f(1.0, help="kto: weight of the desirable examples' loss.", gt=0.0, max=100.0)
    undesirable_weight: float = _f(
        1.0, help="kto: weight of the undesirable examples' loss.", gt=0.0, max=100.0
    )


@dataclass
class TrainingConfig:
    epochs: float = _f(
        3.0, help="Passes over the training split (used when max_steps = 0).", gt=0.0, max=MAX_EPOCHS
    )
    max_steps: int = _f(0, help="Optimizer steps to run; 0 = use epochs.", min=0, max=MAX_STEPS)
    learning_rate: float = _f(2e-4, help="Peak learning rate.", gt=0.0, max=1.0)
    batch_size: int = _f(8, help="Examples per device per forward pass.", min=1, max=MAX_BATCH)
    gradient_accumulation: int = _f(1, help="Forward passes per optimizer step.", min=1, max=MAX_BATCH)
    max_length: int = _f(
        512, help="Longest sequence in tokens; longer examples are truncated.", min=8, max=MAX_LENGTH
    )
    packing: bool = _f(False, help="Pack several short examples into one sequence.")
    bucket_by_length: bool = _f(
        False, help="Batch examples of similar length together to reduce padding (instead of packing)."
    )
    lr_scheduler: str = _f("linear", help="Learning-rate schedule.", choices=LR_SCHEDULERS)
    warmup_ratio: float = _f(0.0, help="Share of steps spent warming up.", min=0.0, max=0.5)
    weight_decay: float = _f(0.0, help="AdamW weight decay.", min=0.0, max=1.0)
    max_grad_norm: float = _f(1.0, help="Gradient clipping norm; 0 disables clipping.", min=0.0, max=1e6)
    optimizer: str = _f("adamw_torch", help="Optimizer.", choices=OPTIMIZERS)
    gradient_checkpointing: bool = _f(False, help="Recompute activations to save memory.")
    deterministic: bool = _f(
        True,
        help="Deterministic kernels and seeded order, so a CPU re-run is bit-identical; false trades "
        "that for speed (about 10% on CPU).",
    )
    completion_only_loss: bool = _f(
        True, help="For instruction/chat data, learn only the responses, not the prompts."
    )
    log_every_steps: int = _f(1, help="Emit a metric event every N optimizer steps.", min=1, max=MAX_STEPS)
    eval_every_steps: int = _f(
        0, help="Evaluate on validation every N steps; 0 = each epoch.", min=0, max=MAX_STEPS
    )
    save_every_steps: int = _f(100, help="Save a checkpoint every N steps.", min=1, max=MAX_STEPS)
    keep_checkpoints: int = _f(2, help="How many newest checkpoints to keep.", min=1, max=1000)
    num_processes: int = _f(
        1,
        help="Training processes per node (one per GPU); more than 1 launches through torchrun.",
        min=1,
        max=1024,
    )
    nnodes: int = _f(
        1, help="Machines taking part; each runs `tuner run ... --node-rank K`.", min=1, max=4096
    )
    strategy: str = _f(
        "ddp",
        help="How processes share the work: ddp replicates the model, fsdp shards weights, "
        "gradients and optimizer state, deepspeed uses ZeRO stage 2 (needs the deepspeed package).",
        choices=STRATEGIES,
    )
    master_addr: str = _f(
        "", help="Address of node 0, where the nodes meet (multi-node only; also --master-addr)."
    )
    master_port: int = _f(
        29500, help="Port on node 0 for the rendezvous (also --master-port).", min=1, max=65535
    )
    device: str = _f("auto", help="Where to train: auto picks CUDA when present.", choices=DEVICES)
    report_to: list[str] = _f(
        [],
        help="Experiment trackers to log to (tensorboard, mlflow, trackio), inside the run directory; "
        "empty = none, nothing leaves the machine.",
    )

    @property
    def world_size(self) -> int:
        """All training processes over all nodes."""
        return self.num_processes * self.nnodes

    def check(self, path: str) -> list[Problem]:
        found = [
            Problem(f"{path}.report_to[{i}]", _bad_choice(name, REPORTERS))
            for i, name in enumerate(self.report_to)
            if name not in REPORTERS
        ]
        if self.nnodes > 1 and not self.master_addr:
            found.append(
                Problem(
                    f"{path}.master_addr",
                    f"is empty, but nnodes = {self.nnodes}: the nodes need node 0's address to meet. Set "
                    "master_addr = 'HOST' or pass --master-addr HOST to every node's `tuner run`.",
                )
            )
        if self.strategy != "ddp" and self.world_size == 1:
            found.append(
                Problem(
                    f"{path}.strategy",
                    f"is '{self.strategy}', which only matters with several processes (num_processes "
                    "and nnodes are 1): set strategy = 'ddp', or raise num_processes.",
                )
            )
        return found


@dataclass
class GenerationConfig:
    max_new_tokens: int = _f(128, help="Longest generated answer in evaluation.", min=1, max=MAX_NEW_TOKENS)
    do_sample: bool = _f(False, help="Sample instead of greedy decoding.")
    temperature: float = _f(1.0, help="Sampling temperature.", gt=0.0, max=100.0)
    top_p: float = _f(1.0, help="Nucleus sampling threshold.", gt=0.0, max=1.0)
    num_beams: int = _f(1, help="Beam search width; 1 = greedy.", min=1, max=64)


@dataclass
class EvaluationConfig:
    metrics: list[str] = _f([], help="Metrics to compute; empty = the defaults for the task.")
    max_samples: int = _f(200, help="Evaluate on at most this many examples.", min=1, max=10_000_000)
    compare_base: bool = _f(True, help="Also evaluate the base model, for a before/after comparison.")
    show_raw_samples: bool = _f(
        False,
        help="Quote samples in the report as written; by default personal data in them (emails, "
        "phone numbers, card numbers, keys, ...) is masked, as tuner inspect masks it.",
    )
    general_data: str = _f(
        "",
        help="General-domain held-out texts (causal LMs): the report gives base vs tuned perplexity on "
        "them, what tuning cost outside the domain; empty = not measured.",
        path=True,
    )
    generation: GenerationConfig = field(
        default_factory=GenerationConfig,
        metadata={"help": "Decoding settings for generation metrics."},
    )

    def check(self, path: str) -> list[Problem]:
        return [
            Problem(f"{path}.metrics[{i}]", _bad_choice(m, METRICS))
            for i, m in enumerate(self.metrics)
            if m not in METRICS
        ]


@dataclass
class BiasConfig:
    enabled: bool = _f(True, help="Write a bias report (data audit and counterfactual probes).")
    probes: str = _f(
        "builtin",
        help="'builtin' probes, or a path to a JSONL file of your own.",
        path=True,
        keyword="builtin",
    )
    groups: list[str] = _f([], help="Group families to audit; empty = all.")
    pairs_file: str = _f(
        "",
        help="CrowS-Pairs-format CSV (sent_more, sent_less, bias_type) to score; empty = none.",
        path=True,
    )

    def check(self, path: str) -> list[Problem]:
        return [
            Problem(f"{path}.groups[{i}]", _bad_choice(g, BIAS_GROUPS))
            for i, g in enumerate(self.groups)
            if g not in BIAS_GROUPS
        ]


@dataclass
class Recipe:
    schema_version: int = _f(SCHEMA_VERSION, help="Recipe schema version.")
    project: ProjectConfig = field(default_factory=ProjectConfig, metadata={"help": "The project."})
    objectives: list[Objective] = field(
        default_factory=list, metadata={"help": "Measurable targets for the tuned model."}
    )
    data: DataConfig = field(default_factory=DataConfig, metadata={"help": "Training data."})
    model: ModelConfig = field(default_factory=ModelConfig, metadata={"help": "Base model."})
    method: MethodConfig = field(default_factory=MethodConfig, metadata={"help": "Tuning method."})
    training: TrainingConfig = field(
        default_factory=TrainingConfig, metadata={"help": "Training loop settings."}
    )
    evaluation: EvaluationConfig = field(
        default_factory=EvaluationConfig, metadata={"help": "Evaluation settings."}
    )
    bias: BiasConfig = field(default_factory=BiasConfig, metadata={"help": "Bias report settings."})
    preference: PreferenceConfig = field(
        default_factory=PreferenceConfig,
        metadata={"help": "Preference tuning ([model] task = 'preference'): the loss and its knobs."},
    )
    environment: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "Written by tuner into a run's frozen recipe. Never hand-edited."},
    )

    def problems(self) -> list[Problem]:
        """Every semantic problem in this recipe (types were checked while parsing)."""
        found: list[Problem] = []
        _check_section(self, "", found)
        if self.schema_version != SCHEMA_VERSION:
            found.append(
                Problem(
                    "schema_version",
                    f"is {self.schema_version}, but this tuner reads schema {SCHEMA_VERSION}: "
                    f"set schema_version = {SCHEMA_VERSION}.",
                )
            )
        if self.model.task == "sequence_classification" and self.data.format not in (
            "auto",
            "classification",
        ):
            found.append(
                Problem(
                    "data.format",
                    f"is '{self.data.format}', but model.task is 'sequence_classification', which "
                    "needs text + label data: set data.format = 'classification' or 'auto'.",
                )
            )
        found += self._preference_problems()
        t = self.training
        if t.world_size > 1 and t.strategy != "ddp" and self.method.type in ("qlora", "adalora"):
            why = (
                "its 4-bit weights are placed whole on each rank's GPU by bitsandbytes"
                if self.method.type == "qlora"
                else "its rank allocation reads whole gradients, and sharding splits them"
            )
            found.append(
                Problem(
                    "training.strategy",
                    f"is '{t.strategy}', which does not work with [method] type = '{self.method.type}': "
                    f"{why}. Set strategy = 'ddp', or use type = 'lora'.",
                )
            )
        if t.packing and t.bucket_by_length:
            found.append(
                Problem(
                    "training.bucket_by_length",
                    "is true and so is packing; they are alternatives: packing removes padding by "
                    "joining examples into one row, bucketing reduces it by batching examples of similar "
                    "length. Set one of them to false.",
                )
            )
        if t.packing and self.method.type in PROMPT_METHODS:
            found.append(
                Problem(
                    "training.packing",
                    f"is true, which does not work with [method] type = '{self.method.type}': its virtual "
                    "tokens are prepended to each row, and a packed row holds several examples. Set "
                    "packing = false, or use type = 'lora'.",
                )
            )
        if t.gradient_checkpointing and self.method.type == "prefix_tuning":
            # The prefixes reach each layer as a key/value cache; checkpointed layers recompute without
            # it in transformers 5 (use_cache is forced off), so the prefix would silently vanish.
            found.append(
                Problem(
                    "training.gradient_checkpointing",
                    "is true, which cannot be combined with [method] type = 'prefix_tuning' (the prefix "
                    "would silently vanish in recomputed layers). Set gradient_checkpointing = false, or "
                    "use prompt_tuning or lora.",
                )
            )
        if self.method.type == "adalora" and 0 < t.max_steps < 3:
            found.append(
                Problem(
                    "training.max_steps",
                    f"is {t.max_steps}, but [method] type = 'adalora' reallocates ranks over the schedule "
                    "and needs at least 3 optimizer steps. Raise max_steps, or use type = 'lora'.",
                )
            )
        if not self.evaluation.general_data:
            for i, objective in enumerate(self.objectives):
                if objective.metric == "general_perplexity_change":
                    found.append(
                        Problem(
                            f"objectives[{i}].metric",
                            "is 'general_perplexity_change', which is measured on general-domain texts, "
                            "but [evaluation] general_data is empty: set general_data = 'PATH' (a JSONL or "
                            "text file of held-out general texts), or choose another metric.",
                        )
                    )
        task = self.model.task
        chosen = [(f"objectives[{i}].metric", o.metric) for i, o in enumerate(self.objectives)]
        chosen += [(f"evaluation.metrics[{i}]", m) for i, m in enumerate(self.evaluation.metrics)]
        for where, metric in chosen:
            if METRIC_TASKS.get(metric, task) != task:
                fitting = ", ".join(m for m, t in METRIC_TASKS.items() if t == task)
                found.append(
                    Problem(
                        where,
                        f"'{metric}' is a {METRIC_TASKS[metric]} metric and does not fit model.task = "
                        f"'{task}'. Metrics for {task}: {fitting}.",
                    )
                )
        return found

    def _preference_problems(self) -> list[Problem]:
        """What preference tuning needs of the data format and the rest of the recipe."""
        found: list[Problem] = []
        task, fmt, loss = self.model.task, self.data.format, self.preference.loss
        if task != "preference":
            if fmt in ("preference", "kto"):
                found.append(
                    Problem(
                        "model.task",
                        f"is '{task}', but data.format = '{fmt}' is preference data: set [model] task = "
                        "'preference' to tune on it.",
                    )
                )
            return found
        if fmt not in ("auto", "preference", "kto"):
            found.append(
                Problem(
                    "data.format",
                    f"is '{fmt}', but model.task = 'preference' needs pairs (prompt, chosen, rejected: "
                    "format 'preference') or answers marked good or bad (format 'kto'): set it, or 'auto'.",
                )
            )
        if fmt == "kto" and loss in PAIR_LOSSES:
            found.append(
                Problem(
                    "preference.loss",
                    f"is '{loss}', which compares a chosen and a rejected answer, but data.format = 'kto' "
                    "has single answers marked good or bad: set loss = 'kto'.",
                )
            )
        if self.method.type in PROMPT_METHODS:
            found.append(
                Problem(
                    "method.type",
                    f"is '{self.method.type}', which preference tuning does not support: use 'lora' (or "
                    "another adapter), 'full' or 'freeze'.",
                )
            )
        if self.training.packing:
            found.append(
                Problem(
                    "training.packing",
                    "is true, but preference pairs are scored as whole sequences: set packing = false.",
                )
            )
        return found

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every value (defaults included), ready for TOML or JSON."""
        return dataclasses.asdict(self)

    def hash(self) -> str:
        """Identity of the recipe: stable over formatting, comments, key order and the
        environment block (which the tool fills in)."""
        content = self.to_dict()
        content.pop("environment", None)
        if self.model.task != "preference":  # unused there: recipes hash as they did before it
            content.pop("preference", None)
        for key in RENDEZVOUS_KEYS:
            content["training"].pop(key, None)
        if self.training.deterministic:  # the default: recipes hash as they did before the key
            content["training"].pop("deterministic")
        # Where a run logs, not what it trains.
        content["training"].pop("report_to")
        if not self.evaluation.general_data:  # the default: recipes hash as they did before the key
            content["evaluation"].pop("general_data")
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def _path_fields(obj: Any, prefix: str = "") -> list[tuple[str, Any, dataclasses.Field[Any]]]:
    found = []
    for f in fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            found += _path_fields(value, f"{prefix}{f.name}.")
        elif f.metadata.get("path"):
            found.append((f"{prefix}{f.name}", obj, f))
    return found


PATH_KEYS = tuple(key for key, _, _ in _path_fields(Recipe()))
"""The keys whose values are local paths (relative to the recipe's folder) or hub ids."""


def make_paths_absolute(recipe: Recipe, base_dir: Path) -> None:
    """Every local path in `recipe` (the PATH_KEYS) made absolute against `base_dir`, in place, so
    a copy of the recipe saved elsewhere (a run's frozen recipe, a sweep trial) runs from anywhere.
    Hub ids, empty values and keywords ('builtin' probes) stay as written."""
    for _, section, f in _path_fields(recipe):
        value = getattr(section, f.name)
        if value and value != f.metadata.get("keyword"):
            setattr(section, f.name, absolute_if_local(value, base_dir))


# --- problems ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a recipe, at a key path like `training.learning_rate`."""

    path: str
    message: str
    line: int | None = None
    column: int | None = None
    machine: bool = False
    """About this machine, not the recipe (no CUDA GPU here for device = 'cuda'): the recipe may
    well be right for the GPU box it is meant for, so estimates still work out its memory."""

    def __str__(self) -> str:
        where = self.path
        if self.line is not None:
            where = f"{where} (line {self.line}, column {self.column})"
        return f"{where}: {self.message}"


class RecipeError(TunerError):
    """A recipe that cannot be used, with all of its problems."""

    def __init__(self, source: str, problems: list[Problem]):
        self.source = source
        self.problems = problems
        count = f"{len(problems)} problem" + ("s" if len(problems) != 1 else "")
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"The recipe {source} has {count}:\n{lines}")


def _alts(choices: tuple[str, ...] | list[str]) -> str:
    return ", ".join(f"'{c}'" for c in choices)


def _did_you_mean(word: str, candidates: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


def _bad_choice(value: Any, choices: tuple[str, ...]) -> str:
    hint = _did_you_mean(str(value), choices) if isinstance(value, str) else ""
    return f"'{value}' is not allowed.{hint} Choose one of {_alts(choices)}."


# --- parsing: TOML tables -> dataclasses, collecting every problem ----------------------------

_INVALID = object()

_TYPE_WORDS = {
    bool: "true or false (a TOML boolean, without quotes)",
    int: "a whole number",
    float: "a number",
    str: "a quoted string",
}


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"the string '{value}'"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "a table"
    return repr(value)


def _coerce(hint: Any, value: Any, path: str, problems: list[Problem]) -> Any:
    """Convert a TOML value to the annotated type, or record a problem and return _INVALID."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        # Only `str | list[str]` occurs in the schema: accept either arm.
        for arm in typing.get_args(hint):
            attempt: list[Problem] = []
            converted = _coerce(arm, value, path, attempt)
            if not attempt:
                return converted
        problems.append(Problem(path, f"expected a string or a list of strings, got {_describe(value)}."))
        return _INVALID
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, Mapping):
            problems.append(Problem(path, f"expected a table, got {_describe(value)}."))
            return _INVALID
        return _build(hint, value, path, problems)
    if origin is list:
        (item_type,) = typing.get_args(hint)
        if not isinstance(value, list):
            problems.append(Problem(path, f"expected a list, got {_describe(value)}."))
            return _INVALID
        items = [_coerce(item_type, v, f"{path}[{i}]", problems) for i, v in enumerate(value)]
        return _INVALID if any(i is _INVALID for i in items) else items
    if origin is dict:
        _, value_type = typing.get_args(hint)
        if not isinstance(value, Mapping):
            problems.append(Problem(path, f"expected a table, got {_describe(value)}."))
            return _INVALID
        if value_type is Any:
            return _plain(value)
        out = {str(k): _coerce(value_type, v, f"{path}.{k}", problems) for k, v in value.items()}
        return _INVALID if _INVALID in out.values() else out
    if hint is Any:
        return _plain(value)
    ok = (
        isinstance(value, bool)
        if hint is bool
        else (
            isinstance(value, (int, float)) and not isinstance(value, bool)
            if hint is float
            else isinstance(value, hint) and not isinstance(value, bool)
        )
    )
    if not ok:
        fix = ""
        if hint is bool and isinstance(value, str) and value.lower() in ("true", "false"):
            fix = f" Write {value.lower()} without quotes."
        elif hint in (int, float) and isinstance(value, str):
            fix = " Write the number without quotes."
        problems.append(Problem(path, f"expected {_TYPE_WORDS[hint]}, got {_describe(value)}.{fix}"))
        return _INVALID
    return float(value) if hint is float else _plain(value)


def _plain(value: Any) -> Any:
    """tomlkit items -> plain Python values."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if hasattr(value, "unwrap"):
        return value.unwrap()
    return value


def _build(cls: Any, table: Mapping[str, Any], path: str, problems: list[Problem]) -> Any:
    hints = typing.get_type_hints(cls)
    known = [f.name for f in fields(cls)]
    for key in table:
        if key not in known:
            where = f"{path}.{key}" if path else key
            problems.append(
                Problem(
                    where,
                    f"is not a known key.{_did_you_mean(key, known)} Known keys here: {', '.join(known)}.",
                )
            )
    kwargs = {}
    for f in fields(cls):
        if f.name in table:
            where = f"{path}.{f.name}" if path else f.name
            converted = _coerce(hints[f.name], table[f.name], where, problems)
            if converted is not _INVALID:
                kwargs[f.name] = converted
    return cls(**kwargs)


def _check_section(obj: Any, path: str, problems: list[Problem]) -> None:
    """Range/choice constraints from field metadata, then the section's own `check`."""
    for f in fields(obj):
        value = getattr(obj, f.name)
        where = f"{path}.{f.name}" if path else f.name
        if dataclasses.is_dataclass(value):
            _check_section(value, where, problems)
            continue
        if isinstance(value, list) and value and dataclasses.is_dataclass(value[0]):
            for i, item in enumerate(value):
                _check_section(item, f"{where}[{i}]", problems)
            continue
        meta = f.metadata
        if "choices" in meta and value not in meta["choices"]:
            problems.append(Problem(where, _bad_choice(value, meta["choices"])))
        if isinstance(value, float) and not math.isfinite(value):
            # nan compares false with every bound, so it would pass them all and then crash the
            # run (learning_rate) or silently switch a feature off (max_grad_norm, dropout).
            problems.append(
                Problem(where, f"is {value}, which is not a number a run can use: {_bounds(meta)}.")
            )
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if "min" in meta and value < meta["min"]:
                problems.append(
                    Problem(where, f"is {_number(value)}, must be at least {_number(meta['min'])}.")
                )
            if "gt" in meta and value <= meta["gt"]:
                problems.append(
                    Problem(where, f"is {_number(value)}, must be greater than {_number(meta['gt'])}.")
                )
            if "max" in meta and value > meta["max"]:
                problems.append(
                    Problem(where, f"is {_number(value)}, must be at most {_number(meta['max'])}.")
                )
    check = getattr(obj, "check", None)
    if check is not None:
        problems.extend(check(path))


def _number(value: float) -> str:
    """A value as the recipe wrote it: short (1e-05, 0.1) unless that would round it (a seed of
    4294967296 must not read 4.29497e+09, next to a limit that reads the same)."""
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


def _bounds(meta: Mapping[str, Any]) -> str:
    """'set it to a finite number from 0 to 0.5', from a field's constraints."""
    low = (
        f"from {_number(meta['min'])}"
        if "min" in meta
        else (f"above {_number(meta['gt'])}" if "gt" in meta else "")
    )
    if "max" in meta:
        high = f" to {_number(meta['max'])}" if "min" in meta else f" and at most {_number(meta['max'])}"
        low = low + high if low else f"at most {_number(meta['max'])}"
    return f"set it to a finite number {low}".rstrip()


def parse_recipe(data: Mapping[str, Any]) -> tuple[Recipe, list[Problem]]:
    """Build a Recipe from a TOML table, with every type and semantic problem found.

    Values with the wrong type are left at their defaults, so a draft with problems can still be
    shown and edited in the wizard.
    """
    problems: list[Problem] = []
    recipe = _build(Recipe, data, "", problems)
    problems.extend(recipe.problems())
    return recipe, problems


# --- files ------------------------------------------------------------------------------------


def parse_document(text: str, source: str) -> tomlkit.TOMLDocument:
    """Parse TOML text; a syntax error names the line and column."""
    try:
        return tomlkit.parse(text)
    except tomlkit.exceptions.TOMLKitError as exc:
        duplicate = re.match(r'Key "(.+?)" already exists', str(exc))
        if duplicate:  # KeyAlreadyPresent (inside a table) or a ParseError (top level, a table twice)
            key = duplicate[1]
            line = _second_definition(text, key) or getattr(exc, "line", None)
            problem = Problem(
                "TOML syntax",
                f"'{key}' is written twice in the same table. Keep one of the two (each key, and each "
                "[table], may appear once; [[objectives]] entries are the exception).",
                line=line,
                column=1 if line else None,
            )
        else:
            message = str(exc).split(" at line ")[0].rstrip(".")
            problem = Problem(
                "TOML syntax",
                f"{message}. Fix the TOML at that spot (strings need quotes, tables are "
                "written [name], lists [a, b]).",
                line=getattr(exc, "line", None),
                column=getattr(exc, "col", None),
            )
        raise RecipeError(source, [problem]) from None


def _second_definition(text: str, key: str) -> int | None:
    """The line (1-based) where `key = ...` (or the table [key]) is written for the second time."""
    seen_in_table: set[str] = set()
    tables: set[str] = set()
    pattern = re.compile(rf"""^\s*(["']?){re.escape(key)}\1\s*=""")
    for number, line in enumerate(text.splitlines(), start=1):
        header = re.match(r"\s*\[([^\[\]]+)\]\s*(#.*)?$", line)
        if header:
            name = header[1].strip()
            if name.split(".")[-1] == key and name in tables:
                return number
            tables.add(name)
        if line.lstrip().startswith("["):
            seen_in_table.clear()
        elif pattern.match(line):
            if key in seen_in_table:
                return number
            seen_in_table.add(key)
    return None


def read_recipe(path: Path) -> tuple[Recipe, list[Problem], tomlkit.TOMLDocument]:
    """Read a recipe file leniently: the recipe, its problems, and the document for saving."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TunerError(
            f"The recipe {path} does not exist. Check the path, or write one with the wizard: "
            "`tuner demo` opens a complete example recipe, and ctrl+s saves it where you choose."
        ) from None
    except (UnicodeDecodeError, IsADirectoryError, PermissionError) as exc:
        raise TunerError(f"The recipe {path} cannot be read as UTF-8 text: {exc}.") from None
    document = parse_document(text, str(path))
    recipe, problems = parse_recipe(document)
    return recipe, problems, document


def load_recipe(path: Path) -> Recipe:
    """Read and validate a recipe; raise RecipeError listing every problem."""
    recipe, problems, _ = read_recipe(path)
    if problems:
        raise RecipeError(str(path), problems)
    return recipe


def _section_defaults(cls: Any) -> dict[str, Any]:
    return dataclasses.asdict(cls())


def _update_table(table: Any, values: dict[str, Any], defaults: dict[str, Any], cls: Any) -> None:
    """Make `table` hold `values`, touching only keys whose values changed.

    Keys absent from the table are added only when their value differs from the default, so a
    loaded recipe keeps its shape; keys the schema no longer has are left alone (they were
    reported as problems when loading).
    """
    helps = {f.name: f.metadata.get("help", "") for f in fields(cls)} if cls else {}
    hints = typing.get_type_hints(cls) if cls else {}
    for key, value in values.items():
        nested_cls = hints.get(key)
        if dataclasses.is_dataclass(nested_cls):
            if key in table:
                _update_table(table[key], value, defaults.get(key, {}), nested_cls)
            elif value != defaults.get(key):
                sub = tomlkit.table()
                _update_table(sub, value, defaults.get(key, {}), nested_cls)
                table.add(key, sub)
            continue
        if key in table:
            if _comparable(table[key], hints.get(key)) != value:
                table[key] = _toml_value(value)
        elif value != defaults.get(key):
            if isinstance(table, Table) and helps.get(key):
                table.add(tomlkit.comment(helps[key]))
            table.add(key, _toml_value(value))


def _comparable(item: Any, hint: Any) -> Any:
    """A document value as `Recipe.to_dict` would hold it (list items with their defaults)."""
    value = _plain(item)
    args = typing.get_args(hint) if typing.get_origin(hint) is list else ()
    if args and dataclasses.is_dataclass(args[0]) and isinstance(value, list):
        return [dataclasses.asdict(_build(args[0], v, "", [])) if isinstance(v, dict) else v for v in value]
    return value


def _toml_value(value: Any) -> Any:
    """Lists of dicts become arrays of tables; other dicts inline tables (they stay put)."""
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        aot = tomlkit.aot()
        for item in value:
            aot.append(item)
        return aot
    if isinstance(value, dict):
        inline = tomlkit.inline_table()
        inline.update(value)
        return inline
    return value


def _new_table(cls: Any, values: dict[str, Any], help_text: str) -> Table:
    """A fresh table for a schema section, each key preceded by its help as a comment."""
    table = tomlkit.table()
    if help_text:
        table.comment(help_text)
    hints = typing.get_type_hints(cls)
    later = []
    for f in fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            later.append(f)  # sub-tables must follow the plain keys
            continue
        if f.metadata.get("help"):
            table.add(tomlkit.comment(f.metadata["help"]))
        table.add(f.name, _toml_value(values[f.name]))
    for f in later:
        table.add(f.name, _new_table(hints[f.name], values[f.name], f.metadata.get("help", "")))
    return table


def recipe_document(recipe: Recipe, document: tomlkit.TOMLDocument | None = None) -> tomlkit.TOMLDocument:
    """The TOML document for `recipe`: `document` updated in place, or a new commented one."""
    values = recipe.to_dict()
    if not values["environment"]:
        values.pop("environment")
    if document is None and recipe.model.task != "preference":
        values.pop("preference")  # a new recipe shows the sections its task uses
    if document is not None:
        _update_table(document, values, _section_defaults(Recipe), Recipe)
        return document
    doc = tomlkit.document()
    doc.add(tomlkit.comment("tuner recipe: `tuner validate` checks it, `tuner run` runs it."))
    doc.add("schema_version", values.pop("schema_version"))
    hints = typing.get_type_hints(Recipe)
    helps = {f.name: f.metadata.get("help", "") for f in fields(Recipe)}
    for key, value in values.items():
        if dataclasses.is_dataclass(hints[key]):
            doc.add(key, _new_table(hints[key], value, helps[key]))
        elif key == "objectives":
            if value:
                doc.add(key, _toml_value(value))
        else:  # environment
            env = tomlkit.table()
            env.comment(helps[key])
            env.update(value)
            doc.add(key, env)
    return doc


def dumps_recipe(recipe: Recipe, document: tomlkit.TOMLDocument | None = None) -> str:
    return tomlkit.dumps(recipe_document(recipe, document))


def save_recipe(recipe: Recipe, path: Path, document: tomlkit.TOMLDocument | None = None) -> None:
    """Write the recipe atomically; pass the loaded document to keep its comments and order."""
    path = Path(path)
    text = dumps_recipe(recipe, document)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def field_help(section: str, key: str) -> str:
    """Help text of `section.key` (e.g. 'training', 'learning_rate'), for tooltips."""
    hints = typing.get_type_hints(Recipe)
    cls = hints[section] if section else Recipe
    for f in fields(cls):
        if f.name == key:
            return str(f.metadata.get("help", ""))
    raise KeyError(f"{section}.{key}")


def with_changes(recipe: Recipe, changes: Mapping[str, Any]) -> tuple[Recipe, list[Problem]]:
    """A new recipe with `changes` applied ({"training.learning_rate": 1e-4, "objectives": [...]}),
    validated like a loaded file; the original is untouched."""
    data = recipe.to_dict()
    for key_path, value in changes.items():
        *parents, leaf = key_path.split(".")
        table = data
        for name in parents:
            table = table.setdefault(name, {})
        table[leaf] = value
    return parse_recipe(data)
