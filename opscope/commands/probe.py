"""``opscope probe``: measure peak FLOP/s and bandwidths, write ``<spec>-measured``.

Without ``--target``: this machine's CPU, written as ``host-measured``.  With a GPU spec
(``--target h200``): that GPU, here when this machine has it, or offline with ``--bundle DIR``
(then ``--results``/``--library`` with what the bundle wrote on the device).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=None,
                        help="spec file to write (default: <spec>-measured.toml in the user spec directory)")
    parser.add_argument("--gemm-size", type=int, default=None,
                        help="square GEMM size for the compute peak (default 512 on a CPU, 8192 on a GPU)")
    parser.add_argument("--target", default=None,
                        help="a GPU spec (h100, h200, a .toml) to probe instead of this machine's CPU")
    parser.add_argument("--copy-mib", type=int, default=1024, help="GPU: MiB copied for the bandwidth")
    parser.add_argument("--bundle", default=None, metavar="DIR",
                        help="GPU: write a probe bundle for an offline GPU to DIR instead of measuring here")
    parser.add_argument("--python", action="append", default=[], metavar="X.Y",
                        help="with --bundle: also carry tvm_ffi for this device Python version (repeatable)")
    parser.add_argument("--ffi-wheel", action="append", default=[], metavar="WHEEL",
                        help="with --bundle: a downloaded apache-tvm-ffi wheel for the matching --python")
    parser.add_argument("--results", default=None, help="GPU: the results file a probe bundle's run.py wrote")
    parser.add_argument("--library", default=None, help="GPU: the library.json a probe bundle's library.py wrote")
    parser.add_argument("--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    from opscope.errors import OpscopeError

    def say(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    if args.target is not None:
        return _run_gpu(args, say)
    if args.bundle or args.results or args.library:
        raise OpscopeError("--bundle, --results and --library probe a GPU: give its spec with --target (e.g. h200)")
    from opscope.collector.probe import measured_spec, run_probe
    from opscope.targets import detect_host, save_target, user_spec_dir

    gemm = 512 if args.gemm_size is None else args.gemm_size
    if gemm < 64 or gemm % 64:
        raise OpscopeError(f"--gemm-size must be a multiple of 64, got {gemm}")
    base = detect_host()
    result = run_probe(base, gemm, say)
    spec = measured_spec(base, result)
    out = Path(args.out) if args.out else user_spec_dir() / "host-measured.toml"
    save_target(spec, out)
    print(f"float32 peak {result.peak_fp32 / 1e9:.1f} GFLOP/s (nominal {base.peak_flops.get('float32', 0) / 1e9:.1f}); "
          + ", ".join(f"{lv.name} {lv.bandwidth_Bps / 1e9:.1f} GB/s" for lv in spec.memory)
          + f"; {result.seconds:.0f} s; wrote {out}")
    return 0


def _run_gpu(args: argparse.Namespace, say) -> int:
    from opscope.collector import gpu_probe
    from opscope.errors import OpscopeError
    from opscope.targets import load_target, save_target, user_spec_dir

    base = load_target(args.target)
    if base.kind != "gpu" or (base.tvm_target or {}).get("kind") != "cuda":
        raise OpscopeError(f"--target {args.target!r} is not a CUDA GPU spec (kind {base.kind!r}); "
                           "leave --target out to probe this machine's CPU")
    gemm = gpu_probe.DEFAULT_GEMM_N if args.gemm_size is None else args.gemm_size
    if args.copy_mib < 1:
        raise OpscopeError(f"--copy-mib must be at least 1, got {args.copy_mib}")
    if args.bundle and (args.results or args.library):
        raise OpscopeError("--bundle writes a probe bundle; --results/--library read what it brought back: "
                           "give one or the other")
    if args.bundle:
        info = gpu_probe.write_probe_bundle(base, args.bundle, gemm, args.copy_mib << 20, args.python,
                                            args.ffi_wheel, progress=not args.quiet)
        print(f"probe bundle {info.bundle_id} in {info.path}: {info.kernels} TVM kernels "
              f"({info.build_errors} build errors), {info.size_bytes / 1e6:.1f} MB")
        print(f"on the GPU: python {info.path}/run.py --out results.json && python {info.path}/library.py "
              f"--out library.json --gemm-size {gemm} --copy-mib {args.copy_mib} ; then here: opscope probe "
              f"--target {base.name} --results results.json --library library.json")
        return 0
    if args.results or args.library:
        result = gpu_probe.result_from_files(args.results, args.library)
    else:
        result = gpu_probe.run_local(base, gemm, args.copy_mib << 20, say)
    spec = gpu_probe.measured_gpu_spec(base, result)
    out = Path(args.out) if args.out else user_spec_dir() / f"{spec.name}.toml"
    save_target(spec, out)
    print(", ".join(f"{dt} {result.peak(dt) / 1e12:.1f} TFLOP/s (nominal {base.peak_flops.get(dt, 0) / 1e12:.1f})"
                    for dt in result.gemm_flops)
          + f"; {base.memory[-1].name} {result.bandwidth / 1e12:.2f} TB/s (nominal "
            f"{base.memory[-1].bandwidth_Bps / 1e12:.2f}); wrote {out}")
    return 0
