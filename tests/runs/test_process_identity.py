"""A worker is told from a later process with its pid by when it started, counted so that a
wall clock stepped by NTP (or a VM resumed from a snapshot) does not make a live run read as
crashed."""

from __future__ import annotations

import os
import sys

import psutil
import pytest

from tuner_tui.runs.state import process_start_time, worker_alive

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="boot-relative times are Linux's"
)


def test_a_live_worker_stays_alive_when_the_wall_clock_is_stepped(monkeypatch) -> None:
    me = os.getpid()
    state = {"pid": me, "pid_started": process_start_time(me)}
    real = psutil.Process.create_time
    monkeypatch.setattr(psutil.Process, "create_time", lambda self: real(self) + 3600.0)  # clock stepped
    assert worker_alive(state)


def test_a_reused_pid_reads_dead() -> None:
    me = os.getpid()
    started = process_start_time(me)
    assert started is not None and started < 1e9  # seconds since boot
    assert not worker_alive({"pid": me, "pid_started": started - 5.0})


def test_runs_written_with_wall_clock_start_times_still_read() -> None:
    me = os.getpid()
    wall = psutil.Process(me).create_time()
    assert worker_alive({"pid": me, "pid_started": wall})
    assert not worker_alive({"pid": me, "pid_started": wall - 5.0})
    assert worker_alive({"pid": me, "pid_started": "garbage"})  # the pid alone decides


def test_a_gone_pid_has_no_start_time() -> None:
    assert process_start_time(2**22 + 12345) is None
