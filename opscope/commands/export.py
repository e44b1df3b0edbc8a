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
    return 0
