"""Runner on this machine: one long-lived measuring worker process per (threads, pinning).

The thread count is fixed when the worker starts (``TVM_NUM_THREADS`` in its environment, read when
TVM's thread pool starts); pinning sets ``TVM_BIND_THREADS=1``.  A worker that dies while running a
kernel yields a ``crash`` result; one that does not answer within the job's time limit is killed
and yields ``timeout``.  Either way the next job gets a fresh worker.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import asdict

from opscope.collector.process import EOF, LineProcess, worker_env
from opscope.collector.roles import RunJob, Runner, RunResult

#: how long a fresh worker may take to import TVM (the machine may be busy)
STARTUP_TIMEOUT_S = 180.0


class _Worker(LineProcess):
    """``python -m opscope.collector.worker`` with ``threads`` TVM threads (pinned or not)."""

    module = "opscope.collector.worker"
    label = "measuring worker"
    #: further environment variables of the worker process
    env_extra: dict[str, str] = {}

    def __init__(self, threads: int, pinned: bool):
        super().__init__([sys.executable, "-m", self.module], worker_env(threads, pinned, **self.env_extra),
                         self.label, STARTUP_TIMEOUT_S)
        self.threads = int(self.hello["threads"])


def job_deadline(job: RunJob) -> float:
    """Seconds a job may take: its timeout plus the time the protocol itself asks for."""
    p = job.protocol
    return job.timeout_s + (p.repeat * (p.min_repeat_ms + p.cooldown_ms)) / 1000.0


class LocalRunner(Runner):
    #: the measuring-worker process class (the CUDA runner swaps in its own)
    worker_class: type = _Worker

    def __init__(self) -> None:
        self._workers: dict[tuple[int, bool], _Worker] = {}
        self.restarts = 0

    def _worker(self, threads: int, pinned: bool) -> _Worker:
        key = (threads, pinned)
        w = self._workers.get(key)
        if w is None or w.proc.poll() is not None:
            if w is not None:
                w.kill()
                self.restarts += 1
            w = self._workers[key] = self.worker_class(threads, pinned)
        return w

    def _drop(self, threads: int, pinned: bool) -> None:
        w = self._workers.pop((threads, pinned), None)
        if w is not None:
            w.kill()
            self.restarts += 1

    def run_one(self, job: RunJob) -> RunResult:
        w = self._worker(job.threads, job.pinned)
        request = {"artifact": job.artifact, "args": [[list(s), d] for s, d in job.args],
                   "protocol": asdict(job.protocol), "reference": job.reference}
        t0 = time.perf_counter()
        try:
            w.send(request)
        except (BrokenPipeError, OSError):
            self._drop(job.threads, job.pinned)
            return RunResult("crash", error="the measuring worker had exited", threads=job.threads)
        limit = job_deadline(job)
        reply = w.read(limit)
        wall = time.perf_counter() - t0
        if reply is None:
            self._drop(job.threads, job.pinned)
            return RunResult("timeout", error=f"no result after {limit:.1f} s; worker killed",
                             threads=w.threads, wall_s=wall)
        if reply is EOF:
            exited = w.exit_status()
            tail = w.stderr_tail()
            self._drop(job.threads, job.pinned)
            return RunResult("crash", error=f"worker died (exit status {exited}): {tail}"[:600],
                             threads=w.threads, wall_s=wall)
        return RunResult(
            status=reply["status"], latencies_s=tuple(reply.get("latencies_s", ())),
            error=reply.get("error", ""), threads=int(reply["threads"]), wall_s=wall,
        )

    def run(self, batch: Sequence[RunJob]) -> list[RunResult]:
        return [self.run_one(job) for job in batch]

    def replica(self) -> LocalRunner:
        return type(self)()

    def close(self) -> None:
        for key in list(self._workers):
            self._workers.pop(key).close()
