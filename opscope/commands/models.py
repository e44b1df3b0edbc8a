"""``opscope models``: the built-in model zoo, and the operators of one model.

Listing is instant: it imports neither torch nor TVM, and shows operator counts only for models
already in the workload cache (default parameters, batch 1, float32).  ``--detail`` imports the
models that are not cached yet; ``--show MODEL`` prints one model's operators.
"""

from __future__ import annotations

import argparse
import sys
import time

from opscope.errors import OpscopeError
from opscope.workloads import cache, zoo


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--detail", action="store_true",
                        help="import models not yet cached, to show their operator counts (slow)")
    parser.add_argument("--show", metavar="MODEL",
                        help="print the operators of MODEL (zoo name, .onnx or .csv path)")
    parser.add_argument("--batch", "--batch-size", dest="batch", type=int, default=1,
                        help="batch size for --show/--detail (default 1)")
    parser.add_argument("--dtype", default="float32", help="dtype for --show/--detail (default float32)")
    parser.add_argument("--param", "--set", dest="params", action="append", default=[], metavar="NAME=INT",
                        help="a zoo model parameter for --show, e.g. --param image_size=112 (repeatable; "
                             "--set is the old spelling)")
    parser.add_argument("--no-cache", action="store_true", help="import afresh, ignoring the workload cache")


def parse_params(items: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise OpscopeError(f"--param {item!r}: expected NAME=INT")
        try:
            out[key.strip()] = int(value)
        except ValueError:
            raise OpscopeError(f"--param {item!r}: {value!r} is not an integer") from None
    return out


def _counts(name: str, batch: int, dtype: str) -> str:
    entry = zoo.ZOO[name]
    key = cache.cache_key({"zoo": name, "params": dict(entry.defaults)}, batch, dtype)
    meta = cache.peek(key)
    if meta is None:
        return "-"
    ops = meta["operators"]
    kernels = sum(o["operator"]["count"] for o in ops)
    return f"{len(ops)} ops / {kernels} kernels"


def run(args: argparse.Namespace) -> int:
    from opscope.workloads import load_model

    if args.show:
        start = time.perf_counter()
        work = load_model(args.show, args.batch, args.dtype, use_cache=not args.no_cache, with_tir=False,
                          **parse_params(args.params))
        print_operators(work)
        print(f"# {work.name}: {len(work.operators)} distinct operators, {work.kernel_count} kernels, "
              f"{work.total_flops / 1e9:.3f} GFLOP, loaded in {time.perf_counter() - start:.2f} s", file=sys.stderr)
        return 0
    if args.params:
        raise OpscopeError("--param/--set applies to --show")
    print(f"{'model':13s} {'operators':24s} {'parameters (defaults)':56s} description")
    for name in zoo.list_models():
        entry = zoo.ZOO[name]
        counts = _counts(name, args.batch, args.dtype)
        if counts == "-" and args.detail:
            print(f"importing {name} ...", file=sys.stderr, flush=True)
            start, cpu = time.perf_counter(), time.process_time()
            work = load_model(name, args.batch, args.dtype, use_cache=not args.no_cache)
            print(f"  {name}: {time.perf_counter() - start:.1f} s wall, {time.process_time() - cpu:.1f} s CPU "
                  f"(torch.export + Relax import "
                  f"{work.params.get('import_s', 0):.1f} s, fuse + extract {work.params.get('extract_s', 0):.1f} s)",
                  file=sys.stderr, flush=True)
            counts = f"{len(work.operators)} ops / {work.kernel_count} kernels"
        params = " ".join(f"{k}={v}" for k, v in entry.defaults)
        print(f"{name:13s} {counts:24s} {params:56s} {entry.description}")
    if not args.detail:
        print("(operator counts shown for cached models; --detail imports the others)", file=sys.stderr)
    return 0


def print_operators(work) -> None:
    print(f"{'operator':52s} {'kind':22s} {'count':>5s} {'MFLOP':>10s}  tensors (role shape)")
    for op in work.operators:
        shapes = " ".join(f"{t.role[0]}{list(t.shape)}" for t in op.tensors)
        tag = f" [{op.attr('attention')}]" if op.attr("attention") else ""
        print(f"{op.name[:52]:52s} {op.kind + tag:22s} {op.count:5d} {op.flops / 1e6:10.3f}  {shapes}")
