"""``opscope targets``: the target specs opscope knows, with kind, peak and memory levels."""

from __future__ import annotations

import argparse
import sys

from opscope.errors import OpscopeError
from opscope.targets import list_targets, load_target


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="*", help="targets to show (default: all); a TOML path works too")
    parser.add_argument("--sources", action="store_true", help="also print where each figure comes from")


def _si(v: float | None, unit: str) -> str:
    if v is None:
        return "unbounded"
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= factor:
            return f"{v / factor:.4g} {prefix}{unit}"
    return f"{v:.4g} {unit}"


def _bytes(n: int | None) -> str:
    if n is None:
        return "unbounded"
    for factor, prefix in ((2**40, "Ti"), (2**30, "Gi"), (2**20, "Mi"), (2**10, "Ki")):
        if n >= factor:
            return f"{n / factor:.4g} {prefix}B"
    return f"{n} B"


def describe(spec) -> list[str]:
    if spec.pe_array is not None:
        pe = spec.pe_array
        peak = (f"PE array {pe.instances} x {pe.height} x {pe.width} @ {_si(spec.frequency_hz, 'Hz')} = "
                f"{_si(spec.peak_for('bfloat16'), 'FLOP/s')}")
    else:
        peak = ", ".join(f"{dt} {_si(v, 'FLOP/s')}" for dt, v in spec.peak_flops.items())
    mem = "  ".join(f"{lv.name} {_bytes(lv.size_bytes)} @ {_si(lv.bandwidth_Bps, 'B/s')}" for lv in spec.memory)
    flag = " (nominal)" if spec.nominal else " (measured)"
    return [f"{spec.name:14s} {spec.kind:11s} {peak}{flag}", f"{'':14s} memory: {mem}"]


def run(args: argparse.Namespace) -> int:
    names = args.names or list_targets()
    for name in names:
        try:
            spec = load_target(name)
        except OpscopeError as exc:
            if args.names:
                raise
            print(f"{name:14s} (cannot load: {exc})", file=sys.stderr)
            continue
        for line in describe(spec):
            print(line)
        if args.sources:
            for s in spec.sources:
                print(f"{'':14s} source: {s}")
    return 0
