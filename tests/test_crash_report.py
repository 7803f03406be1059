"""Crash reports (`tuner` hit a bug): a new private file each time, never a guessable name in a
shared folder; in the run directory the command was given, else the user's state folder."""

from __future__ import annotations

import stat
import tempfile
import time
from pathlib import Path

import pytest

from tuner_tui import cli

FROZEN = "20260102-030405"  # every crash of a test happens in this one second


def _crash(message: str) -> BaseException:
    try:
        raise RuntimeError(message)
    except RuntimeError as exc:
        return exc


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh home with no XDG settings, a private temp folder, and time frozen to one second."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    shared = tmp_path / "shared-tmp"
    shared.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(shared))
    monkeypatch.setattr(time, "strftime", lambda fmt, *args: FROZEN)
    return home


def _private(path: Path) -> bool:
    return stat.S_IMODE(path.lstat().st_mode) == 0o600 and path.is_file() and not path.is_symlink()


def test_two_crashes_in_one_second_write_two_private_reports_in_the_state_folder(home: Path) -> None:
    first = Path(cli._write_crash_report(_crash("first bug")))
    second = Path(cli._write_crash_report(_crash("second bug")))
    assert first != second
    assert first.parent == second.parent == home / ".local" / "state" / "tuner"
    assert stat.S_IMODE(first.parent.stat().st_mode) == 0o700
    assert "RuntimeError: first bug" in first.read_text() and "RuntimeError: second bug" in second.read_text()
    assert _private(first) and _private(second)
    assert first.name.startswith(f"tuner-crash-{FROZEN}") and first.suffix == ".log"


def test_xdg_state_home_is_honoured_and_the_cache_folder_is_the_fallback(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert Path(cli._write_crash_report(_crash("bug"))).parent == tmp_path / "state" / "tuner"
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("XDG_STATE_HOME", str(blocker))  # unusable, even for root
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert Path(cli._write_crash_report(_crash("bug"))).parent == tmp_path / "cache" / "tuner"


def test_a_planted_symlink_in_the_shared_temp_folder_is_never_followed(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With nowhere else to go (state and cache folders unusable), a report lands in the temp
    folder under a name nobody could plant a link at."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("XDG_STATE_HOME", str(blocker / "state"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker / "cache"))
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    shared = Path(tempfile.gettempdir())
    (shared / f"tuner-crash-{FROZEN}.log").symlink_to(victim)
    report = Path(cli._write_crash_report(_crash("bug")))
    assert victim.read_text() == "precious"
    assert report.parent == shared and _private(report) and "RuntimeError: bug" in report.read_text()


def test_a_crash_of_a_command_on_a_run_writes_the_report_into_the_run(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "runs" / "20260102-030405-demo-abcdef"
    run.mkdir(parents=True)
    (run / "state.json").write_text('{"phase": "completed"}')
    (run / "recipe.toml").write_text("schema_version = 1\n")

    def buggy_app(**kwargs: object) -> None:
        raise RuntimeError("a bug in eval")

    monkeypatch.setattr(cli, "app", buggy_app)
    monkeypatch.setattr("sys.argv", ["tuner", "eval", str(run)])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    assert exit_.value.code == 1
    (report,) = run.glob("tuner-crash-*.log")
    assert _private(report) and "RuntimeError: a bug in eval" in report.read_text()
    assert str(report) in " ".join(capsys.readouterr().err.split())
