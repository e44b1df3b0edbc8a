"""``opscope export``: write a store as Parquet or CSV (one row per measurement)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", required=True, help="SQLite store written by opscope collect")
    parser.add_argument("--out", required=True, help="output file, .parquet or .csv")


def run(args: argparse.Namespace) -> int:
    from opscope.store import export

    rows = export(args.store, args.out)
    print(f"wrote {rows} measurements to {args.out}")
    return 0
