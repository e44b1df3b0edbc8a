"""``opscope import-results``: bring a bundle's results file into a store."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", nargs="+", help="results file(s) written by a bundle's run.py")
    parser.add_argument("--store", default="runs.db", help="SQLite store (created if absent)")


def run(args: argparse.Namespace) -> int:
    from opscope.bundle import import_results
    from opscope.bundle.importer import read_records
    from opscope.edges import in_file
    from opscope.store import open_store

    for path in args.results:  # every file is read and checked before the store is opened or created
        read_records(in_file(path, "results file"))
    with open_store(args.store) as store:
        for path in args.results:
            s = import_results(path, store)
            note = "; an incomplete last line (written when the device stopped) was skipped" \
                if s.incomplete_last_line else ""
            print(f"{s.path}: bundle {s.bundle_id}, {s.read} measurements: {s.added} added, "
                  f"{s.duplicates} already in {args.store} (machine {', '.join(s.machine_ids)}){note}")
    return 0
