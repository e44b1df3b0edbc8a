"""Measuring on device farms through TVM's RPC tracker: build here, time on the boards.

A farm is a TVM RPC tracker (``python -m tvm.exec.rpc_tracker``) and any number of boards running
``python -m tvm.exec.rpc_server --tracker HOST:PORT --key KEY``.  opscope never talks to a board
directly: for every measurement it asks the tracker for a session on *some* free board under the
key, uploads the compiled kernel, times it there with ``time_evaluator`` and closes the session.

- Several boards share the work: ``RpcRunner.run`` measures a batch with one thread per board.
- A board that drops out mid-measurement: the measurement goes back to the queue and is retried on
  another board (``retries`` times); after that it is recorded as a ``crash`` with the errors seen.
  Nothing is lost and the rest goes on.  A kernel that kills the server process looks the same, so
  it is retried once and then recorded as a crash.
- Every session is opened with ``session_timeout`` = the job's time limit; the server kills a
  session that runs past it.  A measurement that ends that way is a ``timeout``, not a lost board.

Where the tracker is: ``RpcConfig`` from, in order, explicit values, the environment
(``TVM_TRACKER_HOST``, ``TVM_TRACKER_PORT``, ``OPSCOPE_RPC_KEY``; see ``env_var.sh``), the spec's
``[extra.rpc]`` table, then ``127.0.0.1:9190``.  The board's compile target is the spec's
``[tvm_target]``; ``[extra] cross_compiler`` names the C++ cross compiler that links the kernels.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from opscope.collector.roles import RunJob, Runner, RunResult
from opscope.errors import OpscopeError
from opscope.targets.spec import TargetSpec

DEFAULT_TRACKER = ("127.0.0.1", 9190)
#: TVM's thread-pool affinity mode for ``runtime.config_threadpool``: the big cores (all of them on
#: a CPU without big.LITTLE).  The pool never grows past the server's ``TVM_NUM_THREADS`` (default:
#: all cores, half the hardware threads on x86); the core-list modes need an array argument, which
#: TVM's RPC cannot pass.
_BIG_CORES = 1


@dataclass(frozen=True)
class RpcConfig:
    key: str
    tracker_host: str = DEFAULT_TRACKER[0]
    tracker_port: int = DEFAULT_TRACKER[1]
    #: boards measured on at once; None: every board registered under the key when a batch starts
    boards: int | None = None
    #: how many times a measurement whose board dropped out is retried on another board
    retries: int = 1
    #: seconds to wait for the tracker to hand out a free board
    request_timeout_s: float = 120.0

    def __post_init__(self) -> None:
        if not self.key or not isinstance(self.key, str):
            raise OpscopeError("rpc: no device key: set OPSCOPE_RPC_KEY, or key in the spec's [extra.rpc] table")
        if not isinstance(self.tracker_port, int) or not 0 < self.tracker_port < 65536:
            raise OpscopeError(f"rpc: tracker port {self.tracker_port!r} is not a port number")
        if self.boards is not None and self.boards < 1:
            raise OpscopeError(f"rpc: boards must be >= 1, got {self.boards}")
        if self.retries < 0:
            raise OpscopeError(f"rpc: retries must be >= 0, got {self.retries}")


def rpc_config(spec: TargetSpec | None = None, key: str | None = None, tracker: str | None = None,
               env: Mapping[str, str] | None = None, **fields: Any) -> RpcConfig:
    """The farm to use: explicit ``key``/``tracker`` ("host:port"), then env, then the spec."""
    env = os.environ if env is None else env
    table = dict((spec.extra or {}).get("rpc", {})) if spec is not None else {}
    if spec is not None and not isinstance((spec.extra or {}).get("rpc", {}), dict):
        raise OpscopeError(f"target {spec.name!r}: [extra] rpc must be a table")
    host = table.get("tracker_host", DEFAULT_TRACKER[0])
    port: Any = table.get("tracker_port", DEFAULT_TRACKER[1])
    host = env.get("TVM_TRACKER_HOST") or host
    port = env.get("TVM_TRACKER_PORT") or port
    if tracker:
        host, sep, p = tracker.rpartition(":")
        if not sep or not host:
            raise OpscopeError(f"rpc: tracker {tracker!r}: expected HOST:PORT")
        port = p
    try:
        port = int(port)
    except (TypeError, ValueError):
        raise OpscopeError(f"rpc: tracker port {port!r} is not a number") from None
    key = key or env.get("OPSCOPE_RPC_KEY") or table.get("key", "")
    for name in ("boards", "retries", "request_timeout_s"):
        if name in table and name not in fields:
            fields[name] = table[name]
    return RpcConfig(key=key, tracker_host=host, tracker_port=port, **fields)


def boards_registered(config: RpcConfig) -> int:
    """How many boards are registered under the key (free or busy) at the tracker."""
    from tvm import rpc

    where = f"{config.tracker_host}:{config.tracker_port}"
    try:  # TVM's own connect retries for a minute; find out at once whether anything listens
        socket.create_connection((config.tracker_host, config.tracker_port), timeout=5).close()
    except OSError as exc:
        raise OpscopeError(f"rpc: cannot reach the tracker at {where}: {exc.strerror or exc}") from None
    try:
        tracker = rpc.connect_tracker(config.tracker_host, config.tracker_port)
        summary = tracker.summary()
        tracker.close()
    except Exception as exc:  # socket errors, TVM errors: one line naming the tracker
        raise OpscopeError(f"rpc: cannot reach the tracker at {config.tracker_host}:{config.tracker_port}: "
                           f"{exc}") from None
    keys = [str(s.get("key", "")) for s in summary.get("server_info", [])]
    return sum(1 for k in keys if k == config.key or k.startswith(config.key + ":") or
               k.split(":")[-1] == config.key)


class _BoardLost(Exception):
    """The session broke before its time limit: the board dropped out (or the kernel killed it)."""


class RpcRunner(Runner):
    """Times built kernels on the farm's boards; see the module docstring."""

    def __init__(self, config: RpcConfig, device: str = "cpu"):
        self.config = config
        self.device = device
        self.lost_sessions = 0  # sessions that broke (boards that dropped out, killed servers)
        self._slots: int | None = None

    # -- one measurement on one board -------------------------------------------------------------
    def _measure(self, job: RunJob, deadline_s: float) -> RunResult:
        from tvm import rpc

        from opscope.collector import timing

        t0 = time.monotonic()
        try:
            tracker = rpc.connect_tracker(self.config.tracker_host, self.config.tracker_port)
            # the tracker queues a request until a board is free: bound the wait
            tracker._sock.settimeout(self.config.request_timeout_s)
            try:
                sess = tracker.request(self.config.key, priority=1,
                                       session_timeout=max(1, int(deadline_s + 0.999)), max_retry=2)
            finally:
                tracker.close()
        except Exception as exc:  # no board answered: retry elsewhere (the caller decides)
            raise _BoardLost(f"no session from the tracker: {str(exc).splitlines()[0][:200]}") from None
        t_sess = time.monotonic()
        try:
            sess.upload(job.artifact)
            mod = sess.load_module(os.path.basename(job.artifact))
            dev = sess.cuda(0) if self.device == "cuda" else sess.cpu(0)
            if self.device == "cpu":
                sess.get_function("runtime.config_threadpool")(_BIG_CORES, job.threads)
            threads = int(sess.get_function("runtime.NumThreads")()) if self.device == "cpu" else 1
            if self.device == "cpu" and threads != job.threads:
                return RunResult("run_error", threads=job.threads, wall_s=time.monotonic() - t0,
                                 error=f"the board runs {threads} threads, not {job.threads}: start its "
                                       f"rpc_server with TVM_NUM_THREADS=<its cores>")
            ref = None
            if job.reference:
                sess.upload(job.reference)
                ref = sess.load_module(os.path.basename(job.reference))
            reply = timing.measure(mod, job.args, asdict(job.protocol), dev, reference=ref,
                                   cpu=self.device == "cpu")
            if reply["status"] != "ok":
                return RunResult(reply["status"], error=reply["error"], threads=threads,
                                 wall_s=time.monotonic() - t0)
            lat = tuple(reply["latencies_s"])
            return RunResult("ok", latencies_s=lat, threads=threads, wall_s=time.monotonic() - t0)
        except Exception as exc:  # decide below: timeout, lost board, or the kernel's own error
            elapsed = time.monotonic() - t_sess
            msg = str(exc).strip().splitlines()
            text = next((ln for ln in reversed(msg) if ln.strip()), type(exc).__name__)[:300]
            if elapsed >= deadline_s * 0.95:
                return RunResult("timeout", error=f"the session ran past its {deadline_s:.1f} s limit and was "
                                 f"closed by the board ({text})", threads=job.threads, wall_s=time.monotonic() - t0)
            if not _alive(sess):
                raise _BoardLost(text) from None
            return RunResult("run_error", error=f"{type(exc).__name__}: {text}", threads=job.threads,
                             wall_s=time.monotonic() - t0)
        finally:
            del sess

    @property
    def parallel_slots(self) -> int:
        """How many jobs the farm measures at once: the boards under the key (asked once)."""
        if self._slots is None:
            self._slots = self.config.boards or max(1, boards_registered(self.config))
        return self._slots

    # -- a batch over the farm ----------------------------------------------------------------------
    def run(self, batch: Sequence[RunJob]) -> list[RunResult]:
        from opscope.collector.local_runner import job_deadline

        if not batch:
            return []
        boards = self.config.boards or boards_registered(self.config)
        if boards == 0:
            raise OpscopeError(f"rpc: no board is registered under key {self.config.key!r} at "
                               f"{self.config.tracker_host}:{self.config.tracker_port}")
        results: list[RunResult | None] = [None] * len(batch)
        todo: queue.Queue = queue.Queue()
        for i in range(len(batch)):
            todo.put((i, 0, ()))
        lock = threading.Lock()
        left = [len(batch)]

        def board_loop() -> None:
            while True:
                with lock:
                    if left[0] == 0:
                        return
                try:
                    i, attempt, errors = todo.get(timeout=0.2)
                except queue.Empty:
                    continue
                job = batch[i]
                try:
                    res = self._measure(job, job_deadline(job))
                except _BoardLost as lost:
                    with lock:
                        self.lost_sessions += 1
                    errors = (*errors, str(lost))
                    if attempt < self.config.retries:
                        todo.put((i, attempt + 1, errors))
                        continue
                    res = RunResult("crash", error=("board lost on every try: " + " | ".join(errors))[:600],
                                    threads=job.threads)
                with lock:
                    results[i] = res
                    left[0] -= 1

        workers = [threading.Thread(target=board_loop, daemon=True) for _ in range(min(boards, len(batch)))]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        return [r if r is not None else RunResult("run_error", error="not measured") for r in results]


def _alive(sess: Any) -> bool:
    try:
        sess.get_function("runtime.NumThreads")
        return True
    except Exception:  # the connection is gone
        return False


def make_roles(spec: TargetSpec, options: Any = None) -> Any:
    """Sampler and builder here (the board's target, its cross compiler), runner on the farm."""
    from opscope.collector.local_builder import LocalBuilder
    from opscope.collector.ms_sampler import MetaScheduleSampler
    from opscope.collector.roles import RoleOptions, Roles
    from opscope.collector.rpc_builder import cross_compiler
    from opscope.targets import tvm_target, tvm_target_dict

    options = options or RoleOptions()
    config = getattr(options, "rpc", None) or rpc_config(spec)
    compiler = cross_compiler(spec)
    kind = (spec.tvm_target or {}).get("kind")
    if kind == "cuda":
        from opscope.collector.cuda import cuda_target, cuda_target_dict

        target, target_dict = cuda_target(spec), cuda_target_dict(spec)
    else:
        target, target_dict = tvm_target(spec), tvm_target_dict(spec)
    return Roles(
        sampler=MetaScheduleSampler(target),
        builder=LocalBuilder(target_dict, options.build_workers, options.build_timeout_s, cross_compiler=compiler),
        runner=RpcRunner(config, device="cuda" if kind == "cuda" else "cpu"),
        tvm_target=target,
    )
