"""The build worker for boards: the collector's build-worker protocol, linking with a cross compiler.

Started by ``CrossBuilder`` as ``python -m opscope.collector.rpc_build_worker`` with
``OPSCOPE_CROSS_COMPILER`` in its environment (empty: the host's compiler).  Requests and answers
are those of ``opscope.collector.build_worker``: ``{"module_json", "target", "out"}`` in,
``{"error", "build_s"}`` out, one JSON line each.
"""

from __future__ import annotations

import json
import os
import sys
import time


def main() -> int:
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # compiler chatter goes to stderr, not into the answer stream
    import tvm
    from tvm.support import cc

    compiler = os.environ.get("OPSCOPE_CROSS_COMPILER", "")
    fcompile = cc.cross_compiler(compiler) if compiler else None
    out.write(json.dumps({"ready": True, "cross_compiler": compiler}) + "\n")
    for line in sys.stdin:
        req = json.loads(line)
        t0 = time.perf_counter()
        error = ""
        try:
            ex = tvm.compile(tvm.ir.load_json(req["module_json"]), tvm.target.Target(req["target"]))
            ex.export_library(req["out"], fcompile=fcompile)
        except Exception as exc:  # the build error is data: the builder records a build_error
            lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
            error = f"{type(exc).__name__}: {(lines[-1] if lines else '')[:500]}"
        out.write(json.dumps({"error": error, "build_s": time.perf_counter() - t0}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
