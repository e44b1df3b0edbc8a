"""The collector: sample schedules, build, measure in isolation, sweep threads, write records.

Imported lazily: ``import opscope.collector`` does not load TVM.
"""

from __future__ import annotations

from opscope.lazy import lazy_exports

_API = {
    "collect": "opscope.collector.sweep",
    "parse_threads": "opscope.collector.sweep",
    "select_operators": "opscope.collector.sweep",
    "Protocol": "opscope.store.protocol",
    "Candidate": "opscope.collector.roles",
    "Built": "opscope.collector.roles",
    "RunJob": "opscope.collector.roles",
    "RunResult": "opscope.collector.roles",
    "ScheduleSampler": "opscope.collector.roles",
    "Builder": "opscope.collector.roles",
    "Runner": "opscope.collector.roles",
    "Roles": "opscope.collector.roles",
    "RoleOptions": "opscope.collector.roles",
    "make_roles": "opscope.collector.registry",
}

__all__ = list(_API)


__getattr__ = lazy_exports(__name__, _API)
