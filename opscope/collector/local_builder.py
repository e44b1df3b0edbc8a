"""Builder on this machine: a pool of build worker processes (``tvm.compile`` + ``export_library``).

The workers (``python -m opscope.collector.build_worker``) start once and serve every batch; work
is handed to whichever is free.  A build that raises is a ``Built`` with the error message; a
worker that dies or runs past ``timeout_s`` gives a build error for that candidate and is replaced.
"""

from __future__ import annotations

import os
import select
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from opscope.collector.process import EOF, LineProcess
from opscope.collector.roles import Builder, Built, Candidate

STARTUP_TIMEOUT_S = 180.0


class _BuildProc(LineProcess):
    """``python -m opscope.collector.build_worker``; ``job`` is (index in batch, start time)."""

    def __init__(self, cross_compiler: str | None = None) -> None:
        env = dict(os.environ, OPSCOPE_CROSS_COMPILER=cross_compiler or "")
        super().__init__([sys.executable, "-m", "opscope.collector.build_worker"], env, "build worker",
                         STARTUP_TIMEOUT_S, stderr="devnull")


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

    def _pool(self) -> list[_BuildProc]:
        self._procs = [p for p in self._procs if p.alive()]
        while len(self._procs) < self.workers:
            self._procs.append(_BuildProc(self.cross_compiler))
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
            ready, _, _ = select.select([p.fileno() for p in busy], [], [], max(0.0, next_deadline - time.monotonic()))
            for p in list(busy):
                i, t0 = p.job
                if p.fileno() in ready:
                    reply = p.feed()
                    if reply is None:
                        continue
                    if reply is EOF:
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
            p.close()
        self._procs = []
        shutil.rmtree(self._dir, ignore_errors=True)
