"""``opscope corun``: a model's independent branches, the chosen arrangement, predicted and measured makespans."""

from __future__ import annotations

import argparse
import os

from opscope.errors import OpscopeError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="zoo name or .onnx file")
    parser.add_argument("--target", default="host", help="target spec (a CPU; default: host)")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=INT",
                        help="model parameter, e.g. --param image_size=64 (repeatable)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--store", default=os.environ.get("OPSCOPE_STORE", "runs.db"),
                        help="SQLite store the co-run records are added to (default: $OPSCOPE_STORE or runs.db)")
    parser.add_argument("--no-store", action="store_true", help="do not write records")
    parser.add_argument("--max-regions", type=int, default=3, help="regions to measure (default: 3)")
    parser.add_argument("--cores", default=os.environ.get("OPSCOPE_CPUSET") or None,
                        help="cores to use, e.g. 0-3 or 0,2 (default: $OPSCOPE_CPUSET, else all allowed)")
    parser.add_argument("--interference", default=None, metavar="DIR|store",
                        help="interference model used to predict co-run latencies: a saved model directory, "
                             "or 'store' to fit one on the co-run records already in --store")
    parser.add_argument("--window-ms", type=float, default=300.0, help="measuring window per phase (default: 300)")
    parser.add_argument("--repeats", type=int, default=7, help="makespans measured per record (default: 7)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved rounds over all arrangements (default: 3)")
    parser.add_argument("--spin-count", type=int, default=None,
                        help="TVM_THREAD_POOL_SPIN_COUNT of the measuring workers (default: TVM's, 300000; "
                             "0 makes idle TVM threads sleep at once, which matters when tasks share cores)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def parse_cores(text: str) -> tuple[int, ...]:
    """``0-3,6`` -> (0, 1, 2, 3, 6); an OpscopeError names the bad part."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                if hi < lo:
                    raise ValueError
                out.extend(range(lo, hi + 1))
            else:
                out.append(int(part))
        except ValueError:
            raise OpscopeError(f"--cores: cannot read {part!r} (use a list like 0-3,6)") from None
    allowed = os.sched_getaffinity(0)
    bad = sorted(set(out) - allowed)
    if bad:
        shown = ", ".join(str(c) for c in bad[:8]) + (f" and {len(bad) - 8} more" if len(bad) > 8 else "")
        raise OpscopeError(f"--cores: {shown} not available to this process (allowed: {sorted(allowed)})")
    return tuple(sorted(set(out)))


def parse_params(items: list[str]) -> dict[str, int]:
    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise OpscopeError(f"--param {item!r}: expected KEY=INT")
        try:
            params[key.strip()] = int(value)
        except ValueError:
            raise OpscopeError(f"--param {item!r}: {value!r} is not an integer") from None
    return params


def _fit_on_store(store: str):
    """An interference model fitted on the co-run records of ``store``."""
    from pathlib import Path

    from opscope.corun.interference import InterferenceModel
    from opscope.corun.table import corun_frame

    if not Path(store).exists():
        raise OpscopeError(f"--interference store: {store} does not exist (run benchmarks/corun.py --store {store})")
    frame = corun_frame(store)
    if len(frame) < 20:
        raise OpscopeError(f"--interference store: {store} has {len(frame)} co-run rows, at least 20 are needed")
    return InterferenceModel().fit(frame)


def run(args: argparse.Namespace) -> int:
    from opscope.corun.interference import InterferenceModel
    from opscope.corun.measure import CorunProtocol
    from opscope.corun.plan import corun_model, format_region
    from opscope.edges import at_least

    at_least(args.max_regions, 1, "--max-regions")
    at_least(args.batch_size, 1, "--batch-size")
    if not args.no_store and os.path.exists(args.store):
        from opscope.store.sqlite import sniff_store

        # another program's database, or a damaged one, is refused before anything is measured
        sniff_store(args.store)
    if args.repeats < 1 or args.rounds < 1 or args.window_ms <= 0:
        raise OpscopeError("--repeats and --rounds must be >= 1 and --window-ms > 0")
    if args.spin_count is not None and args.spin_count < 0:
        raise OpscopeError(f"--spin-count must be >= 0, got {args.spin_count}")
    protocol = CorunProtocol(window_s=args.window_ms / 1e3, makespan_repeats=args.repeats,
                             spin_count=args.spin_count)
    model = None
    if args.interference == "store":
        model = _fit_on_store(args.store)
    elif args.interference:
        model = InterferenceModel.load(args.interference)
    cores = parse_cores(args.cores) if args.cores else None
    show = (lambda _msg: None) if args.quiet else None
    kwargs = {} if show is None else {"show": show}
    results = corun_model(args.model, target=args.target, store=None if args.no_store else args.store,
                          max_regions=args.max_regions, protocol=protocol, interference=model, cores=cores,
                          batch_size=args.batch_size, params=parse_params(args.param), rounds=args.rounds,
                          **kwargs)
    print(f"model {args.model} on {args.target}: {len(results)} region(s) with independent branches")
    for i, res in enumerate(results, 1):
        print()
        print(format_region(i, res))
    if not args.no_store:
        print(f"\nrecords added to {args.store} (tables corun_runs, corun_members)")
    return 0
