"""``opscope adapt``: fit a predictor trained elsewhere to this machine with a probe and a few measurements."""

from __future__ import annotations

import argparse
import os
import sys

from opscope.errors import OpscopeError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--predictor", required=True, help="saved predictor trained on another machine")
    parser.add_argument("--model", default=None, help="zoo model name(s), comma separated, or an .onnx file")
    parser.add_argument("--space", default=None, metavar="default|KIND:N,...",
                        help="operators drawn from an operator space instead of (or beside) a model's (as collect)")
    parser.add_argument("--param", action="append", default=[], metavar="[MODEL.]KEY=INT",
                        help="zoo model parameter, as in collect (repeatable)")
    parser.add_argument("--ops", default=None, help="operator kinds or names to keep, e.g. conv2d,dense")
    parser.add_argument("--max-ops", type=int, default=None, help="keep this many operators per model")
    parser.add_argument("--target", default="host", help="the new machine's spec (default: this machine, host)")
    parser.add_argument("--budget", type=int, default=50, help="measurements to take (default 50)")
    parser.add_argument("--trials", type=int, default=8,
                        help="sampled schedules per operator among the candidates (plus the default)")
    parser.add_argument("--threads", default="1,2", help="thread counts among the candidates (default 1,2)")
    parser.add_argument("--store", default=os.environ.get("OPSCOPE_STORE") or "runs.db",
                        help="store the measurements go to (created if absent; resumes)")
    parser.add_argument("--out", required=True, help="folder for the adapted predictor")
    parser.add_argument("--correction", default="blend", choices=("blend", "auto", "boost", "ridge", "shift", "none"),
                        help="per-machine correction (blend: the three averaged, each weighted by the inverse of "
                             "its median error on held-out operators of the rows; auto: the best of the three; both "
                             "leave the base as it is where none of the three beats it there; none: no correction)")
    parser.add_argument("--label", default="latency_min_s",
                        help="latency statistic to learn (latency_min_s, latency_median_s, latency_mean_s)")
    parser.add_argument("--no-probe", action="store_true",
                        help="do not probe: use <target>-measured when it exists, else the nominal spec")
    parser.add_argument("--probe-gemm", type=int, default=512, help="GEMM size of the probe (multiple of 64)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per measurement before it is killed")
    parser.add_argument("--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    from opscope.commands.collect import _params, _space_operators, _workload
    from opscope.edges import at_least, thread_counts
    from opscope.predictor.frames import LABELS

    def say(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    if not args.model and not args.space:
        raise OpscopeError("adapt: give --model NAME[,NAME...] or --space default|KIND:N,...")
    at_least(args.budget, 1, "--budget")
    at_least(args.trials, 0, "--trials")
    at_least(args.max_ops, 1, "--max-ops")
    if args.label not in LABELS:
        raise OpscopeError(f"--label {args.label!r}: use one of {', '.join(LABELS)}")
    if args.probe_gemm < 64 or args.probe_gemm % 64:
        raise OpscopeError(f"--probe-gemm must be a multiple of 64, got {args.probe_gemm}")
    from opscope.collector.sweep import parse_threads

    threads = parse_threads(thread_counts(args.threads))
    from opscope.predictor.models.persist import read_metadata

    read_metadata(args.predictor)  # a missing or malformed predictor is refused before any work
    from opscope.collector.sweep import select_from_models

    params = _params(args.param)
    names = [m.strip() for m in (args.model or "").split(",") if m.strip()]
    ops = select_from_models(names, lambda name: _workload(name, params), args.ops, args.max_ops, quiet=True)
    if args.space:
        from opscope.workloads.space import parse_space

        args.space_onnx = []
        ops += _space_operators(parse_space(args.space), args)
    seen, unique = set(), []
    for op in ops:
        if op.key not in seen:
            seen.add(op.key)
            unique.append(op)
    from opscope.predictor.adapt.run import adapt_machine

    res = adapt_machine(args.predictor, unique, args.out, args.budget, args.store, target=args.target,
                        trials=args.trials, threads=threads, seed=args.seed, probe=not args.no_probe,
                        gemm_n=args.probe_gemm, correction=args.correction, label=args.label,
                        timeout_s=args.timeout, say=say)
    print(f"adapted {args.predictor} to {res.machine.nominal.name} ({res.machine.source}): "
          f"{res.measured} of {len(res.selection.indices)} chosen measurements ok out of {res.candidates} "
          f"candidates; correction {res.correction}; {res.seconds['total']:.0f} s "
          f"(probe {res.seconds['probe']:.0f}, choose {res.seconds['choose']:.0f}, "
          f"measure {res.seconds['measure']:.0f}, fit {res.seconds['fit']:.0f}); wrote {res.out}")
    if res.selection.note:
        print(res.selection.note)
    return 0
