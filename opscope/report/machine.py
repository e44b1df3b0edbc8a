"""Refuse to compare a local target with measurements taken on another machine.

Measurements of ``host`` mean "this machine"; a store filled elsewhere (a colleague's laptop, a
shipped dataset) would silently compare this machine's roofline with another's latencies.  Rows
whose ``machine_id`` differs from this machine's fingerprint are refused, naming both
fingerprints, unless the caller allows other machines.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import pandas as pd

from opscope.errors import OpscopeError

#: target names that denote the machine opscope runs on
LOCAL_TARGETS = ("host", "host-measured")


class OtherMachineError(OpscopeError):
    """The store's measurements were taken on another machine than the one compared with."""


def this_machine() -> tuple[str, dict]:
    """(machine id, fingerprint dict) of the machine we run on, as the collector records them."""
    from opscope.collector.machine import fingerprint, machine_id

    fp = fingerprint()
    return machine_id(fp), fp


def describe(fingerprint: Mapping | None) -> str:
    """A one-line description of a fingerprint (CPU, cores, host) for error messages."""
    if not fingerprint:
        return "no fingerprint stored"
    keys = [k for k in ("cpu", "cpu_model", "model_name", "cores", "hostname", "host") if k in fingerprint]
    if not keys:
        return json.dumps(dict(fingerprint), sort_keys=True, default=str)[:160]
    return ", ".join(f"{k}={fingerprint[k]}" for k in keys)


def check_machine(frame: pd.DataFrame, current_id: str, target: str, allow_other_machine: bool = False,
                  current_fingerprint: Mapping | None = None,
                  stored_fingerprints: Mapping[str, Mapping | None] | None = None) -> pd.DataFrame:
    """The rows of ``frame`` usable for ``target``: for a local target, all must come from this machine.

    Raises :class:`OtherMachineError` naming both fingerprints when rows come from another machine
    and ``allow_other_machine`` is False.  Non-local targets (remote devices) are not checked: their
    rows carry the device's fingerprint, not ours.
    """
    if frame.empty or target not in LOCAL_TARGETS or allow_other_machine:
        return frame
    others = sorted(set(frame["machine_id"].astype(str)) - {current_id})
    if not others:
        return frame
    stored = stored_fingerprints or {}
    counts = frame["machine_id"].astype(str).value_counts()
    lines = "; ".join(f"{m} ({counts[m]} rows: {describe(stored.get(m))})" for m in others)
    raise OtherMachineError(
        f"the store holds measurements from another machine: {lines}; this machine is {current_id} "
        f"({describe(current_fingerprint)}). Compare on the machine that measured them, or pass "
        "--allow-other-machine (allow_other_machine=True) to compare anyway"
    )
