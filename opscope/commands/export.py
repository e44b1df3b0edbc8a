"""``opscope export``: write a store as Parquet or CSV (one row per measurement)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", required=True, help="SQLite store written by opscope collect (read only)")
    parser.add_argument("--out", required=True, help="output file, .parquet or .csv")


def run(args: argparse.Namespace) -> int:
    from opscope.edges import out_file
    from opscope.store import export

    out = out_file(args.out, "--out", (".parquet", ".csv"))
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = export(args.store, out)
    print(f"wrote {rows} measurements to {args.out}")
    from opscope.errors import PredictorError
    from opscope.predictor.features.machine import store_fingerprints, write_sidecar

    try:
        fps = store_fingerprints(str(args.store))
    except PredictorError as exc:
        print(f"export: no machine fingerprints written ({exc})")
        return 0
    if fps:  # what a predictor trained on several machines' exports describes each machine by
        print(f"wrote the fingerprints of {len(fps)} machine(s) to {write_sidecar(out, fps)}")
    return 0
