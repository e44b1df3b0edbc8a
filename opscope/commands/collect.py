"""``opscope collect``: measure a model's operators under sampled schedules and thread counts."""

from __future__ import annotations

import argparse
import math
import os
import sys

from opscope.errors import OpscopeError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None,
                        help="zoo model name(s), comma separated, or an .onnx file (or --space)")
    parser.add_argument("--space", default=None, metavar="default|edges|KIND[/BAND]:N,...",
                        help="operators drawn from distributions of real layers instead of (or beside) a model's: "
                             "'default' (the documented space for training this machine's predictor), 'edges' "
                             "(where the default space does not reach: real layers' widths, tiny operators, "
                             "batch-1 layers over large weights) or counts per kind, e.g. conv2d:200,dense/large:30 "
                             "(kinds: conv2d, depthwise_conv2d, dense, batch_matmul, pool, softmax; bands: nice, "
                             "small, large); --seed draws them; adaptive:N adds N operators near "
                             "those of --store that a predictor gets most wrong (after a first collection)")
    parser.add_argument("--space-onnx", action="append", default=[], metavar="FILE.onnx",
                        help="also fit the space's distributions to this ONNX model's layers (repeatable)")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="stop cleanly at a measurement boundary after this many minutes (run again to resume)")
    parser.add_argument("--workers", type=int, default=1,
                        help="separate measuring processes per measurement, one after another over each batch "
                             "(2+ shows and damps the noise between processes and runs; default 1)")
    parser.add_argument("--param", action="append", default=[], metavar="[MODEL.]KEY=INT",
                        help="zoo model parameter, e.g. image_size=64, seq_len=64 or mobilenet_v2.image_size=96 "
                             "(repeatable; a model without that parameter ignores it; MODEL. limits it to "
                             "one model and wins over the unqualified form)")
    parser.add_argument("--target", default="host")
    parser.add_argument("--trials", type=int, default=32,
                        help="sampled schedules per operator (plus the default); with --search, searched "
                             "schedules per operator and thread count")
    parser.add_argument("--search", choices=("evolutionary",), default=None,
                        help="search schedules (MetaSchedule's evolutionary search, every tried schedule stored "
                             "as 'searched') instead of sampling them")
    parser.add_argument("--cost-model", default="xgb", metavar="xgb|random|DIR",
                        help="the search's cost model: MetaSchedule's XGBoost model trained online (default), "
                             "random, or a saved opscope predictor directory")
    parser.add_argument("--per-round", type=int, default=16, help="schedules the search measures per round")
    parser.add_argument("--population", type=int, default=256, help="the evolutionary search's population")
    parser.add_argument("--no-library", action="store_true",
                        help="skip the library rows (torch/oneDNN timing of the same computation, stored as "
                             "'library' at every thread count)")
    parser.add_argument("--threads", default=os.environ.get("OPSCOPE_THREADS") or "1,2",
                        help="thread counts, e.g. 1,2 or all (default $OPSCOPE_THREADS, else 1,2)")
    parser.add_argument("--store", default=os.environ.get("OPSCOPE_STORE") or "runs.db",
                        help="SQLite store (created if absent; resumes; default $OPSCOPE_STORE, else runs.db)")
    parser.add_argument("--ops", default=None, help="operator kinds or names to keep, e.g. conv2d,dense")
    parser.add_argument("--max-ops", type=int, default=None,
                        help="keep this many operators per model (heaviest of each kind in turn)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per measurement before it is killed")
    parser.add_argument("--flush-cache", action="store_true", help="flush CPU caches before each repeat")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--number", type=int, default=1)
    parser.add_argument("--min-repeat-ms", type=int, default=20)
    parser.add_argument("--cooldown-ms", type=int, default=0)
    parser.add_argument("--noisy-cv", type=float, default=0.05, help="CV above which a measurement is noisy")
    parser.add_argument("--remeasure-noisy", action="store_true", help="measure again what was noisy")
    parser.add_argument("--remeasure-before", default=None, metavar="TIME",
                        help="measure again what was taken before this ISO 8601 time (UTC unless it says), "
                             "e.g. while the machine was busy; the old rows stay in the store")
    parser.add_argument("--pin", action="store_true", default=os.environ.get("OPSCOPE_PIN_THREADS") == "1",
                        help="pin worker threads to cores (TVM_BIND_THREADS; default from $OPSCOPE_PIN_THREADS)")
    parser.add_argument("--tracker", default=None, metavar="HOST:PORT",
                        help="TVM RPC tracker for board targets (default $TVM_TRACKER_HOST:$TVM_TRACKER_PORT)")
    parser.add_argument("--rpc-key", default=None, help="device key of the boards (default $OPSCOPE_RPC_KEY)")
    parser.add_argument("--overlap", action="store_true",
                        help="build the next batch while measuring (faster; the compiler then shares the CPU)")
    parser.add_argument("--quiet", action="store_true", help="no progress line")


def _params(items: list[str]) -> dict[str, int]:
    """``KEY=INT`` / ``MODEL.KEY=INT`` items -> {"KEY" or "MODEL.KEY": value}."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not value.strip().isdigit() or not key.strip():
            raise OpscopeError(f"--param {item!r}: expected KEY=INT or MODEL.KEY=INT")
        out[key.strip()] = int(value)
    return out


def model_params(name: str, params: dict[str, int], known: set[str]) -> dict[str, int]:
    """The parameters that apply to model ``name``: unqualified ones it knows, then its own."""
    chosen = {k: v for k, v in params.items() if "." not in k and k in known}
    for k, v in params.items():
        model, _, key = k.partition(".")
        if model == name and key:
            if key not in known:
                raise OpscopeError(f"--param {k}: model {name!r} has no parameter {key!r}")
            chosen[key] = v
    return chosen


def _workload(name: str, params: dict[str, int]):
    from opscope.workloads import load_model
    from opscope.workloads.zoo import ZOO

    if name in ZOO:
        return load_model(name, **model_params(name, params, {k for k, _ in ZOO[name].defaults}))
    return load_model(name)


def _measured_here(target: str) -> bool:
    """Whether ``target`` is measured on this machine's CPUs (not a GPU, not boards over RPC)."""
    from opscope.collector.registry import roles_module
    from opscope.targets import load_target

    return roles_module(load_target(target)) is None


def _adaptive_space(args: argparse.Namespace) -> list:
    """``--space adaptive:N``: N layers near the space operators of --store a predictor gets most wrong."""
    from opscope.store import load_dataframe
    from opscope.workloads.space import adaptive_layers

    text = args.space.strip().partition(":")[2]
    if not text.isdigit() or int(text) < 1:
        raise OpscopeError(f"--space {args.space!r}: expected adaptive:N with a positive count N")
    if not os.path.isfile(args.store):
        raise OpscopeError(f"--space adaptive needs the measurements of a first space collection in --store; "
                           f"{args.store} does not exist (collect --space default first)")
    frame = load_dataframe(args.store)
    frame = frame[frame["status"] == "ok"]
    if not args.quiet:
        print("fitting a predictor on the space operators measured so far, to find where it errs most ...",
              file=sys.stderr, flush=True)
    layers, worst = adaptive_layers(frame, int(text), seed=args.seed)
    if not args.quiet:
        print(f"{len(layers)} new layers near the {len(worst)} operators with the largest held-out error "
              f"(held-out error x{math.exp(worst['median_log_error'].min()):.2f} to "
              f"x{math.exp(worst['median_log_error'].max()):.2f})", file=sys.stderr)
    return layers


def _space_operators(space, args: argparse.Namespace) -> list:
    from opscope.workloads.space import space_operators

    def show(i: int, n: int) -> None:
        if not args.quiet and (i % 20 == 0 or i == n - 1):
            print(f"\rgenerating the space's operators: {i + 1}/{n}", end="", file=sys.stderr, flush=True)

    ops = space_operators(space, seed=args.seed, onnx_paths=args.space_onnx, progress=show)
    if not args.quiet:
        print(file=sys.stderr)
        for label, why in space_operators.skipped:
            print(f"space: left out {label}: {why}", file=sys.stderr)
    if args.ops:
        wanted = {s.strip() for s in args.ops.split(",")}
        ops = [o for o in ops if o.kind in wanted]
    return ops


def run(args: argparse.Namespace) -> int:
    from opscope.collector import Protocol, collect
    from opscope.collector.sweep import select_from_models
    from opscope.store import open_store

    if args.target == "rpc":
        raise OpscopeError("--target rpc needs the board's spec: --target rpc-aarch64, rpc-armv7, rpc-x86_64 or a "
                           "TOML with an [extra.rpc] table (opscope targets lists them)")
    from opscope.edges import at_least, thread_counts
    from opscope.store.sqlite import check_writable_store

    at_least(args.trials, 0, "--trials")
    at_least(args.workers, 1, "--workers")
    if not args.model and not args.space:
        raise OpscopeError("collect: give --model NAME[,NAME...] or --space default|KIND:N,...")
    if args.max_minutes is not None and not args.max_minutes > 0:
        raise OpscopeError(f"--max-minutes {args.max_minutes}: must be > 0")
    space = None
    if args.space and args.space.strip().startswith("adaptive:"):
        space = _adaptive_space(args)
    elif args.space:
        from opscope.workloads.space import parse_space

        space = parse_space(args.space)
    for path in args.space_onnx:
        if not os.path.isfile(path):
            raise OpscopeError(f"--space-onnx {path}: no such file")
    at_least(args.max_ops, 1, "--max-ops")
    at_least(args.repeat, 1, "--repeat")
    at_least(args.number, 1, "--number")
    if args.timeout <= 0:
        raise OpscopeError(f"--timeout {args.timeout}: must be > 0 seconds")
    if _measured_here(args.target):
        thread_counts(args.threads)
    remeasure_before = None
    if args.remeasure_before is not None:
        from opscope.collector.sweep import parse_moment

        remeasure_before = parse_moment(args.remeasure_before)
    search_config = None
    if args.search:
        from opscope.collector.search import SearchConfig

        at_least(args.trials, 1, "--trials")
        search_config = SearchConfig(trials=args.trials, per_round=args.per_round, population=args.population,
                                     cost_model=args.cost_model, seed=args.seed)
    check_writable_store(args.store)  # refused before the models load, and no new file left behind
    rpc = None
    if args.tracker or args.rpc_key:
        from opscope.collector.registry import roles_module
        from opscope.collector.rpc import rpc_config
        from opscope.targets import load_target

        spec = load_target(args.target)
        if roles_module(spec) != "opscope.collector.rpc":
            raise OpscopeError(f"--tracker/--rpc-key: target {spec.name!r} is not measured over RPC "
                               "(board specs have an [extra.rpc] table)")
        rpc = rpc_config(spec, key=args.rpc_key, tracker=args.tracker)
    params = _params(args.param)
    protocol = Protocol(number=args.number, repeat=args.repeat, min_repeat_ms=args.min_repeat_ms,
                        flush_cache=args.flush_cache, cooldown_ms=args.cooldown_ms, noisy_cv=args.noisy_cv,
                        workers=args.workers)
    names = [m.strip() for m in (args.model or "").split(",") if m.strip()]
    operators = select_from_models(names, lambda name: _workload(name, params), args.ops, args.max_ops, args.quiet)
    if space is not None:
        operators += _space_operators(space, args)
    with open_store(args.store) as store:
        before = store.count()
        records = collect(operators, target=args.target, trials=args.trials, threads=args.threads, store=store,
                          seed=args.seed, timeout_s=args.timeout, protocol=protocol, progress=not args.quiet,
                          remeasure_noisy=args.remeasure_noisy, remeasure_before=remeasure_before,
                          pinned=args.pin,
                          overlap=args.overlap, rpc=rpc, max_minutes=args.max_minutes, search=args.search,
                          search_config=search_config, library=not args.no_library)
        total = store.count()
    by_status: dict[str, int] = {}
    for r in records:
        by_status[r.status] = by_status.get(r.status, 0) + 1
    noisy = sum(r.noisy for r in records)
    print(f"{len(operators)} operators, {len(records)} new measurements "
          f"({', '.join(f'{k} {v}' for k, v in sorted(by_status.items())) or 'none'}), {noisy} noisy; "
          f"store {args.store} holds {total} (was {before})")
    return 0
