"""Measuring workers: long-lived processes that load compiled kernels and run them on given cores.

Starting TVM costs seconds, so a ``WorkerPool`` keeps its workers alive between measurements and
re-configures them: ``configure`` confines every thread of the worker to its core set with
``os.sched_setaffinity`` (per thread id), then sets the TVM thread count and placement through
TVM's own thread-pool call (``runtime.config_threadpool`` with an explicit CPU list; mode "one
core per thread" when pinned, "threads share all the cores" when not).  The TVM pool is created at
start-up with one thread per core of the machine so that any later thread count fits.

The workers are ``python -m opscope.corun.worker`` processes on the collector's worker plumbing
(``opscope.collector.process.LineProcess``: one JSON line per request and per reply) and load
their kernels' inputs with the timing core (``opscope.collector.timing``).  Tasks that run
together start at one moment: the pool warms every worker up, then sends each the same start time
on ``time.perf_counter``'s clock, which is the system-wide monotonic clock on Linux, and each
worker waits for it (sleeping, then spinning the last millisecond).  Start and end stamps from
different workers are comparable, which is how the makespan is measured.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from dataclasses import dataclass

from opscope.collector.process import EOF, LineProcess, WorkerStartError, worker_env
from opscope.errors import OpscopeError

#: TVM AffinityMode values (src/runtime/threading_backend.h)
MODE_ONE_CORE_PER_THREAD = -2
MODE_SHARE_ALL_CORES = -3
#: how far ahead of now a common start is set: time for every worker to read its request
START_MARGIN_S = 0.005


@dataclass(frozen=True)
class LoopResult:
    """(start, end) perf_counter stamps of each iteration a worker ran."""

    stamps: tuple[tuple[float, float], ...]


def _wait_until(start_at: float | None) -> None:
    if start_at is None:
        return
    left = start_at - time.perf_counter()
    if left > 0.002:
        time.sleep(left - 0.001)
    while time.perf_counter() < start_at:
        pass


def _handler(all_cores: tuple[int, ...]):
    """``request -> value`` for one worker; a request is a JSON list ``[command, *arguments]``."""
    import tvm

    from opscope.collector import timing

    config = tvm.get_global_func("runtime.config_threadpool")
    config(MODE_SHARE_ALL_CORES, len(all_cores), [str(c) for c in all_cores])
    dev = tvm.cpu()
    kernels: dict[str, tuple] = {}

    def run_chain(ids):
        for kid in ids:
            f, args = kernels[kid]
            f(*args)

    def handle(msg):
        cmd = msg[0]
        if cmd == "load":
            _, kid, lib_path, arg_specs = msg
            if kid not in kernels:
                lib = tvm.runtime.load_module(lib_path)
                args = timing.random_args([(tuple(s), d) for s, d in arg_specs], timing.TIMING_SEED, dev)
                kernels[kid] = (lib["main"], args)
            return None
        if cmd == "configure":
            _, cores, threads, pinned = msg
            _confine_process(cores)  # every thread, helpers included; TVM then places its own
            mode = MODE_ONE_CORE_PER_THREAD if pinned else MODE_SHARE_ALL_CORES
            config(mode, threads, [str(c) for c in cores])
            return None
        if cmd == "affinity":
            return _thread_affinities()
        if cmd == "warm":
            _, ids, warmup = msg
            for _ in range(warmup):
                run_chain(ids)
            return None
        if cmd == "loop":
            # from `start_at` (None: now), iterate for `window_s`, at least `min_iters` times
            _, ids, start_at, window_s, min_iters = msg
            _wait_until(start_at)
            stamps = []
            deadline = time.perf_counter() + window_s
            while True:
                t0 = time.perf_counter()
                run_chain(ids)
                t1 = time.perf_counter()
                stamps.append((t0, t1))
                if t1 >= deadline and len(stamps) >= min_iters:
                    break
            return stamps
        if cmd == "once":
            _, ids, start_at = msg
            _wait_until(start_at)
            t0 = time.perf_counter()
            run_chain(ids)
            return [t0, time.perf_counter()]
        raise OpscopeError(f"unknown worker command {cmd!r}")
    return handle


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    all_cores = tuple(int(c) for c in argv[0].split(","))
    from opscope.collector.timing import protocol_stream

    out, inp = protocol_stream()  # what TVM or a kernel prints cannot corrupt the replies
    try:
        handle = _handler(all_cores)
    except Exception as exc:  # report start-up failures to the parent instead of dying silently
        print(f"worker start-up failed: {exc}", file=sys.stderr, flush=True)  # the parent shows stderr's end
        out.write(json.dumps({"ready": False, "error": f"worker start-up failed: {exc}"}) + "\n")
        out.flush()
        return 1
    out.write(json.dumps({"ready": True, "pid": os.getpid()}) + "\n")
    out.flush()
    for line in inp:
        msg = json.loads(line)
        if msg[0] == "stop":
            out.write(json.dumps({"ok": None}) + "\n")
            out.flush()
            return 0
        try:
            reply = {"ok": handle(msg)}
        except Exception as exc:  # a failing kernel is data for the caller, not a dead worker
            reply = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}\n"
                              f"{traceback.format_exc(limit=3)}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()
    return 0


def _confine_process(cores) -> None:
    """Restrict every thread of this process to ``cores`` (os.sched_setaffinity works per thread)."""
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), cores)
        except OSError:  # the thread ended meanwhile
            continue


def _thread_affinities() -> dict[int, tuple[int, ...]]:
    """The allowed cores of every thread of this process (Linux), by thread id."""
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            out[int(tid)] = tuple(sorted(os.sched_getaffinity(int(tid))))
        except OSError:  # the thread ended meanwhile
            continue
    return out


class WorkerError(OpscopeError):
    """A worker failed a command (kernel crash, bad library, worker died)."""


class WorkerPool:
    """``n`` measuring workers on the cores ``cores`` (default: this process's allowed cores).

    ``spin_count`` sets ``TVM_THREAD_POOL_SPIN_COUNT`` in the workers: how long an idle TVM
    thread spins before it sleeps (None: TVM's default, 300000 iterations).  Spinning threads of
    one task steal the cores of another when they share cores; 0 makes them sleep at once.
    """

    def __init__(self, n: int, cores: tuple[int, ...] | None = None, start_timeout_s: float = 180.0,
                 command_timeout_s: float = 300.0, spin_count: int | None = None):
        if n < 1:
            raise OpscopeError(f"a worker pool needs at least one worker, got {n}")
        if spin_count is not None and spin_count < 0:
            raise OpscopeError(f"spin_count must be >= 0, got {spin_count}")
        self.spin_count = spin_count
        self.cores = tuple(sorted(cores if cores is not None else os.sched_getaffinity(0)))
        self.n = n
        self.command_timeout_s = command_timeout_s
        extra = {} if spin_count is None else {"TVM_THREAD_POOL_SPIN_COUNT": spin_count}  # read at TVM's start
        env = worker_env(len(self.cores), pinned=True, **extra)
        argv = [sys.executable, "-m", "opscope.corun.worker", ",".join(str(c) for c in self.cores)]
        self._procs: list[LineProcess] = []
        try:
            for i in range(n):
                self._procs.append(LineProcess(argv, env, f"co-run worker {i}", start_timeout_s))
        except WorkerStartError as exc:
            self.close()
            raise WorkerError(str(exc)) from None
        self._loaded: list[set[str]] = [set() for _ in range(n)]

    # -- plumbing ---------------------------------------------------------------------------
    def _send(self, i: int, msg) -> None:
        try:
            self._procs[i].send(list(msg))
        except (BrokenPipeError, OSError):
            pass  # the worker is gone: reading its reply says so

    def _reply(self, i: int, timeout_s: float):
        proc = self._procs[i]
        reply = proc.read(timeout_s)
        if reply is None:
            self.close()
            raise WorkerError(f"worker {i} did not answer within {timeout_s:.0f} s")
        if reply is EOF:
            code = proc.exit_status(5.0)
            tail = proc.stderr_tail()
            self.close()
            raise WorkerError(f"worker {i} died (exit code {code})" + (f": {tail}" if tail else ""))
        if "error" in reply:
            raise WorkerError(f"worker {i}: {reply['error']}")
        return reply["ok"]

    def call(self, i: int, *msg):
        self._send(i, msg)
        return self._reply(i, self.command_timeout_s)

    def broadcast(self, calls: dict[int, tuple]) -> dict[int, object]:
        """Send each worker its command first, then collect the replies (so they run together)."""
        for i, msg in calls.items():
            self._send(i, msg)
        out, first_error = {}, None
        for i in calls:
            try:
                out[i] = self._reply(i, self.command_timeout_s)
            except WorkerError as exc:  # collect every reply so no worker is left mid-protocol
                first_error = first_error or exc
                if not self._procs:  # the pool was closed: nobody else will answer
                    break
        if first_error is not None:
            raise first_error
        return out

    def _start(self) -> float:
        return time.perf_counter() + START_MARGIN_S

    # -- commands ---------------------------------------------------------------------------
    def load(self, i: int, kernel) -> None:
        if kernel.key not in self._loaded[i]:
            self.call(i, "load", kernel.key, kernel.lib_path, [(list(s), d) for s, d in kernel.args])
            self._loaded[i].add(kernel.key)

    def configure(self, i: int, cores: tuple[int, ...], threads: int, pinned: bool) -> None:
        bad = set(cores) - set(self.cores)
        if bad:
            raise OpscopeError(f"cores {sorted(bad)} are not available (this pool has {list(self.cores)})")
        self.call(i, "configure", list(cores), int(threads), bool(pinned))

    def affinity(self, i: int) -> dict[int, tuple[int, ...]]:
        """The allowed cores of every thread of worker ``i``, by thread id."""
        return {int(t): tuple(c) for t, c in self.call(i, "affinity").items()}

    def _warm(self, chains: dict[int, list[str]], warmup: int) -> None:
        if warmup:
            self.broadcast({i: ("warm", ids, warmup) for i, ids in chains.items()})

    def loop(self, chains: dict[int, list[str]], warmup: int, window_s: float, min_iters: int) -> dict[int, LoopResult]:
        """Each worker ``i`` warms up on its chain of kernels, then all start at one moment and
        iterate for ``window_s`` (at least ``min_iters`` times)."""
        self._warm(chains, warmup)
        start = self._start() if len(chains) > 1 else None
        got = self.broadcast({i: ("loop", ids, start, window_s, min_iters) for i, ids in chains.items()})
        return {i: LoopResult(tuple((t0, t1) for t0, t1 in v)) for i, v in got.items()}

    def once(self, chains: dict[int, list[str]], warmup: int, repeats: int) -> dict[int, LoopResult]:
        """``repeats`` rounds of: all workers start at one moment and run their chain once."""
        self._warm(chains, warmup)
        stamps: dict[int, list] = {i: [] for i in chains}
        for _ in range(repeats):
            start = self._start() if len(chains) > 1 else None
            for i, (t0, t1) in self.broadcast({i: ("once", ids, start) for i, ids in chains.items()}).items():
                stamps[i].append((t0, t1))
        return {i: LoopResult(tuple(v)) for i, v in stamps.items()}

    def close(self) -> None:
        for p in self._procs:
            if p.alive():
                try:
                    p.send(["stop"])
                except (BrokenPipeError, OSError):
                    pass
        for p in self._procs:
            p.close(timeout_s=5.0)  # acknowledged the stop but slow to tear TVM down: killed
        self._procs = []

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress(message: str) -> None:
    """One progress line on stderr."""
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
