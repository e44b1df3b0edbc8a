"""The collector: sample schedules, build, measure in isolation, sweep threads, write records.

Imported lazily: ``import opscope.collector`` does not load TVM.
"""

from __future__ import annotations

import importlib
from typing import Any

_API = {
    "collect": "opscope.collector.sweep",
    "parse_threads": "opscope.collector.sweep",
    "select_operators": "opscope.collector.sweep",
    "Protocol": "opscope.collector.protocol",
    "Candidate": "opscope.collector.roles",
    "Built": "opscope.collector.roles",
    "RunJob": "opscope.collector.roles",
    "RunResult": "opscope.collector.roles",
    "ScheduleSampler": "opscope.collector.roles",
    "Builder": "opscope.collector.roles",
    "Runner": "opscope.collector.roles",
    "Roles": "opscope.collector.registry",
    "RoleOptions": "opscope.collector.registry",
    "make_roles": "opscope.collector.registry",
}

__all__ = list(_API)


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'opscope.collector' has no attribute {name!r}")
