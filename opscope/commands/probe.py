"""``opscope probe``: measure this machine's peak FLOP/s and bandwidths, write ``host-measured``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=None,
                        help="spec file to write (default: host-measured.toml in the user spec directory)")
    parser.add_argument("--gemm-size", type=int, default=512, help="square GEMM size for the compute peak")
    parser.add_argument("--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    from opscope.collector.probe import measured_spec, run_probe
    from opscope.errors import OpscopeError
    from opscope.targets import detect_host, save_target, user_spec_dir

    if args.gemm_size < 64 or args.gemm_size % 64:
        raise OpscopeError(f"--gemm-size must be a multiple of 64, got {args.gemm_size}")
    base = detect_host()

    def say(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    result = run_probe(base, args.gemm_size, say)
    spec = measured_spec(base, result)
    out = Path(args.out) if args.out else user_spec_dir() / "host-measured.toml"
    save_target(spec, out)
    print(f"float32 peak {result.peak_fp32 / 1e9:.1f} GFLOP/s (nominal {base.peak_flops.get('float32', 0) / 1e9:.1f}); "
          + ", ".join(f"{lv.name} {lv.bandwidth_Bps / 1e9:.1f} GB/s" for lv in spec.memory)
          + f"; {result.seconds:.0f} s; wrote {out}")
    return 0
