"""The wheel ships everything the app needs: every subpackage, the mapped screens/ and assets/
folders with their stylesheets and demo data, and the `tuner` command.

Builds from a copy of the source tree, so the repository gets no build/ or egg-info litter.
Takes a few seconds (no isolated build environment, no dependencies fetched).
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
JUNK = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")


def _setuptools_config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]


def _source_files() -> dict[str, Path]:
    """Wheel path -> source file, for every file the package is built from."""
    roots = {"tuner_tui": ROOT / "tuner_tui"}
    for package, folder in _setuptools_config().get("package-dir", {}).items():
        roots[package] = ROOT / folder
    files = {}
    for package, folder in roots.items():
        prefix = package.replace(".", "/")
        for path in folder.rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                files[f"{prefix}/{path.relative_to(folder).as_posix()}"] = path
    return files


def _repository_entries() -> set[str]:
    return {p.name for p in ROOT.iterdir()} | {p.name for p in (ROOT / "tuner_tui").iterdir()}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[zipfile.ZipFile]:
    before = _repository_entries()
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, source / name)
    folders = {"tuner_tui", *_setuptools_config().get("package-dir", {}).values()}
    for folder in folders:
        shutil.copytree(ROOT / folder, source / folder, ignore=JUNK)

    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(source),
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--wheel-dir",
            str(out),
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, f"wheel build failed:\n{result.stdout}\n{result.stderr}"
    new_entries = _repository_entries() - before
    assert not new_entries, f"building the wheel left {sorted(new_entries)} in the repository"
    (built,) = out.glob("tuner_tui-*.whl")
    with zipfile.ZipFile(built) as archive:
        yield archive


def test_every_source_file_is_in_the_wheel(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    expected = _source_files()
    assert expected, "found no source files"
    missing = sorted(path for path in expected if path not in names)
    assert missing == [], f"not in the wheel: {missing}"


def test_every_subpackage_is_in_the_wheel(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    packages = [p.parent for p in (ROOT / "tuner_tui").rglob("__init__.py")]
    assert len(packages) > 1
    for package in packages:
        init = f"{package.relative_to(ROOT).as_posix()}/__init__.py"
        assert init in names, f"subpackage {package.name} is missing from the wheel"


def test_screens_and_assets_ship_inside_the_package(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    assert "tuner_tui/screens/__init__.py" in names
    stylesheets = sorted(p.name for p in (ROOT / "screens").glob("*.tcss"))
    assert stylesheets, "screens/ has no .tcss files"
    for name in stylesheets:
        assert f"tuner_tui/screens/{name}" in names
    assert "tuner_tui/assets/demo/recipe.toml" in names
    assert "tuner_tui/assets/slurm/tuner.sbatch" in names
    # Mapped in, never installed as top-level packages of their own.
    assert not any(n.startswith(("screens/", "assets/")) for n in names)


def test_tuner_command_is_declared(wheel: zipfile.ZipFile) -> None:
    (entry_points,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    parser = configparser.ConfigParser()
    parser.read_string(wheel.read(entry_points).decode())
    assert parser["console_scripts"]["tuner"] == "tuner_tui.cli:main"
