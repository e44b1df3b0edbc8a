"""Builder on this machine: a pool of build worker processes (``tvm.compile`` + ``export_library``).

The workers (``python -m opscope.collector.build_worker``) start once and serve every batch; work
is handed to whichever is free.  A build that raises is a ``Built`` with the error message; a
worker that dies or runs past ``timeout_s`` gives a build error for that candidate and is replaced.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from opscope.collector.roles import Builder, Built, Candidate
from opscope.errors import OpscopeError

STARTUP_TIMEOUT_S = 180.0


class _BuildProc:
    def __init__(self, cross_compiler: str | None = None) -> None:
        env = dict(os.environ, OPSCOPE_CROSS_COMPILER=cross_compiler or "")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "opscope.collector.build_worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
        )
        self.buf = b""
        self.job: tuple[int, float] | None = None  # (index in batch, start time)

    def fd(self) -> int:
        return self.proc.stdout.fileno()

    def feed(self) -> dict | None | bool:
        """Read what is there: a reply dict when a line is complete, False on EOF, None otherwise."""
        chunk = os.read(self.fd(), 65536)
        if not chunk:
            return False
        self.buf += chunk
        if b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            return json.loads(line)
        return None

    def send(self, req: dict) -> None:
        self.proc.stdin.write((json.dumps(req) + "\n").encode())
        self.proc.stdin.flush()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for s in (self.proc.stdin, self.proc.stdout):
            try:
                s.close()
            except OSError:
                pass


class LocalBuilder(Builder):
    """A pool of build workers; ``cross_compiler`` links the kernels for another machine (boards)."""

    def __init__(self, target: dict[str, Any], workers: int | None = None, timeout_s: float = 120.0,
                 cross_compiler: str | None = None):
        self.target = dict(target)
        self.cross_compiler = cross_compiler
        self.workers = workers or max(1, min(2, os.cpu_count() or 1))
        self.timeout_s = timeout_s
        self._dir = tempfile.mkdtemp(prefix="opscope-build-")
        self._procs: list[_BuildProc] = []
        self._n = 0

    def _start(self) -> _BuildProc:
        p = _BuildProc(self.cross_compiler)
        ready, _, _ = select.select([p.fd()], [], [], STARTUP_TIMEOUT_S)
        hello = p.feed() if ready else None
        while hello is None and ready:
            ready, _, _ = select.select([p.fd()], [], [], STARTUP_TIMEOUT_S)
            hello = p.feed() if ready else None
        if not isinstance(hello, dict):
            p.kill()
            raise OpscopeError("the build worker did not start (python -m opscope.collector.build_worker)")
        return p

    def _pool(self) -> list[_BuildProc]:
        self._procs = [p for p in self._procs if p.proc.poll() is None]
        while len(self._procs) < self.workers:
            self._procs.append(self._start())
        return self._procs

    def build(self, batch: Sequence[Candidate]) -> list[Built]:
        results: list[Built | None] = [None] * len(batch)
        paths = []
        for _ in batch:
            self._n += 1
            paths.append(os.path.join(self._dir, f"k{self._n}.so"))
        todo = list(range(len(batch)))
        busy: list[_BuildProc] = []
        while todo or busy:
            for p in self._pool():
                if p.job is None and todo:
                    i = todo.pop(0)
                    p.send({"module_json": batch[i].module_json, "target": self.target, "out": paths[i]})
                    p.job = (i, time.monotonic())
                    busy.append(p)
            next_deadline = min(p.job[1] + self.timeout_s for p in busy)
            ready, _, _ = select.select([p.fd() for p in busy], [], [], max(0.0, next_deadline - time.monotonic()))
            for p in list(busy):
                i, t0 = p.job
                if p.fd() in ready:
                    reply = p.feed()
                    if reply is None:
                        continue
                    if reply is False:
                        results[i] = Built(batch[i], error="the build process crashed")
                        p.kill()
                    else:
                        err = reply["error"]
                        results[i] = Built(batch[i], artifact="" if err else paths[i], error=err,
                                           build_s=float(reply["build_s"]))
                elif time.monotonic() - t0 > self.timeout_s:
                    results[i] = Built(batch[i], error=f"build took longer than {self.timeout_s:.0f} s")
                    p.kill()
                else:
                    continue
                p.job = None
                busy.remove(p)
        return [r for r in results if r is not None]

    def discard(self, built: Sequence[Built]) -> None:
        """Delete the artifacts of ``built`` (they are measured)."""
        for b in built:
            if b.artifact and os.path.exists(b.artifact):
                os.remove(b.artifact)

    def close(self) -> None:
        for p in self._procs:
            try:
                p.proc.stdin.close()
                p.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass
            p.kill()
        self._procs = []
        shutil.rmtree(self._dir, ignore_errors=True)
