"""``opscope tune``: predictor-guided schedule search for one operator of a model.

Samples ``--pool`` schedules from MetaSchedule's design space (``ReplaySampler``: one design space,
decisions re-drawn per sample), ranks them all with the predictor,
builds and measures only the best ``--budget`` (the default schedule among them, as the baseline),
and reports the best found, its speed-up over the default, and after how many trials the search
came within 5 % of its best.
"""

from __future__ import annotations

import argparse
import sys

from opscope.errors import OpscopeError, PredictorError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="zoo name, .onnx or layer-table .csv")
    parser.add_argument("--op", required=True, help="operator name, index in the model, or a unique substring")
    parser.add_argument("--predictor", required=True, help="a saved predictor directory")
    parser.add_argument("--budget", type=int, default=32, help="schedules to measure")
    parser.add_argument("--pool", type=int, default=256, help="schedules to sample and rank")
    parser.add_argument("--target", default="host")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--out", help="write the trials as CSV")


def pick_operator(ops, wanted: str):
    """An operator by exact name, by index, or by a substring matching exactly one name."""
    by_name = [op for op in ops if op.name == wanted]
    if by_name:
        return by_name[0]
    if wanted.isdigit() and int(wanted) < len(ops):
        return ops[int(wanted)]
    hits = [op for op in ops if wanted in op.name]
    if len(hits) == 1:
        return hits[0]
    names = ", ".join(op.name for op in ops[:12]) + (" ..." if len(ops) > 12 else "")
    what = "matches several operators" if hits else "matches no operator"
    raise OpscopeError(f"--op {wanted!r} {what}; the model has: {names}")


def run(args: argparse.Namespace) -> int:
    import math

    from opscope.collector.local_builder import LocalBuilder
    from opscope.collector.local_runner import LocalRunner
    from opscope.collector.ms_sampler import ReplaySampler, import_tensor_intrinsics
    from opscope.collector.protocol import Protocol
    from opscope.collector.roles import RunJob, arg_specs
    from opscope.edges import out_file, thread_count
    from opscope.predictor.models.persist import load_predictor
    from opscope.predictor.search import guided_search
    from opscope.targets import load_target, tvm_target, tvm_target_dict
    from opscope.workloads import load_model

    if args.budget < 1 or args.pool < args.budget:
        raise PredictorError(f"need 1 <= --budget <= --pool, got budget {args.budget}, pool {args.pool}")
    thread_count(args.threads)
    if args.timeout <= 0:
        raise OpscopeError(f"--timeout {args.timeout}: must be > 0 seconds")
    if args.out:
        out_file(args.out, "--out", (".csv",))
    if str(args.model).lower().endswith(".csv"):
        raise OpscopeError(f"--model {args.model}: a layer table's operators have no TIR to schedule; "
                           "give a zoo model or an .onnx file")
    pred = load_predictor(args.predictor)
    spec = load_target(args.target)
    print("loading TVM's schedule rules (a one-off cost per process)...", file=sys.stderr, flush=True)
    import_tensor_intrinsics()  # before the model import loads torch: fewer modules, faster
    op = pick_operator(list(load_model(args.model).operators), args.op)
    if op.prim_func is None:
        raise OpscopeError(f"operator {op.name!r} has no TIR function to schedule")
    print(f"sampling {args.pool} schedules of {op.name} ({op.kind})...", file=sys.stderr, flush=True)
    candidates = ReplaySampler(tvm_target(spec)).candidates(op, args.pool, args.seed)
    args_spec = arg_specs(op.prim_func)
    protocol = Protocol()
    builder, runner = LocalBuilder(tvm_target_dict(spec)), LocalRunner()
    try:
        res = guided_search(
            pred, op, candidates, target=args.target, threads=args.threads, budget=args.budget,
            builder=builder, runner=runner,
            make_job=lambda b, t: RunJob(b.artifact, args_spec, t, protocol, args.timeout),
        )
    finally:
        builder.close()
        runner.close()
    df = res.frame()
    print(df[["trial", "schedule_id", "rank", "predicted_s", "measured_s", "best_so_far_s", "status"]]
          .to_string(index=False, float_format=lambda v: f"{v * 1e6:.1f}us" if v < 1 else f"{v:.3g}"))
    best, default = res.best_s, res.default_s
    reach = res.trials_to_within(0.05)
    print(f"\n{op.name}: ranked {res.sampled} schedules, measured {len(res.trials)}; best {best * 1e6:.1f} us"
          + (f", default {default * 1e6:.1f} us (x{default / best:.2f})" if not math.isnan(default) else "")
          + f"; within 5% of the best after {reach} trial(s)")
    if args.out:
        from pathlib import Path

        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(args.out, index=False)
    return 0
