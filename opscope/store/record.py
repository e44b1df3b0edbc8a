"""One measurement: an immutable record, checked when built; statistics are derived from it.

``LatencyStats`` is the one place statistics of raw latencies are computed: the record's
properties, the store's DataFrame columns, the collector's re-measure rule and the co-run records
all read it.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from opscope.store.protocol import Protocol
from opscope.workloads.operator import Operator

STATUSES = ("ok", "wrong_result", "build_error", "run_error", "crash", "timeout")
#: default: TVM's default lowering; sampled: a random draw from MetaSchedule's space; searched: a
#: schedule tried by a search (its round in ``origin``); library: the same computation timed in a
#: library users would otherwise call (torch/oneDNN), no TVM schedule at all
SCHEDULE_KINDS = ("default", "sampled", "searched", "library")


@dataclass(frozen=True)
class LatencyStats:
    """Median, mean, min, sample standard deviation and coefficient of variation of raw latencies.

    Empty input gives NaN everywhere; one latency has a standard deviation of 0.
    """

    median_s: float
    mean_s: float
    min_s: float
    std_s: float
    cv: float

    @classmethod
    def of(cls, latencies_s: Any) -> LatencyStats:
        lat = [float(x) for x in latencies_s]
        if not lat:
            return cls(math.nan, math.nan, math.nan, math.nan, math.nan)
        mean = statistics.fmean(lat)
        std = statistics.stdev(lat) if len(lat) > 1 else 0.0
        return cls(statistics.median(lat), mean, min(lat), std, std / mean if mean else math.nan)

    def noisy(self, noisy_cv: float) -> bool:
        """True when the spread is above ``noisy_cv`` (never for no latencies)."""
        return bool(self.cv > noisy_cv)


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
    #: how the measurement came about, as sorted (name, value) pairs: () for default and sampled
    #: schedules, (("round", r), ("search", "evolutionary"), ...) for searched ones,
    #: (("library", "torch"), ("version", ...), ...) for library rows
    origin: tuple[tuple[str, Any], ...] = ()

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
        if isinstance(self.origin, dict):
            object.__setattr__(self, "origin", tuple(sorted(self.origin.items())))
        if not self.created_at:
            object.__setattr__(self, "created_at", now_utc())

    # -- derived statistics ---------------------------------------------------------------------
    @property
    def stats(self) -> LatencyStats:
        return LatencyStats.of(self.raw_latencies_s)

    @property
    def median_s(self) -> float:
        return self.stats.median_s

    @property
    def mean_s(self) -> float:
        return self.stats.mean_s

    @property
    def min_s(self) -> float:
        return self.stats.min_s

    @property
    def std_s(self) -> float:
        return self.stats.std_s

    @property
    def cv(self) -> float:
        return self.stats.cv

    @property
    def noisy(self) -> bool:
        return self.status == "ok" and self.stats.noisy(self.protocol.noisy_cv)

    def knobs_json(self) -> str:
        return json.dumps(dict(self.knobs), sort_keys=True)

    def origin_json(self) -> str:
        return json.dumps(dict(self.origin), sort_keys=True)
