"""`tuner doctor [RECIPE]`: is this machine ready, and can the recipe run without a network?

Every check returns a `Check` (name, ok, detail, problem, fix, blocking). Nothing here touches the
network: hub models and datasets count as available only when they are in the local HF cache.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import platform
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tuner_tui.errors import TunerError
from tuner_tui.recipe import Recipe

MIN_FREE_DISK_BYTES = 5 * 2**30  # checkpoints of a 7B LoRA run plus a merged export fit in this


@dataclass
class Check:
    """One line of the doctor's report."""

    name: str
    ok: bool
    detail: str = ""
    problem: str = ""
    fix: str = ""
    # A blocking problem means the recipe cannot run as configured (the CLI exits 2).
    blocking: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")


def check_python_and_torch() -> list[Check]:
    """Python, torch and CUDA versions; CUDA absence is information, not a problem."""
    checks = [Check("python", True, platform.python_version())]
    try:
        import torch
    except ImportError:
        return [
            *checks,
            Check("torch", False, problem="torch is not installed", fix="pip install torch", blocking=True),
        ]
    checks.append(Check("torch", True, torch.__version__))
    if torch.cuda.is_available():
        checks.append(
            Check("CUDA", True, f"CUDA {torch.version.cuda}, {torch.cuda.device_count()} device(s)")
        )
    else:
        build = "CPU-only torch build" if torch.version.cuda is None else f"CUDA {torch.version.cuda} build"
        checks.append(Check("CUDA", True, f"not available ({build}); training runs on the CPU"))
    return checks


def check_gpus(probe: Any = None) -> Check:
    """GPUs as NVML sees them (name and memory), via the telemetry probe."""
    from tuner_tui.training.telemetry import GpuProbe

    probe = probe if probe is not None else GpuProbe()
    try:
        gpus = probe.sample()
    finally:
        probe.close()
    if not gpus:
        return Check("GPUs", True, f"none ({probe.reason or 'NVML reports no GPUs'})")
    names = ", ".join(f"{g.get('name', '?')} ({g.get('memory_total', 0) / 2**30:.0f} GiB)" for g in gpus)
    return Check("GPUs", True, names)


def check_disk(runs_dir: Path) -> Check:
    """Free space where runs are written (the nearest existing parent of runs_dir)."""
    target = Path(runs_dir).resolve()
    while not target.exists() and target != target.parent:
        target = target.parent
    free = shutil.disk_usage(target).free
    detail = f"{free / 2**30:.1f} GiB free at {target}"
    if free < MIN_FREE_DISK_BYTES:
        return Check(
            "disk",
            False,
            detail,
            problem=f"less than {MIN_FREE_DISK_BYTES / 2**30:.0f} GiB free for checkpoints",
            fix="free space or pass --runs-dir on a larger disk",
        )
    return Check("disk", True, detail)


def check_hf_settings() -> Check:
    """The Hugging Face offline switches and cache location."""
    keys = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME")
    detail = ", ".join(f"{k}={os.environ.get(k, 'unset')}" for k in keys)
    if not _offline():
        return Check(
            "HF offline",
            True,
            detail + " (hub access allowed; set HF_HUB_OFFLINE=1 on an air-gapped machine)",
        )
    return Check("HF offline", True, detail)


def _hub_cached(repo_id: str, revision: str, repo_type: str = "model") -> str | None:
    """The local snapshot folder of a hub repo, or None when it is not in the cache."""
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(
            repo_id, revision=revision or None, repo_type=repo_type, local_files_only=True
        )
    except Exception:  # LocalEntryNotFoundError, bad ids, ...: not available offline
        return None


def check_model(recipe: Recipe, base_dir: Path | None) -> list[Check]:
    """Model weights (safetensors) and tokenizer are on this machine."""
    from tuner_tui.modeling.resolve import resolve_model

    name = recipe.model.name_or_path
    try:
        path = resolve_model(name, base_dir)
    except TunerError as exc:
        return [Check("model", False, name, problem=str(exc), fix="fix [model] name_or_path", blocking=True)]
    folder = Path(path)
    if not folder.is_dir():
        cached = _hub_cached(name, recipe.model.revision)
        if cached is None:
            where = "needs the network" if not _offline() else "is not in the HF cache and HF_HUB_OFFLINE=1"
            return [
                Check(
                    "model",
                    False,
                    name,
                    problem=f"hub model '{name}' is not in the local Hugging Face cache: it {where}",
                    fix=f"on a connected machine: huggingface-cli download {name}, then copy the cache "
                    "(HF_HOME) here; or save_pretrained it into a folder and point name_or_path at it",
                    blocking=_offline(),
                )
            ]
        folder = Path(cached)
    checks = []
    weights = list(folder.glob("*.safetensors"))
    if weights:
        checks.append(Check("model weights", True, f"{len(weights)} safetensors file(s) in {folder}"))
    else:
        pickled = list(folder.glob("*.bin")) + list(folder.glob("*.pt"))
        checks.append(
            Check(
                "model weights",
                False,
                str(folder),
                problem="no *.safetensors weights"
                + (" (only pickle files, which can run code when loaded)" if pickled else ""),
                fix="convert the weights to safetensors (save_pretrained(..., safe_serialization=True))",
                blocking=True,
            )
        )
    tokenizer_files = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.txt")
    if any((folder / f).exists() for f in tokenizer_files):
        checks.append(Check("tokenizer", True, str(folder)))
    else:
        checks.append(
            Check(
                "tokenizer",
                False,
                str(folder),
                problem="no tokenizer files next to the model",
                fix="save the tokenizer into the model folder (tokenizer.save_pretrained)",
                blocking=True,
            )
        )
    if recipe.method.type in ("qlora",) or recipe.method.init == "loftq":
        has_bnb = importlib.util.find_spec("bitsandbytes") is not None
        checks.append(
            Check(
                "bitsandbytes",
                has_bnb,
                "installed" if has_bnb else "",
                problem="" if has_bnb else f"{recipe.method.type}/{recipe.method.init} needs bitsandbytes",
                fix=""
                if has_bnb
                else "pip install bitsandbytes (CUDA machine), or use [method] type = 'lora'",
                blocking=not has_bnb,
            )
        )
    return checks


def check_dataset(recipe: Recipe, base_dir: Path | None) -> Check:
    """The training data is a local file/folder, or a hub dataset in the local cache."""
    path = recipe.data.path
    if not path:
        return Check("dataset", False, problem="[data] path is empty", fix="set [data] path", blocking=True)
    local = Path(path).expanduser()
    if base_dir is not None and not local.is_absolute():
        local = Path(base_dir) / local
    if local.exists():
        return Check("dataset", True, str(local))
    if path.startswith((".", "/", "~")) or Path(path).suffix in (".jsonl", ".json", ".csv", ".parquet"):
        return Check(
            "dataset", False, path, problem=f"{local} does not exist", fix="fix [data] path", blocking=True
        )
    if _hub_cached(path, "", repo_type="dataset"):
        return Check("dataset", True, f"hub dataset '{path}' in the local cache")
    return Check(
        "dataset",
        False,
        path,
        problem=f"hub dataset '{path}' is not in the local cache",
        fix="download it on a connected machine and save it as a file/folder; point [data] path at it",
        blocking=_offline(),
    )


def _imports_of(module_file: Path) -> set[str]:
    tree = ast.parse(module_file.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def check_metrics(recipe: Recipe) -> Check:
    """The evaluate modules for the recipe's metrics ship with tuner and their imports resolve."""
    try:
        from tuner_tui.evaluation.metrics import METRICS, MODULES_DIR, metrics_for
    except ImportError as exc:
        return Check("metric modules", False, problem=f"evaluation package unavailable: {exc}", blocking=True)
    try:
        names = metrics_for(recipe.model.task, recipe.evaluation.metrics)
    except TunerError as exc:
        return Check("metric modules", False, problem=str(exc), fix="fix [evaluation] metrics", blocking=True)
    modules = sorted({m for m in (METRICS[n].module for n in names) if m})
    missing: list[str] = []
    for module in modules:
        file = MODULES_DIR / f"{module}.py"
        if not file.exists():
            missing.append(f"{module} (no {file.name})")
            continue
        missing.extend(
            f"{module} needs {name}"
            for name in sorted(_imports_of(file))
            if importlib.util.find_spec(name) is None
        )
    if missing:
        return Check(
            "metric modules",
            False,
            ", ".join(names),
            problem="; ".join(missing),
            fix="pip install the missing packages (e.g. scikit-learn, rouge-score, sacrebleu)",
            blocking=True,
        )
    return Check("metric modules", True, ", ".join(names) + " (local modules)")


def check_processes(recipe: Recipe, cuda_devices: int) -> Check:
    """Several processes: enough GPUs on this node, a strategy that runs here, where nodes meet."""
    from tuner_tui.errors import TunerError
    from tuner_tui.runs.ranks import check_strategy

    t = recipe.training
    layout = f"{t.num_processes} process(es) x {t.nnodes} node(s), {t.strategy}"
    if t.world_size == 1:
        return Check("processes", True, "1 process")
    try:
        check_strategy(t.strategy)
    except TunerError as exc:
        return Check("processes", False, layout, problem=str(exc), fix="pip install deepspeed", blocking=True)
    on_gpu = cuda_devices > 0 and t.device in ("auto", "cuda")
    if on_gpu and t.num_processes > cuda_devices:
        return Check(
            "processes",
            False,
            layout,
            problem=f"num_processes = {t.num_processes} but this node has {cuda_devices} CUDA GPU(s)",
            fix=f"set [training] num_processes = {cuda_devices} (one process per GPU)",
            blocking=True,
        )
    if not on_gpu and t.strategy != "ddp":
        return Check(
            "processes",
            False,
            layout,
            problem=f"strategy = '{t.strategy}' shards only on GPUs; on CPU accelerate would run DDP",
            fix="set [training] strategy = 'ddp' for CPU processes, or use a GPU machine",
            blocking=True,
        )
    backend = "NCCL" if on_gpu else "gloo (CPU)"
    detail = f"{layout} over {backend}, torchrun"
    if t.nnodes > 1:
        detail += (
            f"; nodes meet at {t.master_addr}:{t.master_port}: run `tuner run RECIPE --node-rank K` "
            f"on each node K = 0..{t.nnodes - 1} with a shared --runs-dir"
        )
    return Check("processes", True, detail)


def _cuda_devices() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # a broken driver counts as no GPU; check_gpus says why
        return 0


def doctor_checks(recipe: Recipe | None, runs_dir: Path, base_dir: Path | None = None) -> list[Check]:
    """All checks for this machine and, when given, the recipe's assets.

    Args:
        recipe: A loaded recipe, or None to check the machine only.
        runs_dir: Where runs will be written (free disk is measured there).
        base_dir: Folder that the recipe's relative paths are relative to (its folder).
    """
    checks = [*check_python_and_torch(), check_gpus(), check_disk(runs_dir), check_hf_settings()]
    if recipe is not None:
        checks += check_model(recipe, base_dir)
        checks.append(check_dataset(recipe, base_dir))
        checks.append(check_metrics(recipe))
        checks.append(check_processes(recipe, _cuda_devices()))
        if recipe.training.device == "cuda" or recipe.method.type == "qlora":
            import torch

            if not torch.cuda.is_available():
                checks.append(
                    Check(
                        "device",
                        False,
                        problem=f"the recipe needs CUDA (device = '{recipe.training.device}', "
                        f"method = '{recipe.method.type}') and none is available",
                        fix="set [training] device = 'auto' and [method] type = 'lora', or use a GPU machine",
                        blocking=True,
                    )
                )
    return checks
