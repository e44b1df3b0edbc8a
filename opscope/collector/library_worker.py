"""The library measuring worker: times torch calls (``opscope.collector.library`` cases).

Started by ``LibraryRunner`` with ``TVM_NUM_THREADS`` in its environment, the thread count it gives
torch (``torch.set_num_threads``; one inter-op thread), and ``OPSCOPE_LIBRARY_DEVICE`` (``cpu`` or
``cuda``: tensors on the GPU, ``torch.cuda.synchronize`` around each timed stretch, TF32 off).  One JSON request per line
(``{"artifact": case JSON, "protocol": {...}}``), one JSON reply per line, as the TVM worker; inputs
are seeded from the timing core's seed, the call runs under ``torch.inference_mode`` and is timed by
``timing.time_callable``.  A case whose output shape is not the one the request names (``out``) is
a ``run_error``: the library call would not compute the same thing.  Bundles carry this file and
start it as ``python library_worker.py`` from the bundle folder (``timing.py`` beside it).
"""

from __future__ import annotations

import json
import os
import sys

try:
    from opscope.collector import timing
except ImportError:  # in a bundle, on a device without opscope: timing.py sits beside this file
    import timing


def build_call(torch, case: dict, device: str = "cpu"):
    """(a no-argument callable running the case, its output shape)."""
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(timing.TIMING_SEED)
    dtype = getattr(torch, case["dtype"])

    def rand(shape):
        return (torch.rand(*shape, generator=gen, dtype=torch.float32) * 2 - 1).to(dtype).to(device)

    act = {"": None, "relu": F.relu, "relu6": F.relu6, "gelu": F.gelu}[case.get("act", "")]
    op = case["op"]
    x = rand(case["x"])
    if op == "conv2d":
        w = rand(case["w"])
        b = rand([case["w"][0]]) if case["bias"] else None

        def call():
            y = F.conv2d(x, w, b, case["stride"], case["padding"], case["dilation"], case["groups"])
            return act(y) if act else y
    elif op == "linear":
        k, n = case["w"]
        w = rand([n, k])  # torch's Linear layout: (out, in)
        b = rand([n]) if case["bias"] else None

        def call():
            y = F.linear(x, w, b)
            return act(y) if act else y
    elif op == "matmul":
        y_in = rand(case["y"])

        def call():
            y = torch.matmul(x, y_in)
            return act(y) if act else y
    elif op in ("max_pool2d", "avg_pool2d"):
        fn = F.max_pool2d if op == "max_pool2d" else F.avg_pool2d

        def call():
            return fn(x, case["kernel"], case["stride"], case["padding"])
    elif op == "softmax":
        def call():
            return torch.softmax(x, dim=-1)
    elif op == "layer_norm":
        n = case["x"][-1]
        w, b = (rand([n]), rand([n])) if case["affine"] else (None, None)

        def call():
            return F.layer_norm(x, [n], w, b)
    else:
        raise ValueError(f"unknown library case {op!r}")
    with torch.inference_mode():
        shape = list(call().shape)
    return call, shape


def handler(torch, device: str = "cpu"):
    sync = torch.cuda.synchronize if device == "cuda" else None

    def handle(req: dict) -> dict:
        if device == "cuda" and not torch.cuda.is_available():
            return {"status": "run_error", "error": "torch sees no CUDA device here"}
        case = json.loads(req["artifact"])
        call, shape = build_call(torch, case, device)
        want = case.get("out")
        if want and list(want) != shape:
            return {"status": "run_error", "error": f"torch computes shape {shape}, the operator {want}"}
        with torch.inference_mode():
            lat = timing.time_callable(call, req["protocol"], sync=sync)
        return {"status": "ok", "latencies_s": lat}
    return handle


def main() -> int:
    out, inp = timing.protocol_stream()
    import torch

    threads = int(os.environ.get("TVM_NUM_THREADS") or 1)
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process
        pass
    device = os.environ.get("OPSCOPE_LIBRARY_DEVICE", "cpu")
    if device == "cuda":  # true float32: no TF32 in cuBLAS or cuDNN
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        backend = "cuDNN/cuBLAS"
    else:
        backend = "oneDNN" if torch.backends.mkldnn.is_available() else "native"
    threads = torch.get_num_threads()
    out.write(json.dumps({"ready": True, "threads": threads, "torch": torch.__version__, "backend": backend}) + "\n")
    timing.serve(handler(torch, device), inp, out, {"threads": threads})
    return 0


if __name__ == "__main__":
    sys.exit(main())
