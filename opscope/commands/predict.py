"""``opscope predict``: predicted latency of every operator of a model, and the model's total."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--predictor", required=True, help="a saved predictor directory")
    parser.add_argument("--model", required=True, help="zoo name, .onnx or layer-table .csv")
    parser.add_argument("--target", default="host", help="target spec the predictor should assume")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--out", help="write the table as CSV")


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from opscope.edges import at_least, out_file
    from opscope.predictor.frames import operator_frame
    from opscope.predictor.models.base import outside_training
    from opscope.predictor.models.persist import load_predictor
    from opscope.workloads import load_model

    at_least(args.threads, 1, "--threads")
    at_least(args.batch_size, 1, "--batch-size")
    if args.out:
        out_file(args.out, "--out", (".csv",))
    from opscope.targets import load_target

    load_target(args.target)  # an unknown target is named as the flag's, not as "in the data"
    pred = load_predictor(args.predictor)
    workload = load_model(args.model, batch_size=args.batch_size)
    frame = operator_frame(workload.operators, args.target, threads=args.threads)
    lat = pred.predict(frame)
    table = pd.DataFrame({
        "op": frame["op_name"], "kind": frame["kind"], "count": frame["count"],
        "flops": frame["flops"], "predicted_us": lat * 1e6, "total_us": lat * frame["count"].to_numpy() * 1e6,
        "outside_training": outside_training(pred, frame),
    })
    outside = int((table["outside_training"] != "").sum())
    total = pd.DataFrame([{"op": "TOTAL", "kind": "", "count": int(table["count"].sum()),
                           "flops": int(table["flops"].mul(table["count"]).sum()), "predicted_us": float("nan"),
                           "total_us": float(table["total_us"].sum()), "outside_training": ""}])
    table = pd.concat([table, total], ignore_index=True)
    print(f"{workload.name} on {args.target}, {args.threads} thread(s), default schedules:")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    if outside:
        print(f"{outside} of {len(frame)} operators lie outside what the predictor was trained on "
              "(outside_training): their predictions extrapolate and are the least reliable")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out, index=False)
    return 0
