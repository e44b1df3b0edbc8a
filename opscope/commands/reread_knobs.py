"""``opscope reread-knobs``: read the loop knobs of a store's schedules again from their traces."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", required=True, help="SQLite store written by opscope collect (updated in place)")


def run(args: argparse.Namespace) -> int:
    import os

    from opscope.collector.reread import reread_knobs
    from opscope.errors import StoreError

    if not os.path.isfile(args.store):
        raise StoreError(f"store {args.store}: no such file")

    def show(i: int, n: int) -> None:
        if i % 200 == 0 or i == n - 1:
            print(f"\rreading schedules: {i + 1}/{n}", end="", file=sys.stderr, flush=True)

    out = reread_knobs(args.store, progress=show)
    print(file=sys.stderr)
    for key, sid, why in out["skipped"][:5]:
        print(f"reread-knobs: skipped {key}/{sid}: {why}", file=sys.stderr)
    print(f"{out['changed']} schedules' loop knobs changed, {out['unchanged']} unchanged, "
          f"{len(out['skipped'])} skipped ({args.store})")
    return 0
