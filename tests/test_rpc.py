"""Device farms over TVM RPC: a real tracker and two servers on 127.0.0.1."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from opscope.errors import OpscopeError
from opscope.targets import load_target

KEY = "opscope-test"


# -- configuration, no farm needed ------------------------------------------------------------------
def test_config_precedence_explicit_then_env_then_spec():
    from opscope.collector.rpc import rpc_config

    spec = load_target("rpc-aarch64")
    c = rpc_config(spec, env={})
    assert (c.key, c.tracker_host, c.tracker_port) == ("aarch64", "127.0.0.1", 9190)
    env = {"TVM_TRACKER_HOST": "10.0.0.5", "TVM_TRACKER_PORT": "9999", "OPSCOPE_RPC_KEY": "rk3399"}
    c = rpc_config(spec, env=env)
    assert (c.key, c.tracker_host, c.tracker_port) == ("rk3399", "10.0.0.5", 9999)
    c = rpc_config(spec, key="pi4", tracker="farm.lan:9191", env=env)
    assert (c.key, c.tracker_host, c.tracker_port) == ("pi4", "farm.lan", 9191)


def test_config_errors_name_the_problem():
    from opscope.collector.rpc import rpc_config

    with pytest.raises(OpscopeError, match="no device key"):
        rpc_config(None, env={})
    with pytest.raises(OpscopeError, match="'nine' is not a number"):
        rpc_config(None, key="k", env={"TVM_TRACKER_PORT": "nine"})
    with pytest.raises(OpscopeError, match="expected HOST:PORT"):
        rpc_config(None, key="k", tracker="farm", env={})


def test_board_specs_name_their_cross_compiler():
    from opscope.collector.registry import roles_module
    from opscope.collector.rpc_builder import cross_compiler

    for name, cc in (("rpc-aarch64", "aarch64-linux-gnu-g++"), ("rpc-armv7", "arm-linux-gnueabihf-g++")):
        spec = load_target(name)
        assert spec.extra["cross_compiler"] == cc and roles_module(spec) == "opscope.collector.rpc"
        if not __import__("shutil").which(cc):
            with pytest.raises(OpscopeError, match=re.escape(f"cross compiler '{cc}' named in [extra]")):
                cross_compiler(spec)


def test_no_tracker_is_one_clear_error():
    from opscope.collector.rpc import RpcConfig, boards_registered

    port = _free_port()
    with pytest.raises(OpscopeError, match=f"cannot reach the tracker at 127.0.0.1:{port}"):
        boards_registered(RpcConfig(key=KEY, tracker_port=port))


# -- a real farm ----------------------------------------------------------------------------------
def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Farm:
    def __init__(self, log_dir: Path):
        self.port = _free_port()
        self.log_dir = log_dir
        self.tracker = self._start("tracker", ["tvm.exec.rpc_tracker", "--host", "127.0.0.1",
                                               "--port", str(self.port), "--port-end", str(self.port + 1)])
        self.servers = [self.start_server(i) for i in range(2)]
        self.wait_for(2)

    def _start(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "w")
        env = {k: v for k, v in os.environ.items() if not k.startswith("TVM_")}
        env["TVM_NUM_THREADS"] = "2"  # a board's server runs with its core count (x86 halves it otherwise)
        return subprocess.Popen([sys.executable, "-m", *args], stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env)

    def start_server(self, i: int) -> subprocess.Popen:
        port = _free_port()
        return self._start(f"server{i}", ["tvm.exec.rpc_server", "--tracker", f"127.0.0.1:{self.port}",
                                          "--key", KEY, "--host", "127.0.0.1", "--port", str(port),
                                          "--port-end", str(port + 1)])

    def log(self, i: int) -> str:
        return (self.log_dir / f"server{i}.log").read_text()

    def wait_for(self, n: int, timeout: float = 240.0) -> None:
        from opscope.collector.rpc import RpcConfig, boards_registered

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if boards_registered(RpcConfig(key=KEY, tracker_port=self.port)) == n:
                    return
            except OpscopeError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"the farm did not reach {n} boards")

    def kill(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def close(self) -> None:
        for p in [*self.servers, self.tracker]:
            self.kill(p)


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    f = Farm(tmp_path_factory.mktemp("farm"))
    yield f
    f.close()


@pytest.fixture(scope="module")
def kernels():
    """A default and a sampled build of a 128^3 dense for this machine's CPU (x86-64-v3)."""
    from opscope.collector.registry import RoleOptions
    from opscope.collector.rpc import make_roles
    from opscope.collector.te_ops import dense_operator

    spec = load_target("rpc-x86_64")
    os.environ.setdefault("OPSCOPE_RPC_KEY", KEY)  # make_roles needs a key; the tests pass their own
    roles = make_roles(spec, RoleOptions())
    op = dense_operator(128, 128, 128)
    cands = roles.sampler.candidates(op, 1, seed=0)
    built = roles.builder.build(cands)
    assert all(b.ok for b in built), [b.error for b in built]
    yield op, built
    roles.builder.close()


def _job(op, artifact, threads=1, protocol=None, timeout_s=10.0, reference=""):
    from opscope.collector.protocol import Protocol
    from opscope.collector.roles import RunJob, arg_specs

    return RunJob(artifact, arg_specs(op.prim_func), threads, protocol or Protocol(), timeout_s, reference)


@pytest.mark.slow
def test_two_boards_share_a_batch(farm, kernels):
    from opscope.collector.rpc import RpcConfig, RpcRunner

    op, built = kernels
    runner = RpcRunner(RpcConfig(key=KEY, tracker_port=farm.port))
    n0, n1 = farm.log(0).count("load_module"), farm.log(1).count("load_module")
    jobs = [_job(op, built[i % 2].artifact, threads=1 + i % 2, reference=built[0].artifact if i == 1 else "")
            for i in range(6)]
    results = runner.run(jobs)
    assert [r.status for r in results] == ["ok"] * 6, [r.error for r in results]
    assert [r.threads for r in results] == [1, 2, 1, 2, 1, 2]  # config_threadpool on the board
    assert all(len(r.latencies_s) == 5 for r in results)
    # both boards measured part of the batch
    assert farm.log(0).count("load_module") > n0 and farm.log(1).count("load_module") > n1
    assert runner.lost_sessions == 0


@pytest.mark.slow
def test_session_timeout_is_a_timeout_not_a_lost_board(farm, kernels):
    from opscope.collector.protocol import Protocol
    from opscope.collector.rpc import RpcConfig, RpcRunner

    op, built = kernels
    runner = RpcRunner(RpcConfig(key=KEY, tracker_port=farm.port, retries=1))
    # ~100000 calls of a ~1 ms kernel in one repeat, with a 2 s limit: the board ends the session
    slow = Protocol(warmup=0, number=100000, repeat=1, min_repeat_ms=0)
    res = runner.run([_job(op, built[0].artifact, protocol=slow, timeout_s=2.0)])[0]
    assert res.status == "timeout", res
    assert "limit" in res.error
    assert runner.lost_sessions == 0  # not retried elsewhere as if the board had died
    farm.wait_for(2)  # both boards are free again


@pytest.mark.slow
def test_collect_through_the_farm_survives_a_board_dropping_out(farm, kernels, tmp_path, monkeypatch):
    """Kill one server in the middle of a measurement: retried on the other, the store is complete."""
    from opscope.collector import Protocol, collect
    from opscope.store import load_dataframe

    op, _ = kernels
    monkeypatch.setenv("TVM_TRACKER_HOST", "127.0.0.1")
    monkeypatch.setenv("TVM_TRACKER_PORT", str(farm.port))
    monkeypatch.setenv("OPSCOPE_RPC_KEY", KEY)
    victim = farm.servers[0]
    killed = threading.Event()

    def killer():
        # wait until board 0 starts its 3rd measurement of this test, then kill it while it runs
        start = farm.log(0).count("load_module")
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline and farm.log(0).count("load_module") < start + 3:
            time.sleep(0.05)
        farm.kill(victim)
        killed.set()

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    store = tmp_path / "farm.db"
    # long repeats so that the kill lands inside a measurement
    protocol = Protocol(repeat=3, min_repeat_ms=150, check_first=False)
    from opscope.collector.registry import RoleOptions
    from opscope.collector.rpc import make_roles

    roles = make_roles(load_target("rpc-x86_64"), RoleOptions())
    try:
        records = collect([op], target="rpc-x86_64", trials=3, threads=(1, 2), store=store, protocol=protocol,
                          progress=False, roles=roles)
    finally:
        roles.builder.close()
    t.join(timeout=5)
    assert roles.runner.lost_sessions >= 1  # the measurement in flight on the killed board was retried
    assert killed.is_set(), "the server was not killed during the collection"
    df = load_dataframe(store)
    keys = list(zip(df["schedule_id"], df["threads"]))
    assert len(keys) == len(set(keys)) == 4 * 2  # default + 3 sampled, 2 thread counts: none lost or doubled
    assert len(records) == len(df)
    assert (df["status"] == "ok").all(), df[["status", "error"]].to_string()
    assert set(df["target"]) == {"rpc-x86_64"}
    assert "failed" not in " ".join(df["error"].fillna(""))


@pytest.mark.slow
@pytest.mark.parametrize("name, elf_machine", [("rpc-aarch64", 183), ("rpc-armv7", 40)])
def test_board_kernels_are_cross_compiled_for_the_board(name, elf_machine, monkeypatch):
    """Sampled schedules for an ARM board link with its cross compiler into an ARM shared library."""
    import shutil

    from opscope.collector.registry import RoleOptions
    from opscope.collector.rpc import make_roles
    from opscope.collector.te_ops import dense_operator

    spec = load_target(name)
    if shutil.which(spec.extra["cross_compiler"]) is None:
        pytest.skip(f"{spec.extra['cross_compiler']} is not installed")
    monkeypatch.setenv("OPSCOPE_RPC_KEY", KEY)
    roles = make_roles(spec, RoleOptions())
    try:
        built = roles.builder.build(roles.sampler.candidates(dense_operator(64, 64, 64), 1, seed=0))
        assert len(built) == 2 and all(b.ok for b in built), [b.error for b in built]
        headers = [open(b.artifact, "rb").read(20) for b in built]
    finally:
        roles.builder.close()
    for h in headers:
        assert h[:4] == b"\x7fELF" and int.from_bytes(h[18:20], "little") == elf_machine
