"""The measurement protocol now lives with the store's record: ``opscope.store.protocol``.

Kept so that ``from opscope.collector.protocol import Protocol`` goes on working.
"""

from __future__ import annotations

from opscope.store.protocol import Protocol

__all__ = ["Protocol"]
