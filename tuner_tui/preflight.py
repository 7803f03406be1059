"""Pre-flight: what can be known about a recipe before training, from cheap looks at this machine.

`Recipe.problems()` judges a recipe on its own. `preflight_problems` adds what needs the file
system and the machine: the data file exists and its header has the mapped columns, the model
folder has weights tuner will load, a probes or pairs file parses, each objective's split will
exist, and the process layout has the GPUs it asks for. Every look is an existence check or a
header read, never a full load, so the wizard runs it on each edit and `tuner validate` and
`tuner run` run it before any run directory exists.

Problems carry recipe key paths (`data.path`, `model.name_or_path`, ...), like the recipe's own,
so each lands in the wizard step that edits that key.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import os
import sys
from pathlib import Path

from tuner_tui.errors import TunerError
from tuner_tui.recipe import Problem, Recipe, RecipeError

# Files a tokenizer is loaded from; a model folder without any of them cannot be tokenized.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.txt", "vocab.json")
_HEADER_BYTES = 64 << 10


def preflight_problems(recipe: Recipe, base_dir: Path | None) -> list[Problem]:
    """Problems of `recipe` that need the file system or the machine to see.

    Args:
        recipe: A parsed recipe (its own problems are `recipe.problems()`).
        base_dir: The folder relative paths start from (the recipe's folder); None: the current one.
    """
    found = _data_problems(recipe, base_dir)
    found += _model_problems(recipe, base_dir)
    found += _split_problems(recipe, base_dir)
    found += _bias_problems(recipe, base_dir)
    found += _general_data_problems(recipe, base_dir)
    found += _start_from_problems(recipe, base_dir)
    found += _device_problems(recipe)
    found += _tracker_problems(recipe)
    return found


def _tracker_problems(recipe: Recipe) -> list[Problem]:
    """A tracker in [training] report_to whose package is not installed (a find_spec look)."""
    from tuner_tui.training.trackers import tracker_problems

    return tracker_problems(recipe.training.report_to)


def _start_from_problems(recipe: Recipe, base_dir: Path | None) -> list[Problem]:
    from tuner_tui.training.start_from import adapter_folder

    start_from = recipe.preference.start_from
    if recipe.model.task != "preference" or not start_from:
        return []
    try:
        adapter_folder(start_from, base_dir)
    except TunerError as error:
        return [Problem("preference.start_from", str(error))]
    return []


def check_runnable(recipe: Recipe, base_dir: Path | None, source: object) -> None:
    """Raise `RecipeError` with every problem, the recipe's own and pre-flight, or return."""
    problems = recipe.problems()
    problems += preflight_problems(recipe, base_dir)
    if problems:
        raise RecipeError(str(source), problems)


def _local(path: str, base_dir: Path | None) -> Path:
    candidate = Path(path).expanduser()
    if base_dir is not None and not candidate.is_absolute():
        relative = Path(base_dir) / candidate
        if relative.exists() or not candidate.exists():
            return relative
    return candidate


# --- data --------------------------------------------------------------------------------------


def _data_problems(recipe: Recipe, base_dir: Path | None) -> list[Problem]:
    if not recipe.data.path.strip():
        return []  # Recipe.problems() says it is missing
    from tuner_tui.data.probe import probe_data

    return [
        Problem("data.path", message) for message in probe_data(recipe.data, base_dir, task=recipe.model.task)
    ]


# --- model -------------------------------------------------------------------------------------


def _model_problems(recipe: Recipe, base_dir: Path | None) -> list[Problem]:
    model = recipe.model
    if not model.name_or_path.strip():
        return []
    from tuner_tui.modeling.loading import weight_files, weights_kwargs
    from tuner_tui.modeling.resolve import resolve_model

    where = "model.name_or_path"
    try:
        resolved = resolve_model(model.name_or_path, base_dir)
    except TunerError as error:
        return [Problem(where, str(error))]
    folder = Path(resolved)
    if not folder.is_dir():
        if model.name_or_path.count("/") > 1:  # a hub id is 'name' or 'org/name'
            return [
                Problem(
                    where,
                    f"the model folder {_local(model.name_or_path, base_dir)} does not exist (and "
                    "'org/name' is the only shape of a hub id): point it at a folder written by "
                    "save_pretrained.",
                )
            ]
        return _hub_model_problems(model.name_or_path, model.revision)
    try:
        safe, pickled = weight_files(folder)
    except OSError as error:
        return [Problem(where, f"the model folder {folder} cannot be read ({error.strerror}).")]
    if not safe and not pickled:
        return [
            Problem(
                where,
                f"the model folder {folder} has no weights (no *.safetensors files): point it at a folder "
                "written by save_pretrained (config.json + *.safetensors + tokenizer files).",
            )
        ]
    found = []
    if not safe and not model.allow_pickle_weights:
        try:
            weights_kwargs(model, str(folder))
        except TunerError as error:
            found.append(Problem("model.allow_pickle_weights", str(error)))
    found += _layer_problems(recipe, folder)
    if not any((folder / name).exists() for name in TOKENIZER_FILES):
        found.append(
            Problem(
                where,
                f"the model folder {folder} has no tokenizer files ({', '.join(TOKENIZER_FILES)}): save "
                "the tokenizer beside the weights (tokenizer.save_pretrained(folder)).",
            )
        )
    return found


def _layer_problems(recipe: Recipe, folder: Path) -> list[Problem]:
    """`freeze` trains the last N layers: the model's config.json says how many it has."""
    if recipe.method.type != "freeze":
        return []
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []  # resolve_model already requires config.json; a broken one fails at load
    layers = config.get("num_hidden_layers") if isinstance(config, dict) else None
    if isinstance(layers, int) and recipe.method.trainable_layers > layers:
        return [
            Problem(
                "method.trainable_layers",
                f"is {recipe.method.trainable_layers}, but the model in {folder} has {layers} layers "
                f"(config.json num_hidden_layers): use at most {layers}, or type = 'full'.",
            )
        ]
    return []


def _hub_model_problems(name: str, revision: str) -> list[Problem]:
    """Offline, a hub model must already be in the local cache; online it downloads at run time."""
    from tuner_tui.modeling.loading import hub_cache_dir, hub_offline

    if not hub_offline() or _hub_cached(name, revision):
        return []
    return [
        Problem(
            "model.name_or_path",
            f"'{name}' is not a local folder, and HF_HUB_OFFLINE is set, so it must be in the Hugging "
            f"Face cache ({hub_cache_dir()}), where it is not"
            + (f" at revision '{revision}'" if revision else "")
            + ". Download it once while online (huggingface-cli download NAME), or point name_or_path "
            "at a folder written by save_pretrained.",
        )
    ]


@functools.lru_cache(maxsize=64)
def _hub_cached(repo_id: str, revision: str) -> bool:
    try:
        from huggingface_hub import snapshot_download

        snapshot_download(repo_id, revision=revision or None, local_files_only=True)
    except Exception:  # not in the cache, a malformed id, ...: not available offline
        return False
    return True


# --- splits ------------------------------------------------------------------------------------


def _split_problems(recipe: Recipe, base_dir: Path | None) -> list[Problem]:
    """An objective measured on a split that no data will fill: its fraction is 0 and the data
    brings no such split of its own (named files in a folder, or a `split` column)."""
    fractions = {"validation": recipe.data.validation_fraction, "test": recipe.data.test_fraction}
    found = []
    brought: set[str] | None = None
    for i, objective in enumerate(recipe.objectives):
        if fractions.get(objective.split, 1.0) > 0:
            continue
        if brought is None:
            brought = _splits_in_data(recipe, base_dir)
        if objective.split in brought:
            continue
        key = f"{objective.split}_fraction"
        found.append(
            Problem(
                f"objectives[{i}].split",
                f"is '{objective.split}', but data.{key} = 0 and the data brings no {objective.split} "
                f"split of its own, so there will be nothing to measure {objective.metric} on. Set "
                f"data.{key} above 0 (e.g. 0.1), or measure the objective on the other split.",
            )
        )
    return found


def _splits_in_data(recipe: Recipe, base_dir: Path | None) -> set[str]:
    """Splits the data names itself, as far as a folder listing or a header shows. When it cannot
    be told cheaply (a `split` column's values), every split counts as brought."""
    from tuner_tui.data.load import SPLIT_COLUMN, _split_of

    path = _local(recipe.data.path, base_dir)
    if path.is_dir():
        info = path / "dataset_dict.json"
        if info.is_file():
            try:
                names = json.loads(info.read_text(encoding="utf-8")).get("splits", [])
            except (OSError, ValueError, AttributeError):
                return {"train", "validation", "test"}
            return {s for s in (_split_of(str(n)) for n in names) if s}
        return {s for s in (_split_of(p.name) for p in path.iterdir() if p.is_file()) if s}
    from tuner_tui.data.peek import read_header

    every = {"train", "validation", "test"}
    if not path.is_file():
        return every  # a hub id: its splits are not known without the network
    try:
        columns = read_header(path).columns
    except TunerError:
        return every  # the data problem itself is reported by the data probe
    return every if columns is None or SPLIT_COLUMN in columns else set()


# --- bias files --------------------------------------------------------------------------------


def _bias_problems(recipe: Recipe, base_dir: Path | None) -> list[Problem]:
    bias = recipe.bias
    if not bias.enabled:
        return []
    found = []
    if bias.probes != "builtin":
        message = _probes_problem(_local(bias.probes, base_dir))
        if message:
            found.append(Problem("bias.probes", message))
    if bias.pairs_file:
        message = _pairs_problem(_local(bias.pairs_file, base_dir))
        if message:
            found.append(Problem("bias.pairs_file", message))
    return found


def _general_data_problems(recipe: Recipe, base_dir: Path | None) -> list[Problem]:
    """[evaluation] general_data must be a readable text file (read whole at evaluation time)."""
    general = recipe.evaluation.general_data
    if not general:
        return []
    if recipe.model.task != "causal_lm":
        return [
            Problem(
                "evaluation.general_data",
                f"is set, but the forgetting check measures perplexity, which only causal LMs have "
                f"(model.task = '{recipe.model.task}'): set general_data = '' or task = 'causal_lm'.",
            )
        ]
    fix = "give a JSONL file with a 'text' field or a .txt file of one text per line, or set it to ''"
    _, why = _head(_local(general, base_dir), "general-domain data file", fix)
    return [Problem("evaluation.general_data", why)] if why else []


def _head(path: Path, what: str, fix: str) -> tuple[str | None, str]:
    """(first 64 KB of `path` as text, '') or (None, why not). Never quotes the file's contents:
    a file the user cannot share (a root-only secret) must not leak into messages or logs."""
    if not path.exists():
        return None, f"the {what} {path} does not exist: {fix}."
    if not path.is_file():
        return None, f"the {what} {path} is not a regular file (a folder or a device): {fix}."
    try:
        with open(path, "rb") as handle:
            raw = handle.read(_HEADER_BYTES)
    except OSError as error:
        return None, f"the {what} {path} cannot be read ({error.strerror}): check its permissions, or {fix}."
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        if error.start < len(raw) - 4:  # not just a character cut at the 64 KB boundary
            return (
                None,
                f"the {what} {path} is not UTF-8 text (bad byte at offset {error.start}): save it as UTF-8.",
            )
        text = raw[: error.start].decode("utf-8-sig")
    if not text.strip():
        return None, f"the {what} {path} is empty: {fix}."
    return text, ""


def _probes_problem(path: Path) -> str:
    fix = "give a JSONL file of probes, or set bias.probes = 'builtin'"
    text, why = _head(path, "bias probes file", fix)
    if text is None:
        return why
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as error:
            if len(text.encode()) >= _HEADER_BYTES and number == len(text.splitlines()):
                return ""  # a first line longer than the header read: the full load judges it
            return (
                f"{path}:{number} is not valid JSON ({error.msg}): each line must be one JSON object, "
                '{"template": "... {person} ..."}, {"text": "..."} or {"original": "...", "swapped": "..."}.'
            )
        if not isinstance(item, dict) or not ({"template", "text", "original"} & item.keys()):
            return (
                f"{path}:{number} is not a probe: each line must be a JSON object with a 'template', "
                "'text' or 'original' (+ 'swapped') key."
            )
        return ""
    return f"the bias probes file {path} holds no probes: {fix}."


def _pairs_problem(path: Path) -> str:
    import csv
    import io

    from tuner_tui.evaluation.bias.paired import REQUIRED_COLUMNS

    needed = ", ".join(REQUIRED_COLUMNS)
    fix = f"give a CrowS-Pairs-format CSV with a header row naming {needed}"
    text, why = _head(path, "pairs file", fix)
    if text is None:
        return why
    header = next(csv.reader(io.StringIO(text, newline="")), [])
    missing = [c for c in REQUIRED_COLUMNS if c not in {h.strip() for h in header}]
    if missing:
        return (
            f"the pairs file {path} has no {', '.join(missing)} column in its first row ({len(header)} "
            f"column(s) found): {fix}, e.g. sent_more,sent_less,bias_type."
        )
    return ""


# --- processes and devices ---------------------------------------------------------------------


def _device_problems(recipe: Recipe) -> list[Problem]:
    from tuner_tui.runs.ranks import check_strategy

    t, found = recipe.training, []
    gpus = cuda_device_count()
    if t.device == "cuda" and gpus == 0:
        found.append(
            Problem(
                "training.device",
                "is 'cuda', but this machine has no CUDA GPU visible (NVML finds none, or "
                "CUDA_VISIBLE_DEVICES hides them): set device = 'auto' to train on the CPU, or run on "
                "a GPU machine.",
            )
        )
    if recipe.method.type == "qlora" and gpus == 0:
        found.append(
            Problem(
                "method.type",
                "is 'qlora', whose 4-bit weights (bitsandbytes) need a CUDA GPU, and this machine has none "
                "visible: use type = 'lora' here, or run on a GPU machine.",
            )
        )
    if t.device == "mps" and sys.platform != "darwin":
        found.append(
            Problem(
                "training.device", "is 'mps' (Apple GPUs), which exists only on macOS: set device = 'auto'."
            )
        )
    needs_bnb = recipe.method.type == "qlora" or recipe.method.init == "loftq"
    if (
        needs_bnb
        and importlib.util.find_spec("bitsandbytes") is None
        and (gpus or recipe.method.init == "loftq")
    ):
        key = "method.init" if recipe.method.init == "loftq" else "method.type"
        what = (
            "init = 'loftq' quantizes the base weights"
            if key == "method.init"
            else "type = 'qlora' loads 4-bit weights"
        )
        found.append(
            Problem(
                key,
                f"needs the bitsandbytes package ({what} with it), which is not installed: pip "
                "install bitsandbytes on this CUDA machine, or use type = 'lora' with init = 'default', "
                "'pissa' or 'olora'.",
            )
        )
    if t.world_size > 1:
        if t.strategy != "ddp":
            try:
                check_strategy(t.strategy)
            except TunerError as error:
                found.append(Problem("training.strategy", str(error)))
            if gpus == 0 or t.device == "cpu":
                found.append(
                    Problem(
                        "training.strategy",
                        f"is '{t.strategy}', which shards over GPUs, and this run would train on the CPU "
                        "(no CUDA GPU visible, or device = 'cpu'): set strategy = 'ddp' for CPU "
                        "processes, or run on a GPU machine.",
                    )
                )
        if gpus > 0 and t.device in ("auto", "cuda") and t.num_processes > gpus:
            found.append(
                Problem(
                    "training.num_processes",
                    f"is {t.num_processes}, but this node has {gpus} CUDA GPU(s) visible: set "
                    f"num_processes = {gpus} (one process per GPU), or device = 'cpu'.",
                )
            )
    return [dataclasses.replace(p, machine=True) for p in found]


@functools.lru_cache(maxsize=1)
def cuda_device_count() -> int:
    """CUDA GPUs this process may use, from NVML and CUDA_VISIBLE_DEVICES, without importing torch
    (the wizard runs these checks on every edit and must stay light)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1", "none", "NoDevFiles"):
        return 0
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            count = int(pynvml.nvmlDeviceGetCount())
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no driver, no library: no GPU this process can use
        return 0
    if visible is not None:
        count = min(count, len([v for v in visible.split(",") if v.strip()]))
    return count
