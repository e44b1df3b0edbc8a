"""Measurement protocols: frozen configs stored with every record, each checked when built.

- ``Protocol``: one kernel timed by the timing core (``opscope.collector.timing``).  TVM's
  ``time_evaluator`` runs one discarded warm-up call, then ``repeat`` repeats of ``number`` calls
  each (``number`` grows until a repeat lasts ``min_repeat_ms``), and returns one mean per repeat.
  With ``flush_cache`` the CPU caches are flushed before every repeat
  (``cache_flush_cpu_non_first_arg``), so only ``number=1`` makes every call cold.
  ``cooldown_ms`` sleeps between repeats.  A measurement whose coefficient of variation exceeds
  ``noisy_cv`` is flagged noisy and can be measured again (``remeasure_noisy``).
- ``CorunProtocol``: tasks run alone and together on core sets (``opscope.corun.measure``).
- ``VMProtocol``: a whole model timed in the Relax VM (``opscope.report.whole_model``).

They live beside the store's record because the record holds them; the collector, co-run and
report rooms import them from here.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields

from opscope.errors import OpscopeError


def _check_ints(what: str, obj: object, lows: dict[str, int]) -> None:
    """Each named field an int (not a bool) of at least its low bound, else one line naming it."""
    for name, low in lows.items():
        value = getattr(obj, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise OpscopeError(f"{what} field {name!r} must be an integer >= {low}, got {value!r}")


def _check_positive(what: str, obj: object, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise OpscopeError(f"{what} field {name!r} must be > 0, got {value!r}")


def _from_dict(cls, data: dict, what: str):
    unknown = sorted(set(data) - {f.name for f in fields(cls)})
    if unknown:
        raise OpscopeError(f"{what} has unknown fields {unknown}")
    return cls(**data)


#: Protocol fields added after the first stores were written, with their defaults
_ADDED_LATER = {"workers": 1}


@dataclass(frozen=True)
class Protocol:
    warmup: int = 1
    number: int = 1
    repeat: int = 5
    min_repeat_ms: int = 20
    flush_cache: bool = False
    cooldown_ms: int = 0
    noisy_cv: float = 0.05
    #: check the first sampled schedule of each operator against the default build
    check_first: bool = True
    #: separate measuring processes per measurement, each taking ``repeat`` repeats at another time (the
    #: record's raw latencies are theirs in turn); their disagreement is the noise between processes and
    #: runs, which repeats within one process do not show
    workers: int = 1

    def __post_init__(self) -> None:
        _check_ints("protocol", self, {"warmup": 0, "number": 1, "repeat": 1, "min_repeat_ms": 0, "cooldown_ms": 0,
                                       "workers": 1})
        _check_positive("protocol", self, ("noisy_cv",))

    def to_json(self) -> str:
        d = asdict(self)
        for name, default in _ADDED_LATER.items():  # absent at their default: older protocols keep their ids
            if d[name] == default:
                del d[name]
        return json.dumps(d, sort_keys=True)

    @property
    def protocol_id(self) -> str:
        """Stable id of the protocol (what a resumed collection compares)."""
        return "p" + hashlib.sha256(self.to_json().encode()).hexdigest()[:15]

    @classmethod
    def from_json(cls, text: str) -> Protocol:
        return _from_dict(cls, json.loads(text), "protocol")


@dataclass(frozen=True)
class CorunProtocol:
    """How a co-run is measured; stored with every co-run record."""

    warmup: int = 2
    window_s: float = 0.3
    #: the window is stretched to at least this many times the slowest task's alone latency
    window_factor: float = 8.0
    min_iters: int = 3
    makespan_repeats: int = 15
    #: the workers' TVM_THREAD_POOL_SPIN_COUNT (None: TVM's default); must match the pool's
    spin_count: int | None = None

    def __post_init__(self) -> None:
        _check_ints("co-run protocol", self, {"warmup": 0, "min_iters": 1, "makespan_repeats": 1})
        _check_positive("co-run protocol", self, ("window_s", "window_factor"))
        if self.spin_count is not None:
            _check_ints("co-run protocol", self, {"spin_count": 0})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> CorunProtocol:
        return _from_dict(cls, data, "co-run protocol")


@dataclass(frozen=True)
class VMProtocol:
    """How the whole model is timed: ``repeat`` repeats of ``number`` runs (grown to ``min_repeat_ms``)."""

    number: int = 1
    repeat: int = 5
    min_repeat_ms: int = 100
    timeout_s: float = 300.0
    #: instrumented runs after the timing, to see each kernel's time inside the model (0: none)
    profile_runs: int = 2
    #: separate measuring processes, one after the other; the latency is the median of all their repeats
    #: (processes disagree more than repeats do, as they do for operators)
    workers: int = 1

    def __post_init__(self) -> None:
        _check_ints("whole-model protocol", self, {"number": 1, "repeat": 1, "min_repeat_ms": 0, "profile_runs": 0,
                                                   "workers": 1})
        _check_positive("whole-model protocol", self, ("timeout_s",))

    def timing(self) -> dict:
        """The fields the timing core reads (no warm-up call: ``time_evaluator`` makes its own)."""
        return {"warmup": 0, "number": self.number, "repeat": self.repeat, "min_repeat_ms": self.min_repeat_ms,
                "cooldown_ms": 0, "flush_cache": False}
