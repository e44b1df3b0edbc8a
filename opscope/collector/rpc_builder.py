"""The cross compiler that links kernels built here for a board.

The spec names the compiler in ``[extra] cross_compiler`` (for example ``aarch64-linux-gnu-g++`` or
``arm-linux-gnueabihf-g++`` for a pynq board's Cortex-A9); without one the kernels are linked with
the host's compiler, which is right when the board has this machine's architecture.  Builds run in
the collector's pool of build workers: ``LocalBuilder(..., cross_compiler=...)``.
"""

from __future__ import annotations

import shutil

from opscope.errors import OpscopeError
from opscope.targets.spec import TargetSpec


def cross_compiler(spec: TargetSpec) -> str | None:
    """The spec's ``[extra] cross_compiler``, checked to be on PATH; None when it names none."""
    name = (spec.extra or {}).get("cross_compiler")
    if name is None:
        return None
    if not isinstance(name, str) or not name.strip():
        raise OpscopeError(f"target {spec.name!r}: [extra] cross_compiler must be a compiler name, got {name!r}")
    if shutil.which(name) is None:
        raise OpscopeError(f"target {spec.name!r}: the cross compiler {name!r} named in [extra] cross_compiler "
                           "is not on PATH (install it, e.g. the g++-aarch64-linux-gnu package)")
    return name
