#!/usr/bin/env python3
"""Library figures for the GPU probe: PyTorch's GEMM (cuBLAS) and device-to-device copy, CUDA-event timed.

Standard library and torch only, so the same file runs here (``opscope probe`` on a machine with a
GPU) and on an offline GPU, where a probe bundle carries it as ``library.py``::

    python library.py --out library.json [--gemm-size 8192] [--copy-mib 1024]

Protocol: for each case, ``warmup`` untimed calls, then ``repeat`` timings of ``number`` back-to-back
calls between two CUDA events (per-call time = elapsed / number); float32 GEMMs run with TF32 off
(``torch.backends.cuda.matmul.allow_tf32 = False``), so they are true float32.  The output is one
JSON object: ``{"format": "opscope-gpu-library", "version": 1, "device": ..., "torch": ...,
"timings": [{"case": "gemm" | "copy", "dtype": ..., "size": n or bytes, "seconds": [...]}]}``.
"""

import argparse
import json
import sys

LIBRARY_FORMAT = "opscope-gpu-library"
LIBRARY_VERSION = 1
GEMM_DTYPES = ("float32", "float16", "bfloat16")


def _time(torch, fn, warmup, number, repeat):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    out = []
    for _ in range(repeat):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(number):
            fn()
        end.record()
        end.synchronize()
        out.append(start.elapsed_time(end) / 1000.0 / number)  # elapsed_time is in ms
    return out


def library_timings(gemm_size=8192, copy_bytes=1 << 30, dtypes=GEMM_DTYPES, warmup=3, number=5, repeat=5):
    """The timings object described in the module docstring, measured on ``cuda:0``."""
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("torch sees no CUDA GPU")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device("cuda:0")
    timings = []
    for name in dtypes:
        dtype = getattr(torch, name)
        a = torch.randn(gemm_size, gemm_size, device=dev).to(dtype)
        b = torch.randn(gemm_size, gemm_size, device=dev).to(dtype)
        c = torch.empty(gemm_size, gemm_size, device=dev, dtype=dtype)
        secs = _time(torch, lambda a=a, b=b, c=c: torch.matmul(a, b, out=c), warmup, number, repeat)
        timings.append({"case": "gemm", "dtype": name, "size": gemm_size, "seconds": secs})
        del a, b, c
    src = torch.empty(copy_bytes // 4, device=dev, dtype=torch.float32).uniform_()
    dst = torch.empty_like(src)
    secs = _time(torch, lambda: dst.copy_(src), warmup, number, repeat)
    timings.append({"case": "copy", "dtype": "float32", "size": copy_bytes, "seconds": secs})
    return {"format": LIBRARY_FORMAT, "version": LIBRARY_VERSION, "device": torch.cuda.get_device_name(0),
            "compute_capability": "{}.{}".format(*torch.cuda.get_device_capability(0)),
            "torch": torch.__version__, "cuda": torch.version.cuda, "timings": timings}


def main(argv=None):
    parser = argparse.ArgumentParser(description="Time PyTorch's GEMM and device copy on this GPU.")
    parser.add_argument("--out", default="library.json")
    parser.add_argument("--gemm-size", type=int, default=8192)
    parser.add_argument("--copy-mib", type=int, default=1024)
    args = parser.parse_args(argv)
    try:
        import torch  # noqa: F401
    except ImportError:
        print("library.py: needs torch with CUDA (python3 -m pip install torch)", file=sys.stderr)
        return 3
    try:
        result = library_timings(args.gemm_size, args.copy_mib << 20)
    except RuntimeError as exc:
        print(f"library.py: {str(exc).strip().splitlines()[0]}", file=sys.stderr)
        return 3
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=1)
    print(f"library.py: {len(result['timings'])} timings on {result['device']} written to {args.out}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
