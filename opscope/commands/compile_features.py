"""``opscope compile-features``: compile every schedule of a dataset and write the counts of its
kernels beside it (``X.compiled.parquet``), for predictors trained with ``--compiled-features``."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", "--data", dest="data", required=True, action="append",
                        help="store (.db) or exported .parquet/.csv (repeatable); the sidecar is written beside it")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds one schedule may take to compile (default 20); slower ones get no counts")


def run(args: argparse.Namespace) -> int:
    from opscope.errors import PredictorError
    from opscope.predictor.features.compiled import TIMEOUT_S, write_sidecar
    from opscope.predictor.features.estimates import SpecCache
    from opscope.predictor.features.machine import machine_frame, machine_specs, source_fingerprints
    from opscope.predictor.frames import read_frame
    from opscope.report.machine import this_machine

    timeout = TIMEOUT_S if args.timeout is None else args.timeout
    if not timeout > 0:
        raise PredictorError(f"--timeout must be a positive number of seconds, got {args.timeout}")
    for path in args.data:
        frame = read_frame(path, ok_only=False)
        # rows of another machine compile for that machine's CPU, as training describes it
        specs, _ = machine_specs(frame, source_fingerprints(path), this_machine()[0], str(path))
        frame = machine_frame(frame, specs)
        print(f"compile-features: {path}: {len(frame)} rows", file=sys.stderr, flush=True)
        out, n, skipped = write_sidecar(frame, path, SpecCache(specs), timeout,
                                        progress=lambda m: print(m, file=sys.stderr, flush=True))
        reasons: dict[str, int] = {}
        for _, why in skipped:
            reasons[why] = reasons.get(why, 0) + 1
        for why, count in sorted(reasons.items(), key=lambda kv: -kv[1])[:5]:
            print(f"compile-features: {count} row(s) without counts: {why}", file=sys.stderr)
        print(f"{n} schedules' kernel counts -> {out}")
    return 0
