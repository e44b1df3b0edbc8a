"""Fake twins of the sampler, builder and runner: the whole pipeline without TVM or a device.

``FakeSampler`` gives a default and ``trials`` sampled candidates with stable ids;
``FakeBuilder`` "builds" them (failing those listed); ``FakeRunner`` returns latencies from a
formula, or a chosen status per schedule id, optionally sleeping to imitate real kernels.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence

from opscope.collector.roles import Builder, Built, Candidate, RunJob, Runner, RunResult, ScheduleSampler
from opscope.workloads.operator import Operator


class FakeSampler(ScheduleSampler):
    def candidates(self, op: Operator, trials: int, seed: int) -> list[Candidate]:
        out = [Candidate(op.key, "default", "default", "[]", (), "")]
        for i in range(trials):
            sid = "s" + hashlib.sha256(f"{op.key}/{seed}/{i}".encode()).hexdigest()[:16]
            knobs = (("tile_i_0", 2 ** (i % 5)), ("unroll", (0, 16, 64)[i % 3]))
            out.append(Candidate(op.key, sid, "sampled", f'[["Fake",{i}]]', knobs, ""))
        return out


class FakeBuilder(Builder):
    def __init__(self, fail: Sequence[str] = ()):
        self.fail = set(fail)
        self.built: list[str] = []

    def build(self, batch: Sequence[Candidate]) -> list[Built]:
        out = []
        for c in batch:
            self.built.append(c.schedule_id)
            if c.schedule_id in self.fail:
                out.append(Built(c, error="fake build failure"))
            else:
                out.append(Built(c, artifact=f"fake:{c.schedule_id}", build_s=0.001))
        return out


class FakeRunner(Runner):
    def __init__(self, status: dict[str, str] | None = None, delay_s: float = 0.0,
                 latency: Callable[[str, int], float] | None = None):
        self.status = dict(status or {})
        self.delay_s = delay_s
        self.latency = latency or (lambda sid, threads: (1 + int(sid[-2:], 16) / 64 if sid != "default" else 3)
                                   * 1e-3 / threads)
        self.jobs: list[RunJob] = []
        self.replicas: list[FakeRunner] = []

    def replica(self) -> FakeRunner:
        twin = FakeRunner(self.status, self.delay_s, self.latency)
        self.replicas.append(twin)
        return twin

    def run(self, batch: Sequence[RunJob]) -> list[RunResult]:
        out = []
        for job in batch:
            self.jobs.append(job)
            if self.delay_s:
                time.sleep(self.delay_s)
            sid = job.artifact.removeprefix("fake:")
            status = self.status.get(sid, "ok")
            if status != "ok":
                out.append(RunResult(status, error=f"fake {status}", threads=job.threads))
                continue
            base = self.latency(sid, job.threads)
            lat = tuple(base * (1 + 0.001 * k) for k in range(job.protocol.repeat))
            out.append(RunResult("ok", lat, threads=job.threads))
        return out
