"""The CUDA measuring worker: the collector's worker protocol, timing on ``tvm.cuda(0)``.

Started by ``CudaRunner`` as ``python -m opscope.collector.cuda_worker``.  One JSON request per
line on stdin, one JSON answer per line on the original stdout, exactly like
``opscope.collector.worker``; kernels run on the first GPU and ``time_evaluator`` times them with
CUDA events.  A CPU cache flush makes no sense on a GPU and is ignored.  Without a GPU every
request is answered with a ``run_error`` naming the problem.
"""

from __future__ import annotations

import json
import os
import sys
import time


def main() -> int:
    proto_out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything TVM or a kernel prints goes to stderr, not into the protocol stream
    import numpy as np
    import tvm

    from opscope.collector.worker import _measure

    dev = tvm.cuda(0)
    present = bool(dev.exist)
    proto_out.write(json.dumps({"ready": True, "threads": 1, "gpu": present}) + "\n")
    cache: dict = {}
    for line in sys.stdin:
        req = json.loads(line)
        req["protocol"] = dict(req["protocol"], flush_cache=False)
        t0 = time.perf_counter()
        if not present:
            reply = {"status": "run_error", "error": "no CUDA GPU is visible on this machine"}
        else:
            try:
                reply = _measure(req, cache, np, tvm, dev)
            except Exception as exc:  # a kernel's runtime error is data: report it, keep serving
                reply = {"status": "run_error", "error": f"{type(exc).__name__}: {str(exc).strip()[:500]}"}
        reply["threads"] = 1
        reply["wall_s"] = time.perf_counter() - t0
        proto_out.write(json.dumps(reply) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
