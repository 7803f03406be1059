"""The supervisor's decisions without processes: torchrun options, which failure to report."""

from __future__ import annotations

import importlib.util
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import pytest

from tuner_tui.errors import TunerError
from tuner_tui.recipe import Recipe, parse_recipe
from tuner_tui.runs.events import read_events
from tuner_tui.runs.layout import RunDir
from tuner_tui.runs.ranks import EXIT_PEER_LOST, Rank, write_rank_error
from tuner_tui.runs.state import read_raw_state, write_state
from tuner_tui.runs.supervisor import _culprit, _failure_json, report_failure, torchrun_args
from tuner_tui.training.run import check_strategy_device, strategy_arguments


@dataclass
class FakeFailure:
    """The fields of torch's ProcessFailure the supervisor reads."""

    local_rank: int
    pid: int
    exitcode: int
    timestamp: int

    def signal_name(self) -> str:
        return signal.Signals(-self.exitcode).name if self.exitcode < 0 else "<N/A>"


@pytest.fixture
def run(tmp_path: Path) -> RunDir:
    made = RunDir(tmp_path / "run")
    made.create()
    write_state(made.state, phase="training", pid=os.getpid())
    return made


def failures(**by_rank: FakeFailure) -> dict[int, dict]:
    return {int(rank.removeprefix("r")): _failure_json(f) for rank, f in by_rank.items()}


def test_one_node_uses_a_private_rendezvous_and_several_nodes_the_static_one() -> None:
    one = torchrun_args(2, 1, 0, "", 29500, "abc")
    assert one[:6] == ["--nproc-per-node", "2", "--nnodes", "1", "--max-restarts", "0"]
    assert "localhost:0" in one and "static" not in one
    assert one[one.index("--signals-to-handle") + 1] == "SIGINT,SIGHUP,SIGQUIT"  # SIGTERM is ours
    two = torchrun_args(4, 2, 1, "head", 29400, "abc")
    assert two[two.index("--rdzv-backend") + 1] == "static"
    assert two[two.index("--node-rank") + 1] == "1"
    assert two[two.index("--master-addr") + 1] == "head" and two[two.index("--master-port") + 1] == "29400"


def test_a_ranks_own_error_comes_before_a_killed_rank_and_ranks_that_lost_their_peers(run: RunDir) -> None:
    write_rank_error(run.root, Rank(rank=0, world_size=3), "crash", "RuntimeError: gloo", "h", peer_lost=True)
    write_rank_error(run.root, Rank(rank=1, world_size=3), "oom", "Out of memory: CUDA.", "Lower it.", False)
    found = failures(
        r0=FakeFailure(0, 10, EXIT_PEER_LOST, 100),
        r1=FakeFailure(1, 11, 1, 101),
        r2=FakeFailure(2, 12, -signal.SIGKILL, 99),
    )
    error = _culprit(run, found, "", world_size=3, nnodes=1)
    assert error["kind"] == "oom" and error["rank"] == 1
    assert error["message"] == "Rank 1: Out of memory: CUDA."
    assert error["log"] == str(run.root / "worker.rank1.log") and "worker.rank1.log" in error["hint"]


def test_the_first_killed_rank_is_named_not_the_bystanders_stopped_after_it(run: RunDir) -> None:
    found = failures(
        r0=FakeFailure(0, 10, EXIT_PEER_LOST, 100),  # lost its peer
        r1=FakeFailure(1, 11, -signal.SIGABRT, 100),  # NCCL's watchdog after the loss
        r2=FakeFailure(0, 12, -signal.SIGKILL, 131),  # the agent's kill 30 s after its SIGTERM
        r3=FakeFailure(1, 13, -signal.SIGKILL, 101),  # the one that died first
    )
    error = _culprit(run, found, "", world_size=4, nnodes=2)
    assert error["kind"] == "rank_failed" and error["rank"] == 3
    assert "Rank 3 (local rank 1, pid 13) was killed by SIGKILL" in error["message"]


def test_ranks_that_only_lost_their_peers_say_where_to_look(run: RunDir) -> None:
    write_rank_error(
        run.root, Rank(rank=0, world_size=2), "crash", "RuntimeError: Connection reset", "h", True
    )
    one_node = _culprit(run, failures(r0=FakeFailure(0, 10, EXIT_PEER_LOST, 100)), "", 2, nnodes=1)
    assert one_node["kind"] == "rank_failed" and "rank" not in one_node
    assert "another node" not in one_node["message"] and "Connection reset" in one_node["message"]
    two_nodes = _culprit(run, failures(r0=FakeFailure(0, 10, EXIT_PEER_LOST, 100)), "", 2, nnodes=2)
    assert "another node" in two_nodes["message"] and "other nodes' `tuner run` output" in two_nodes["hint"]


def test_a_launch_that_never_started_ranks_is_a_rendezvous_error(run: RunDir) -> None:
    error = _culprit(run, {}, "RendezvousTimeoutError: nodes did not join", 2, 2)
    assert error["kind"] == "rendezvous" and "nodes did not join" in error["message"]
    assert "--node-rank K" in error["hint"]
    interrupted = _culprit(run, {}, "SignalException: Process 7 got signal: 1", 2, 1)
    assert interrupted["kind"] == "crash" and "interrupted" in interrupted["message"]


def test_a_rank_killed_on_another_node_is_named_from_that_nodes_record(run: RunDir) -> None:
    from tuner_tui.runs.ranks import node_failures_file
    from tuner_tui.runs.state import atomic_write_json

    atomic_write_json(
        node_failures_file(run.root, 1), {"3": _failure_json(FakeFailure(1, 13, -signal.SIGKILL, 101))}
    )
    report_failure(run, {0: FakeFailure(0, 10, EXIT_PEER_LOST, 102)}, world_size=4, nnodes=2)
    (error,) = [e for e in read_events(run.events)[0] if e["type"] == "error"]
    assert error["rank"] == 3 and "SIGKILL" in error["message"]


def test_peer_loss_is_a_lost_connection_never_a_ranks_own_error() -> None:
    from tuner_tui.runs.ranks import is_peer_lost

    assert is_peer_lost(RuntimeError("[gloo/pair.cc:553] Connection closed by peer [127.0.0.1]:1"), "crash")
    assert is_peer_lost(RuntimeError("Watchdog caught collective operation timeout: timed out"), "crash")
    assert not is_peer_lost(RuntimeError("NCCL error: unhandled cuda error, out of memory"), "oom")
    assert not is_peer_lost(RuntimeError("NCCL error: invalid usage"), "crash")
    assert not is_peer_lost(ValueError("Connection closed by peer"), "crash")


def test_report_failure_writes_one_error_and_the_failed_phase(run: RunDir) -> None:
    report_failure(run, {1: FakeFailure(1, 11, -signal.SIGKILL, 100)}, world_size=2)
    events, _ = read_events(run.events)
    assert [e["type"] for e in events] == ["error", "status"]
    assert events[0]["rank"] == 1 and events[1]["phase"] == "failed"
    assert read_raw_state(run.state)["failed_rank"] == 1


def test_report_failure_leaves_a_run_that_ended_or_moved_on_alone(run: RunDir) -> None:
    write_state(run.state, phase="stopped")
    report_failure(run, {1: FakeFailure(1, 11, -signal.SIGKILL, 100)})
    write_state(run.state, phase="preparing", pid=os.getpid() + 1)  # a resume's new supervisor
    report_failure(run, {1: FakeFailure(1, 11, -signal.SIGKILL, 100)})
    assert not run.events.exists() or read_events(run.events)[0] == []


BASE = {"data": {"path": "data.jsonl"}, "model": {"name_or_path": "model"}}


def problems_of(**training: object) -> list[str]:
    return [p.path for p in parse_recipe({**BASE, "training": training})[1]]


def recipe(**training: object) -> Recipe:
    loaded, problems = parse_recipe({**BASE, "training": training})
    assert not problems, problems
    return loaded


def test_strategy_arguments() -> None:
    assert strategy_arguments(recipe()) == {}
    assert strategy_arguments(recipe(num_processes=2)) == {"ddp_find_unused_parameters": False}
    fsdp = strategy_arguments(recipe(num_processes=2, strategy="fsdp"), ["LlamaDecoderLayer"])
    assert fsdp["fsdp"] is True
    assert fsdp["fsdp_config"]["transformer_layer_cls_to_wrap"] == ["LlamaDecoderLayer"]
    assert fsdp["fsdp_config"]["version"] == 2
    if importlib.util.find_spec("deepspeed") is None:
        with pytest.raises(TunerError, match="needs the deepspeed package"):
            strategy_arguments(recipe(num_processes=2, strategy="deepspeed"))


def test_sharding_strategies_refuse_cpu_instead_of_quietly_running_ddp() -> None:
    with pytest.raises(TunerError, match="strategy = 'fsdp' needs GPUs"):
        check_strategy_device(recipe(num_processes=2, strategy="fsdp"), "cpu")
    check_strategy_device(recipe(num_processes=2, strategy="fsdp"), "cuda")
    check_strategy_device(recipe(num_processes=2), "cpu")


def test_recipe_checks_and_hash_of_the_node_settings() -> None:
    assert problems_of(nnodes=2) == ["training.master_addr"]
    assert problems_of(strategy="fsdp") == ["training.strategy"]
    assert problems_of(strategy="zero", num_processes=2) == ["training.strategy"]
    assert problems_of(nnodes=2, master_addr="head", strategy="fsdp") == []
    qlora = parse_recipe(
        {**BASE, "method": {"type": "qlora"}, "training": {"num_processes": 2, "strategy": "fsdp"}}
    )
    assert [p.path for p in qlora[1]] == ["training.strategy"] and "bitsandbytes" in qlora[1][0].message
    base = recipe(nnodes=2, master_addr="a", master_port=1000)
    moved = recipe(nnodes=2, master_addr="b", master_port=2000)
    assert base.hash() == moved.hash()  # where the nodes meet is not what they compute
    assert base.hash() != recipe(nnodes=3, master_addr="a").hash()
    assert recipe(num_processes=4, nnodes=2, master_addr="a").training.world_size == 8
