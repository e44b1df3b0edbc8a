"""The CUDA measuring worker: the collector's worker protocol, timing on ``tvm.cuda(0)``.

Started by ``CudaRunner`` as ``python -m opscope.collector.cuda_worker``.  One JSON request per
line on stdin, one JSON answer per line on the original stdout, exactly like
``opscope.collector.worker`` and through the same timing core; kernels run on the first GPU and
``time_evaluator`` times them with CUDA events.  A CPU cache flush makes no sense on a GPU and is
not done.  Without a GPU every request is answered with a ``run_error`` naming the problem.
"""

from __future__ import annotations

import json
import sys

from opscope.collector import timing


def main() -> int:
    out, inp = timing.protocol_stream()
    import tvm

    from opscope.collector.worker import handler

    dev = tvm.cuda(0)
    present = bool(dev.exist)
    out.write(json.dumps({"ready": True, "threads": 1, "gpu": present}) + "\n")
    if present:
        handle = handler(dev, cpu=False)
    else:
        def handle(_req: dict) -> dict:
            return {"status": "run_error", "error": "no CUDA GPU is visible on this machine"}
    timing.serve(handle, inp, out, {"threads": 1})
    return 0


if __name__ == "__main__":
    sys.exit(main())
