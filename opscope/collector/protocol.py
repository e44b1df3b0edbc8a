"""The measurement protocol: one frozen config stored with every record.

TVM's ``time_evaluator`` runs one discarded warm-up call, then ``repeat`` repeats of ``number`` calls
each (``number`` grows until a repeat lasts ``min_repeat_ms``), and returns one mean per repeat.
With ``flush_cache`` the CPU caches are flushed before every repeat
(``cache_flush_cpu_non_first_arg``), so only ``number=1`` makes every call cold.  ``cooldown_ms``
sleeps between repeats.  A measurement whose coefficient of variation exceeds ``noisy_cv`` is
flagged noisy and can be measured again (``remeasure_noisy``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from opscope.errors import OpscopeError


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

    def __post_init__(self) -> None:
        for name in ("warmup", "number", "repeat", "min_repeat_ms", "cooldown_ms"):
            value = getattr(self, name)
            low = 1 if name in ("number", "repeat") else 0
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise OpscopeError(f"protocol field {name!r} must be an integer >= {low}, got {value!r}")
        if not (self.noisy_cv > 0):
            raise OpscopeError(f"protocol field 'noisy_cv' must be > 0, got {self.noisy_cv!r}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @property
    def protocol_id(self) -> str:
        """Stable id of the protocol (what a resumed collection compares)."""
        return "p" + hashlib.sha256(self.to_json().encode()).hexdigest()[:15]

    @classmethod
    def from_json(cls, text: str) -> Protocol:
        data = json.loads(text)
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise OpscopeError(f"protocol has unknown fields {unknown}")
        return cls(**data)
