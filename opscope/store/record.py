"""One measurement: an immutable record, checked when built; statistics are derived from it."""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from opscope.collector.protocol import Protocol
from opscope.workloads.operator import Operator

STATUSES = ("ok", "wrong_result", "build_error", "run_error", "crash", "timeout")
SCHEDULE_KINDS = ("default", "sampled")


def now_utc() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Record:
    op: Operator
    schedule_id: str
    schedule_kind: str
    trace_json: str
    #: schedule features as sorted (name, value) pairs; values are numbers or short strings
    knobs: tuple[tuple[str, Any], ...]
    threads: int
    target: str
    machine_id: str
    protocol: Protocol
    status: str
    error: str = ""
    raw_latencies_s: tuple[float, ...] = ()
    pinned: bool = False
    attempt: int = 0
    created_at: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"record status {self.status!r} not in {STATUSES}")
        if self.schedule_kind not in SCHEDULE_KINDS:
            raise ValueError(f"schedule kind {self.schedule_kind!r} not in {SCHEDULE_KINDS}")
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        lat = tuple(float(x) for x in self.raw_latencies_s)
        if any(not math.isfinite(x) or x <= 0 for x in lat):
            raise ValueError(f"latencies must be finite and positive, got {lat}")
        if self.status == "ok" and not lat:
            raise ValueError("an ok record needs at least one latency")
        object.__setattr__(self, "raw_latencies_s", lat)
        if isinstance(self.knobs, dict):
            object.__setattr__(self, "knobs", tuple(sorted(self.knobs.items())))
        if not self.created_at:
            object.__setattr__(self, "created_at", now_utc())

    # -- derived statistics ---------------------------------------------------------------------
    @property
    def median_s(self) -> float:
        return statistics.median(self.raw_latencies_s) if self.raw_latencies_s else math.nan

    @property
    def mean_s(self) -> float:
        return statistics.fmean(self.raw_latencies_s) if self.raw_latencies_s else math.nan

    @property
    def min_s(self) -> float:
        return min(self.raw_latencies_s) if self.raw_latencies_s else math.nan

    @property
    def std_s(self) -> float:
        lat = self.raw_latencies_s
        return statistics.stdev(lat) if len(lat) > 1 else (0.0 if lat else math.nan)

    @property
    def cv(self) -> float:
        return self.std_s / self.mean_s if self.raw_latencies_s else math.nan

    @property
    def noisy(self) -> bool:
        return self.status == "ok" and self.cv > self.protocol.noisy_cv

    def knobs_json(self) -> str:
        return json.dumps(dict(self.knobs), sort_keys=True)
