"""The shipped Slurm script parses and calls `tuner run` with options that exist."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import typer.main

from tuner_tui.cli import app

SCRIPT = Path(__file__).resolve().parent.parent / "assets" / "slurm" / "tuner.sbatch"


def run_options() -> set[str]:
    command = typer.main.get_command(app).commands["run"]  # type: ignore[attr-defined]
    return {opt for param in command.params for opt in param.opts if opt.startswith("--")}


def test_the_slurm_script_uses_only_real_tuner_run_options() -> None:
    text = SCRIPT.read_text()
    call = text[text.index("exec tuner run") :]
    used = set(re.findall(r"(--[a-z][a-z-]+)", call))
    used |= set(re.findall(r"start=\((--[a-z-]+)", text))
    assert used == {"--resume", "--runs-dir", "--nnodes", "--node-rank", "--master-addr", "--master-port"}
    assert used <= run_options()
    assert "$SLURM_NODEID" in call and "#SBATCH --ntasks-per-node=1" in text


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_the_slurm_script_is_valid_bash() -> None:
    result = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
