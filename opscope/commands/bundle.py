"""``opscope bundle``: compile a model's sampled schedules into an offline bundle for a device."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="zoo model name(s), comma separated, or an .onnx file")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=INT",
                        help="zoo model parameter, e.g. image_size=64 (repeatable)")
    parser.add_argument("--target", default="host",
                        help="cuda, host, or a CPU/GPU spec name or .toml path (what the kernels are built for)")
    parser.add_argument("--mcpu", default=None,
                        help="CPU the kernels are built for (default for host: x86-64-v3, any AVX2 CPU; "
                             "'native' for this machine's CPU as it really is: the features /proc/cpuinfo hides are "
                             "turned off)")
    parser.add_argument("--arch", default=None, help="CUDA arch for --target cuda (default sm_90)")
    parser.add_argument("--trials", type=int, default=16, help="sampled schedules per operator (plus the default)")
    parser.add_argument("--threads", default="1", help="thread counts the device measures, e.g. 1,2,4,8,16")
    parser.add_argument("--out", required=True, help="the bundle folder to write (must not exist or be empty)")
    parser.add_argument("--ops", default=None, help="operator kinds or names to keep, e.g. conv2d,dense")
    parser.add_argument("--max-ops", type=int, default=None, help="keep this many operators per model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per measurement on the device")
    parser.add_argument("--flush-cache", action="store_true", help="flush CPU caches before each repeat")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--number", type=int, default=1)
    parser.add_argument("--min-repeat-ms", type=int, default=20)
    parser.add_argument("--python", action="append", default=[], metavar="X.Y",
                        help="also carry tvm_ffi for this device Python version, e.g. 3.12 (repeatable; "
                             "downloaded with pip)")
    parser.add_argument("--ffi-wheel", action="append", default=[], metavar="WHEEL",
                        help="a downloaded apache-tvm-ffi wheel for the matching --python (no download)")
    parser.add_argument("--no-library", action="store_true",
                        help="no library rows (by default the device also times each operator a library covers "
                             "in torch, when it has torch)")
    parser.add_argument("--quiet", action="store_true", help="no progress line")


def run(args: argparse.Namespace) -> int:
    from opscope.bundle import write_bundle
    from opscope.collector import Protocol
    from opscope.collector.sweep import select_from_models
    from opscope.commands.collect import _params, _workload

    mcpu = args.mcpu  # "native" is this CPU as it really is (resolve_spec turns hidden features off)
    params = _params(args.param)
    protocol = Protocol(number=args.number, repeat=args.repeat, min_repeat_ms=args.min_repeat_ms,
                        flush_cache=args.flush_cache)
    names = [m.strip() for m in args.model.split(",") if m.strip()]
    operators = select_from_models(names, lambda name: _workload(name, params), args.ops, args.max_ops, args.quiet)
    info = write_bundle(operators, args.target, args.trials, args.out, threads=args.threads, seed=args.seed,
                        protocol=protocol, mcpu=mcpu, arch=args.arch, timeout_s=args.timeout,
                        pythons=args.python, ffi_wheels=args.ffi_wheel, progress=not args.quiet,
                        library=not args.no_library)
    print(f"bundle {info.bundle_id} in {info.path}: {info.operators} operators, {info.kernels} kernels "
          f"({info.build_errors} build errors), {info.library_rows} library entries, {info.size_bytes / 1e6:.1f} MB "
          f"(runtime {info.runtime_bytes / 1e6:.1f} MB)")
    print(f"on the device: python {info.path}/run.py --out results.json ; then here: "
          f"opscope import-results results.json --store runs.db")
    return 0
