"""Builder for boards: compile here for the board's target, link with the board's cross compiler.

The spec names the compiler in ``[extra] cross_compiler`` (for example ``aarch64-linux-gnu-g++`` or
``arm-linux-gnueabihf-g++`` for a pynq board's Cortex-A9); without one the kernels are linked with
the host's compiler, which is right when the board has this machine's architecture.  Builds run in
the collector's pool of build workers (``LocalBuilder``); only the worker, and with it the link
step, differs (``opscope.collector.rpc_build_worker``).
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import time
from typing import Any

from opscope.collector.local_builder import STARTUP_TIMEOUT_S, LocalBuilder, _BuildProc
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


class _CrossBuildProc(_BuildProc):
    """A build worker process that links with ``compiler``."""

    def __init__(self, compiler: str | None) -> None:  # noqa: D107 - same fields as _BuildProc
        env = dict(os.environ, OPSCOPE_CROSS_COMPILER=compiler or "")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "opscope.collector.rpc_build_worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
        )
        self.buf = b""
        self.job = None


class CrossBuilder(LocalBuilder):
    """``LocalBuilder`` whose workers link with the board's cross compiler."""

    def __init__(self, target: dict[str, Any], compiler: str | None, workers: int | None = None,
                 timeout_s: float = 120.0):
        super().__init__(target, workers, timeout_s)
        self.compiler = compiler

    def _start(self) -> _BuildProc:
        p = _CrossBuildProc(self.compiler)
        hello = None
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while hello is None and time.monotonic() < deadline:
            ready, _, _ = select.select([p.fd()], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            hello = p.feed()
        if not isinstance(hello, dict):
            p.kill()
            raise OpscopeError("the build worker did not start (python -m opscope.collector.rpc_build_worker)")
        return p
