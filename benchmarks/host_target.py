"""float32 latencies under the host target derived from what the CPU reports vs LLVM's bare CPU model.

A VM that hides features (AVX-512 BF16/VNNI, AMX ...) gets ``-mattr`` entries that turn them off.  A
float32 kernel does not use those instructions, so its latency must not change.  This measures the same
sampled schedules three times, in separate collections: under the old target (``mcpu`` only), under the
derived one (a cpuinfo with the features a cloud VM typically hides, or this machine's own), and under
the old one again, whose spread against the first run is the noise floor.

    python benchmarks/host_target.py [--trials 6] [--hide avx512_bf16,avx512_vnni,...]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import statistics
import tempfile
from pathlib import Path

DEFAULT_HIDE = "avx512_bf16,avx512_vnni,avx512vbmi,avx512_vbmi2,avx512ifma,avx512_bitalg,gfni,avx_vnni"


def _collect(spec, ops, trials: int, store: Path):
    from opscope.collector import collect
    from opscope.collector.registry import RoleOptions, make_roles

    roles = make_roles(spec, RoleOptions())
    try:
        collect(ops, target="host", trials=trials, threads=(1,), store=store, seed=5, progress=False, roles=roles)
    finally:
        for role in (roles.builder, roles.runner):
            role.close()
    from opscope.store import load_dataframe

    df = load_dataframe(store)
    df = df[df["status"] == "ok"]
    return dict(zip(zip(df["workload_key"], df["schedule_id"]), df["latency_min_s"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--hide", default=DEFAULT_HIDE, help="cpuinfo flags to hide ('' = this machine as it is)")
    args = ap.parse_args()

    from opscope.collector.te_ops import dense_operator
    from opscope.targets import detect_host
    from opscope.targets.cpu_flags import cpu_flags, read_cpuinfo
    from opscope.targets.tvm import tvm_target_dict

    host = detect_host()
    old = {k: v for k, v in tvm_target_dict(host).items() if k != "mattr"}
    tmp = Path(tempfile.mkdtemp(prefix="opscope-host-target-"))
    hide = {f for f in args.hide.split(",") if f}
    fake = tmp / "cpuinfo"
    fake.write_text("processor\t: 0\nflags\t\t: " + " ".join(sorted(cpu_flags(read_cpuinfo()) - hide)) + "\n")
    os.environ["OPSCOPE_CPUINFO"] = str(fake)
    new = tvm_target_dict(detect_host())
    del os.environ["OPSCOPE_CPUINFO"]
    print(f"old target: {old}\nnew target: {new}\nload average before: {os.getloadavg()}")

    ops = [dense_operator(256, 256, 256), dense_operator(128, 512, 256), dense_operator(64, 1024, 512)]
    runs = {}
    for name, tt in (("old", old), ("new", new), ("old again", old)):
        spec = dataclasses.replace(host, tvm_target=tt)
        runs[name] = _collect(spec, ops, args.trials, tmp / f"{name.replace(' ', '_')}.db")
    common = sorted(set(runs["old"]) & set(runs["new"]) & set(runs["old again"]))

    def spread(a: str, b: str) -> tuple[float, float]:
        logs = [math.log(runs[b][k] / runs[a][k]) for k in common]
        return math.exp(statistics.median(logs)), math.exp(statistics.median(abs(x) for x in logs))

    for label, (a, b) in (("new / old", ("old", "new")), ("old again / old (noise floor)", ("old", "old again"))):
        med, absdev = spread(a, b)
        print(f"{label:32s} median ratio {med:.3f}, median |deviation| {100 * (absdev - 1):.1f}% "
              f"over {len(common)} schedules")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
