"""Builder for boards: compile here for the board's target, link with the board's cross compiler.

The spec names the compiler in ``[extra] cross_compiler`` (for example ``aarch64-linux-gnu-g++`` or
``arm-linux-gnueabihf-g++`` for a pynq board's Cortex-A9); without one the kernels are linked with
the host's compiler, which is right when the board has this machine's architecture.  Builds run in
the collector's process pool (``LocalBuilder``); only the link step differs.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from opscope.collector.local_builder import LocalBuilder
from opscope.collector.roles import Built, Candidate
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


def _build_cross(module_json: str, target: dict[str, Any], out_path: str, compiler: str | None) -> tuple[str, float]:
    import tvm
    from tvm.support import cc

    t0 = time.perf_counter()
    mod = tvm.ir.load_json(module_json)
    try:
        ex = tvm.compile(mod, tvm.target.Target(target))
        if compiler:
            ex.export_library(out_path, fcompile=cc.cross_compiler(compiler))
        else:
            ex.export_library(out_path)
    except Exception as exc:  # the build error is data: the caller records a build_error
        lines = str(exc).strip().splitlines()
        msg = next((ln for ln in reversed(lines) if ln.strip()), type(exc).__name__)
        return f"{type(exc).__name__}: {msg[:500]}", time.perf_counter() - t0
    return "", time.perf_counter() - t0


class CrossBuilder(LocalBuilder):
    """``LocalBuilder`` whose link step uses the board's cross compiler."""

    def __init__(self, target: dict[str, Any], compiler: str | None, workers: int | None = None,
                 timeout_s: float = 120.0):
        super().__init__(target, workers, timeout_s)
        self.compiler = compiler

    def submit(self, batch: Sequence[Candidate]) -> Callable[[], list[Built]]:
        pool = self._get_pool()
        futures = []
        for cand in batch:
            self._n += 1
            path = os.path.join(self._dir, f"k{self._n}.so")
            try:
                fut = pool.submit(_build_cross, cand.module_json, self.target, path, self.compiler)
            except BrokenProcessPool:
                self._reset_pool()
                pool = self._get_pool()
                fut = pool.submit(_build_cross, cand.module_json, self.target, path, self.compiler)
            futures.append((cand, path, fut))
        return lambda: self._collect(futures)

    def _collect(self, futures: list) -> list[Built]:
        import concurrent.futures as cf

        out = []
        for cand, path, fut in futures:
            try:
                err, secs = fut.result(timeout=self.timeout_s)
            except cf.TimeoutError:
                self._reset_pool()
                out.append(Built(cand, error=f"build took longer than {self.timeout_s:.0f} s"))
                continue
            except (BrokenProcessPool, cf.CancelledError):
                self._reset_pool()
                out.append(Built(cand, error="the build process crashed"))
                continue
            out.append(Built(cand, artifact="" if err else path, error=err, build_s=secs))
        return out
