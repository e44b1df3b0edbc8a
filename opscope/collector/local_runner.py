"""Runner on this machine: one long-lived measuring worker process per (threads, pinning).

The thread count is fixed when the worker starts (``TVM_NUM_THREADS`` in its environment, read when
TVM's thread pool starts); pinning sets ``TVM_BIND_THREADS=1``.  A worker that dies while running a
kernel yields a ``crash`` result; one that does not answer within the job's time limit is killed
and yields ``timeout``.  Either way the next job gets a fresh worker.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict

from opscope.collector.roles import RunJob, Runner, RunResult
from opscope.errors import OpscopeError

#: how long a fresh worker may take to import TVM (the machine may be busy)
STARTUP_TIMEOUT_S = 180.0

#: what ``_Worker.read`` returns when the worker closed its output (it died)
EOF: dict = {"eof": True}


class _Worker:
    def __init__(self, threads: int, pinned: bool):
        env = dict(os.environ)
        env["TVM_NUM_THREADS"] = str(threads)
        env.pop("OMP_NUM_THREADS", None)
        if pinned:
            env["TVM_BIND_THREADS"] = "1"
        else:
            env.pop("TVM_BIND_THREADS", None)
        self.log = tempfile.TemporaryFile(prefix="opscope-worker-")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "opscope.collector.worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, env=env,
        )
        self._buf = b""
        hello = self.read(STARTUP_TIMEOUT_S)
        if hello is None or hello is EOF or not hello.get("ready"):
            tail = self.stderr_tail()
            self.kill()
            raise OpscopeError(f"the measuring worker did not start: {tail or 'no output'}")
        self.threads = int(hello["threads"])

    def read(self, timeout_s: float) -> dict | None:
        """The next JSON line; None when ``timeout_s`` passes; ``EOF`` when the worker is gone."""
        deadline = time.monotonic() + timeout_s
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return EOF
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def send(self, request: dict) -> None:
        self.proc.stdin.write((json.dumps(request) + "\n").encode())
        self.proc.stdin.flush()

    def stderr_tail(self, n: int = 400) -> str:
        self.log.seek(0, os.SEEK_END)
        size = self.log.tell()
        self.log.seek(max(0, size - n))
        return self.log.read().decode(errors="replace").strip().replace("\n", " | ")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        self.log.close()


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
        except BrokenPipeError:
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
            try:
                exited = w.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                exited = None
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

    def close(self) -> None:
        for key in list(self._workers):
            w = self._workers.pop(key)
            try:
                w.proc.stdin.close()
                w.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass
            w.kill()
