"""``opscope train``: fit a latency predictor on measurements and save it as a directory."""

from __future__ import annotations

import argparse
import sys
import time

from opscope.errors import PredictorError

#: Fewest rows a learned predictor is fitted on: with fewer, a model has nothing to generalise from
#: (and gradient boosting's validation split divides by zero).
MIN_ROWS = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", "--data", dest="data", required=True, action="append",
                        help="measurements: a store (.db), or a Parquet/CSV export or shipped dataset; repeat it to "
                             "train on several (a measurement in more than one counts once)")
    parser.add_argument("--leave-out", action="append", default=[], metavar="FILE",
                        help="leave out every operator measured in FILE (a store or export), so that the predictor "
                             "can be scored on them as operators it never saw (repeatable)")
    parser.add_argument("--model", default="xgboost",
                        help="xgboost (default), random_forest, gradient_boosting, linear, calibrated, analytical")
    parser.add_argument("--out", required=True, help="directory to write the predictor to")
    parser.add_argument("--no-analytical-features", action="store_true",
                        help="leave the analytical model's estimates out of the features (learned models)")
    parser.add_argument("--label", default="latency_median_s",
                        help="latency statistic to learn: latency_median_s (default), latency_min_s, latency_mean_s")
    parser.add_argument("--learn", default=None, choices=("latency", "per_roofline", "mixed"),
                        help="what a learned model regresses: log latency, or log latency over the row's roofline "
                             "bound (per_roofline: carries the operator's scale), or (xgboost) half its boosters "
                             "each (mixed); default: the model's own (docs/predictor.md)")
    parser.add_argument("--no-network", action="store_true",
                        help="xgboost: the boosters alone, without the small network blended beside them "
                             "(faster to fit and to predict; docs/predictor.md)")
    parser.add_argument("--no-relative", action="store_true",
                        help="xgboost: without the boosters that regress a sampled schedule's latency over its "
                             "operator's default-schedule latency (docs/predictor.md)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compiled-features", action="store_true",
                        help="also learn from each schedule's compiled kernel (instruction, FMA, vector-width and "
                             "spill counts; the data's .compiled.parquet sidecars, or compiled with TVM here)")


#: the columns that together name one measurement across stores
MEASUREMENT_IDENTITY = ("measurement_id", "workload_key", "schedule_id", "threads", "pinned", "target", "machine_id",
                        "created_at")


def read_frames(paths: list, label: str):
    """The ok rows of every store or export given, as one frame (a measurement given twice counts once)."""
    import pandas as pd

    from opscope.predictor.frames import read_frame

    frames = [read_frame(p, label=label) for p in paths]
    if len(frames) == 1:
        return frames[0]
    frame = pd.concat(frames, ignore_index=True, sort=False)
    # ids count from 1 in every store, so a measurement is the same one only if its id, operator, schedule,
    # threads, target, machine and time all agree (a store and a copy of it, or its export)
    same = [c for c in MEASUREMENT_IDENTITY if c in frame.columns]
    if "measurement_id" in same:
        frame = frame.drop_duplicates(same, keep="last")
    return frame.reset_index(drop=True)


def _machines(pred, frame, paths: list, where: str) -> None:
    """Rows from several machines: give each other machine's rows a spec from its fingerprint
    (``features.machine.machine_specs``), kept in the predictor, and say so."""
    from opscope.report.machine import LOCAL_TARGETS

    if "machine_id" not in frame or "specs" not in pred.get_params():
        return
    local = frame["target"].astype(str).isin(LOCAL_TARGETS)
    if frame.loc[local, "machine_id"].nunique() < 2:  # one machine: nothing to read (this_machine imports TVM)
        return
    from opscope.predictor.features.machine import machine_specs, source_fingerprints
    from opscope.report.machine import this_machine

    fingerprints: dict = {}
    for path in paths:
        fingerprints.update(source_fingerprints(path))
    here = this_machine()[0]
    specs, used = machine_specs(frame, fingerprints, here, where)
    pred.set_params(specs={**(pred.specs or {}), **specs})
    pred.machines_ = used
    counts = frame.loc[local, "machine_id"].astype(str).value_counts()
    parts = [f"{mid} ({n} rows, " + ("this machine, as host)" if mid == here else
                                     f"as machine:{mid}: {specs[f'machine:{mid}'].sources[0].split(': ', 1)[-1]})")
             for mid, n in counts.items()]
    print(f"train: rows of {len(counts)} machines, each described by its own spec: {'; '.join(parts)}",
          file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from opscope.predictor.frames import labels, read_frame
    from opscope.predictor.models.persist import PREDICTORS, make_predictor, save_predictor

    if args.model not in PREDICTORS:
        raise PredictorError(f"unknown --model {args.model!r}; known: {', '.join(sorted(PREDICTORS))}")
    from opscope.edges import out_dir

    out_dir(args.out, "--out")
    frame = read_frames(args.data, args.label)
    where = ", ".join(map(str, args.data))
    if args.leave_out:
        held = set()
        for path in args.leave_out:
            held |= set(read_frame(path, ok_only=False, label=args.label)["workload_key"])
        keep = ~frame["workload_key"].isin(held)
        print(f"train: left out {int((~keep).sum())} rows of {frame[~keep]['workload_key'].nunique()} operators "
              f"measured in {', '.join(args.leave_out)}", file=sys.stderr)
        frame = frame[keep].reset_index(drop=True)
    if frame.empty:
        raise PredictorError(f"{where}: no successful measurements to train on")
    if len(frame) < MIN_ROWS and args.model != "analytical":
        raise PredictorError(f"{where}: {len(frame)} successful measurement(s); --model {args.model} needs "
                             f"at least {MIN_ROWS} to learn from (collect more, or use --model analytical)")
    params = {}
    if "seed" in PREDICTORS[args.model]().get_params():
        params["seed"] = args.seed
    if args.no_analytical_features and "analytical_features" in PREDICTORS[args.model]().get_params():
        params["analytical_features"] = False
    if args.learn is not None:
        if "target" not in PREDICTORS[args.model]().get_params():
            raise PredictorError(f"--learn: --model {args.model} has no such choice (xgboost does)")
        params["target"] = args.learn
    for asked, flag, param, lacks in ((args.no_network, "--no-network", "nn_weight", "no network"),
                                      (args.no_relative, "--no-relative", "relative_weight", "no such boosters")):
        if asked:
            if param not in PREDICTORS[args.model]().get_params():
                raise PredictorError(f"{flag}: --model {args.model} has {lacks} (xgboost does)")
            params[param] = 0.0
    if args.compiled_features:
        if "compiled_features" not in PREDICTORS[args.model]().get_params():
            raise PredictorError(f"--compiled-features: --model {args.model} does not take them (xgboost does)")
        params["compiled_features"] = True
    pred = make_predictor(args.model, **params)
    _machines(pred, frame, args.data, where)
    print(f"training {args.model} on {len(frame)} rows ({frame['workload_key'].nunique()} workloads)...",
          file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    pred.fit(frame, labels(frame, args.label))
    secs = time.perf_counter() - t0
    skipped = getattr(pred, "skipped_rows_", [])
    if skipped:
        print(f"train: left out {len(skipped)} row(s) whose features cannot be built, e.g. row {skipped[0][0]}: "
              f"{skipped[0][1]}", file=sys.stderr)
    out = save_predictor(pred, args.out, training=frame, label=args.label)
    print(f"trained {args.model} in {secs:.1f} s -> {out}")
    if args.model == "calibrated":
        print("what the correction learned (per kind and thread count; rates are the best the model predicts):")
        print(pred.correction_report(frame).to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    return 0
