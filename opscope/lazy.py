"""Lazy public names for a package: ``import opscope.x`` stays cheap until a name is used.

Each package lists ``{public name: module that defines it}`` and gets its module-level
``__getattr__`` from :func:`lazy_exports`, so TVM, torch and friends load only when needed.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, api: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``api[name]`` on first use of ``name``."""

    def __getattr__(name: str) -> Any:
        if name in api:
            return getattr(importlib.import_module(api[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
