"""Measuring workers: long-lived processes that load compiled kernels and run them on given cores.

Starting TVM costs seconds, so a ``WorkerPool`` keeps its workers alive between measurements and
re-configures them: ``configure`` confines every thread of the worker to its core set with
``os.sched_setaffinity`` (per thread id), then sets the TVM thread count and placement through
TVM's own thread-pool call (``runtime.config_threadpool`` with an explicit CPU list; mode "one
core per thread" when pinned, "threads share all the cores" when not).  The TVM pool is created at start-up with one thread per core of the
machine so that any later thread count fits.

Workers start together on a ``multiprocessing.Barrier`` (one barrier per group size, created with
the pool, so any subset of workers can meet) and time themselves with ``time.perf_counter``, which
reads the system-wide monotonic clock on Linux: start and end stamps from different workers are
comparable, which is how the makespan is measured.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import time
import traceback
from dataclasses import dataclass

from opscope.errors import OpscopeError

#: TVM AffinityMode values (src/runtime/threading_backend.h)
MODE_ONE_CORE_PER_THREAD = -2
MODE_SHARE_ALL_CORES = -3
#: a worker waiting this long at a barrier gives up (another worker failed before reaching it)
BARRIER_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class LoopResult:
    """(start, end) perf_counter stamps of each iteration a worker ran."""

    stamps: tuple[tuple[float, float], ...]


def _worker_main(conn, barriers, all_cores: tuple[int, ...], spin_count: int | None = None) -> None:
    os.environ["TVM_NUM_THREADS"] = str(len(all_cores))
    os.environ["TVM_BIND_THREADS"] = "1"
    if spin_count is not None:  # read once by TVM's thread pool when it starts
        os.environ["TVM_THREAD_POOL_SPIN_COUNT"] = str(spin_count)
    try:
        import tvm

        from opscope.collector import timing

        config = tvm.get_global_func("runtime.config_threadpool")
        config(MODE_SHARE_ALL_CORES, len(all_cores), [str(c) for c in all_cores])
        dev = tvm.cpu()
        kernels: dict[str, tuple] = {}
    except Exception as exc:  # report start-up failures to the parent instead of dying silently
        conn.send(("error", f"worker start-up failed: {exc}"))
        return
    conn.send(("ready", os.getpid()))

    def run_chain(ids):
        for kid in ids:
            f, args = kernels[kid]
            f(*args)

    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        cmd = msg[0]
        try:
            if cmd == "stop":
                conn.send(("ok", None))
                return
            if cmd == "load":
                _, kid, lib_path, arg_specs = msg
                if kid not in kernels:
                    lib = tvm.runtime.load_module(lib_path)
                    args = timing.random_args(arg_specs, timing.TIMING_SEED, dev)
                    kernels[kid] = (lib["main"], args)
                conn.send(("ok", None))
            elif cmd == "configure":
                _, cores, threads, pinned = msg
                _confine_process(cores)  # every thread, helpers included; TVM then places its own
                mode = MODE_ONE_CORE_PER_THREAD if pinned else MODE_SHARE_ALL_CORES
                config(mode, threads, [str(c) for c in cores])
                conn.send(("ok", None))
            elif cmd == "affinity":
                conn.send(("ok", _thread_affinities()))
            elif cmd == "loop":
                # warm up, meet the others, then iterate for `window_s` (at least `min_iters` times)
                _, ids, parties, warmup, window_s, min_iters = msg
                for _ in range(warmup):
                    run_chain(ids)
                if parties > 1:
                    barriers[parties].wait(BARRIER_TIMEOUT_S)
                stamps = []
                deadline = time.perf_counter() + window_s
                while True:
                    t0 = time.perf_counter()
                    run_chain(ids)
                    t1 = time.perf_counter()
                    stamps.append((t0, t1))
                    if t1 >= deadline and len(stamps) >= min_iters:
                        break
                conn.send(("ok", LoopResult(tuple(stamps))))
            elif cmd == "once":
                # `repeats` rounds of: meet the others, run the chain once
                _, ids, parties, warmup, repeats = msg
                for _ in range(warmup):
                    run_chain(ids)
                stamps = []
                for _ in range(repeats):
                    if parties > 1:
                        barriers[parties].wait(BARRIER_TIMEOUT_S)
                    t0 = time.perf_counter()
                    run_chain(ids)
                    stamps.append((t0, time.perf_counter()))
                conn.send(("ok", LoopResult(tuple(stamps))))
            else:
                conn.send(("error", f"unknown worker command {cmd!r}"))
        except Exception as exc:  # a failing kernel is data for the caller, not a dead worker
            conn.send(("error", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}\n"
                                f"{traceback.format_exc(limit=3)}"))


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
        ctx = mp.get_context("spawn")
        self._barriers = {k: ctx.Barrier(k) for k in range(2, n + 1)}
        self._conns = []
        self._procs = []
        for _ in range(n):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=_worker_main, args=(child, self._barriers, self.cores, spin_count),
                            daemon=True)
            p.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(p)
        for i in range(n):
            self._reply(i, start_timeout_s)
        self._loaded: list[set[str]] = [set() for _ in range(n)]

    # -- plumbing ---------------------------------------------------------------------------
    def _reply(self, i: int, timeout_s: float):
        conn, proc = self._conns[i], self._procs[i]
        if not conn.poll(timeout_s):
            self.close()
            raise WorkerError(f"worker {i} did not answer within {timeout_s:.0f} s")
        try:
            status, value = conn.recv()
        except EOFError:
            proc.join(timeout=5)
            code = proc.exitcode
            self.close()
            raise WorkerError(f"worker {i} died (exit code {code}); a script that starts a WorkerPool "
                              "must guard its top level with `if __name__ == '__main__':`") from None
        if status == "error":
            raise WorkerError(f"worker {i}: {value}")
        return value

    def call(self, i: int, *msg):
        self._conns[i].send(msg)
        return self._reply(i, self.command_timeout_s)

    def broadcast(self, calls: dict[int, tuple]) -> dict[int, object]:
        """Send each worker its command first, then collect the replies (so they run together)."""
        for i, msg in calls.items():
            self._conns[i].send(msg)
        out, first_error = {}, None
        for i in calls:
            try:
                out[i] = self._reply(i, self.command_timeout_s)
            except WorkerError as exc:  # collect every reply so no worker is left mid-protocol
                first_error = first_error or exc
        if first_error is not None:
            for b in self._barriers.values():
                b.reset()  # a worker that failed before the barrier left it broken
            raise first_error
        return out

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

    def close(self) -> None:
        for conn, p in zip(self._conns, self._procs):
            if p.is_alive():
                try:
                    conn.send(("stop",))
                except (BrokenPipeError, OSError):
                    pass
        for p in self._procs:
            p.join(timeout=2)
            if p.is_alive():  # acknowledged the stop but is slow to tear TVM down
                p.terminate()
                p.join(timeout=5)
        self._procs = []
        self._conns = []

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress(message: str) -> None:
    """One progress line on stderr."""
    print(message, file=sys.stderr, flush=True)
