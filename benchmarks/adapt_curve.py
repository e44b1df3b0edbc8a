"""Learning curve of adapting a predictor to a new machine, on every pair of machines we have data for.

For a pair (source, destination): the base predictor is fitted on every row of the source machine.
The destination's operators are split into ``--folds`` folds (whole operators); for each fold the
other operators' rows are the candidate pool and the fold's rows are the held-out test set.  For each
budget K, K rows of the pool are chosen (``select_measurements``, or at random for comparison) and:

- ``adapted``: the base predictor with a per-machine correction fitted on those K rows
  (``AdaptedPredictor``, ``--correction``); ``adapted-diverse`` the same with rows chosen for diversity
  alone (no uncertainty weight), ``adapted-random`` with K rows drawn at random;
- ``scratch``: an XGBoost predictor trained on the same K rows only;
- ``base``: the base predictor unchanged (the same at every K);
- ``pool``: (once) an XGBoost predictor trained on the whole pool, the within-machine reference;
- ``scale-known``: (once, K "oracle") the base predictor with each held-out operator's own median log
  error at each thread count divided out: the best any correction of an operator's overall speed could
  do (what is left is the base's error between an operator's schedules, which no per-machine or
  per-operator factor removes).

Held-out predictions are pooled over folds and scored with opscope's metrics (median APE, share
within +-10 %, TenSet top-1 over each operator's schedules at one thread count).

Each machine gets a spec of its own from its fingerprint (``opscope.predictor.features.machine``), and
its rows a target name of their own, so machine features and analytical estimates describe the
machine that measured the row.  The datasets carry no probe of their machines (``m_meas_*`` are
NaN); ``adapt`` on a live machine adds them.

    python benchmarks/adapt_curve.py [--pairs host-cpu-v1:xeon16,...] [--ks 0,10,25,50,100,200]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from opscope.predictor import make_predictor, read_frame
from opscope.predictor.adapt.correction import AdaptedPredictor, design_matrix, select_measurements
from opscope.predictor.evaluation.metrics import accuracy_table, task_ids
from opscope.predictor.features.machine import retarget, spec_from_fingerprint, store_fingerprints

ROOT = Path(__file__).resolve().parent.parent
#: the 2-vCPU AMD EPYC (Zen 5) VM of datasets/zen5-zoo-v1 and space-cpu-zen5-v1, from their datasheets
_ZEN5 = {"cpu_model": "AMD EPYC", "cores": 2, "caches": {"L1d": "48K", "L2": "1M", "L3": "32M"},
         "tvm_target": {"mcpu": "znver5"}}
#: the 2-vCPU AMD EPYC (Zen 4) VM of datasets/space-cpu-v3 and zoo-cpu-v2, from their datasheets
_ZEN4 = {"cpu_model": "AMD EPYC", "cores": 2, "caches": {"L1d": "32K", "L2": "1M", "L3": "32M"},
         "tvm_target": {"mcpu": "znver4"}}
#: dataset -> (path, fingerprint or None to read it from the store's machines table, clock in Hz)
DATASETS = {
    # DATASHEET.md of each: the fingerprints as stored when the data was measured
    "host-cpu-v1": (ROOT / "datasets/host-cpu-v1/measurements.parquet",
                    {"cpu_model": "AMD EPYC", "cores": 2, "caches": {"L1d": "32K", "L2": "512K", "L3": "32M"},
                     "tvm_target": {"mcpu": "znver3"}}, None),
    "xeon16": (ROOT / "datasets/xeon16-bundle-v1/measurements.parquet",
               # kernels built for x86-64-v3 (AVX2), whatever the Xeon's own AVX-512
               {"cpu_model": "Intel Xeon", "cores": 16, "caches": {"L1d": "48K", "L2": "2M", "L3": "300M"},
                "tvm_target": {"mcpu": "x86-64-v3"}}, None),
    # this machine class (datasets/space-cpu-v3/DATASHEET.md): the 969 operators of the seven space
    # datasets that train the predictor of docs/predictor.md
    "space": (tuple(ROOT / f"datasets/space-cpu-{name}/measurements.parquet"
                    for name in ("v3", "edges-v1", "nice-v1", "deep-v1", "torch-v1", "lowres-v1", "lowres-more-v1")),
              _ZEN4, 2.596e9),
    # zoo-cpu-v2's schedules measured again on a 2-vCPU AMD EPYC of the next generation (Zen 5,
    # LLVM znver5; datasets/zen5-zoo-v1/DATASHEET.md): the shipped Zen 4 predictor on a new machine
    "zen5": (ROOT / "datasets/zen5-zoo-v1/measurements.parquet", _ZEN5, 2.596e9),
    # space-cpu-v3's 420 default-space operators on that Zen 5 VM (datasets/space-cpu-zen5-v1/DATASHEET.md)
    "space-zen5": (ROOT / "datasets/space-cpu-zen5-v1/measurements.parquet", _ZEN5, 2.596e9),
    # the other way round: the space operators of the eight default-space and band sets measured on the
    # Zen 5 VM before the small and tiny bands (none of them a zoo operator)
    # as the base, the Zen 4 VM's zoo operators (datasets/zoo-cpu-v2) as the new machine
    "zen5-space": (tuple(ROOT / f"datasets/space-cpu-zen5-{name}/measurements.parquet"
                         for name in ("v1", "more-v1", "more2-v1", "more3-v1", "nice-v1", "patch-v1", "torch-v1",
                                      "act-v1")),
                   _ZEN5, 2.596e9),
    "zen4-zoo": (ROOT / "datasets/zoo-cpu-v2/measurements.parquet", _ZEN4, 2.596e9),
}
LABEL = "latency_min_s"


def load(name: str) -> tuple[pd.DataFrame, object]:
    path, fp, freq = DATASETS[name]
    paths = path if isinstance(path, tuple) else (path,)
    frame = pd.concat([read_frame(p, label=LABEL) for p in paths], ignore_index=True)
    if fp is None:
        fps = store_fingerprints(str(paths[0]))
        mid = str(frame["machine_id"].iloc[0])
        fp = fps[mid]
    spec = spec_from_fingerprint(fp, name, frequency_hz=freq)
    return retarget(frame, name), spec


def curve(src: pd.DataFrame, dst: pd.DataFrame, specs: dict, ks: list[int], base_name: str, folds: int,
          correction: str, seed: int, log) -> pd.DataFrame:
    y_src = src[LABEL].to_numpy()
    t0 = time.perf_counter()
    name, _, extra = base_name.partition("+")  # "xgboost+compiled": with the compiled kernel's counts
    base = make_predictor(name, specs=specs, **({"compiled_features": True} if extra == "compiled" else {}))
    base.fit(src, y_src)
    log(f"  base {base_name} fitted on {len(src)} rows in {time.perf_counter() - t0:.1f} s")
    keys = np.random.default_rng(seed).permutation(dst["workload_key"].unique())
    parts = np.array_split(keys, folds)
    y = dst[LABEL].to_numpy()
    preds: dict[tuple[str, int], np.ndarray] = {}
    chosen: dict[int, list[str]] = {}

    def put(method: str, k: int, test: np.ndarray, p: np.ndarray) -> None:
        preds.setdefault((method, k), np.full(len(dst), np.nan))[test] = p

    for fi, held in enumerate(parts):
        test = dst["workload_key"].isin(held).to_numpy()
        pool = dst[~test].reset_index(drop=True)
        test_frame = dst[test].reset_index(drop=True)
        y_pool = y[~test]
        base_test = base.predict(test_frame)
        ref = make_predictor("xgboost", specs=specs).fit(pool, y_pool)
        put("pool", -1, test, ref.predict(test_frame))
        design, analytical = design_matrix(pool, specs)
        prepared = (design, analytical, base.predict(pool))
        for k in ks:
            put("base", k, test, base_test)
            picks = {"adapted": select_measurements(base, pool, k, specs, seed=seed, prepared=prepared).indices,
                     "adapted-diverse": select_measurements(base, pool, k, specs, seed=seed, prepared=prepared,
                                                            uncertainty=False).indices,
                     "adapted-random": tuple(np.random.default_rng(seed + fi).choice(
                         len(pool), min(k, len(pool)), replace=False))}
            for method, idx in picks.items():
                idx = np.asarray(idx, dtype=int)
                if k == 0:
                    put(method, k, test, base_test)
                    continue
                ad = AdaptedPredictor(base, correction=correction, specs=specs, seed=seed)
                ad.fit(pool.iloc[idx].reset_index(drop=True), y_pool[idx])
                put(method, k, test, base_test * ad.correction_factor(test_frame))
                if method == "adapted":
                    chosen.setdefault(k, []).append(ad.chosen_)
            idx = np.asarray(picks["adapted"], dtype=int)
            if k >= 2:
                sc = make_predictor("xgboost", specs=specs).fit(pool.iloc[idx].reset_index(drop=True), y_pool[idx])
                put("scratch", k, test, sc.predict(test_frame))
        log(f"  fold {fi + 1}/{folds}: {int(test.sum())} test rows, {len(pool)} in the pool "
            f"({time.perf_counter() - t0:.0f} s)")
    base_all = preds[("base", ks[0])]  # the folds' base predictions cover every row of dst
    own_scale = pd.Series(np.log(y / base_all)).groupby(task_ids(dst)).transform("median").to_numpy()
    put("scale-known", -2, np.ones(len(dst), dtype=bool), base_all * np.exp(own_scale))
    rows = []
    for (method, k), p in sorted(preds.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        m = accuracy_table(dst, p, y)
        rows.append({"method": method, "K": k if k >= 0 else ("all" if k == -1 else "oracle"), **m,
                     "corrections": ",".join(sorted(set(chosen.get(k, [])))) if method == "adapted" else ""})
    return pd.DataFrame(rows)


def same_schedule_spread(src: pd.DataFrame, dst: pd.DataFrame) -> tuple[int, float, float]:
    """(measurements of the same schedule and thread count on both machines, median and standard
    deviation of log2(new / source) over them): how far one machine's latencies carry to the other."""
    both = src.merge(dst, on=["workload_key", "schedule_id", "threads"], suffixes=("_a", "_b"))
    if both.empty:
        return 0, float("nan"), float("nan")
    r = np.log2(both[f"{LABEL}_b"] / both[f"{LABEL}_a"])
    return len(both), float(r.median()), float(r.std())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", default="host-cpu-v1:xeon16,xeon16:host-cpu-v1,space:host-cpu-v1,space:xeon16,"
                                       "space:zen5,zen5-space:zen4-zoo")
    ap.add_argument("--ks", default="0,10,25,50,100,200")
    ap.add_argument("--base", default="xgboost",
                    help="base predictor(s), comma separated; xgboost+compiled learns the compiled kernels' counts too")
    ap.add_argument("--correction", default="blend")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="CSV of every row of the curves")
    args = ap.parse_args(argv)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    ks = [int(k) for k in args.ks.split(",")]
    cache: dict[str, tuple[pd.DataFrame, object]] = {}
    tables = []
    t0 = time.perf_counter()
    for pair in args.pairs.split(","):
        a, b = pair.split(":")
        for name in (a, b):
            if name not in cache:
                cache[name] = load(name)
                log(f"{name}: {len(cache[name][0])} ok rows, {cache[name][0]['workload_key'].nunique()} operators")
        (src, sa), (dst, sb) = cache[a], cache[b]
        specs = {a: sa, b: sb}
        shared = len(set(src["workload_key"]) & set(dst["workload_key"]))
        print(f"\n{a} -> {b}: {shared} of {dst['workload_key'].nunique()} operators of {b} are also in {a}'s rows")
        n, med, std = same_schedule_spread(src, dst)
        if n:
            print(f"\n{a} -> {b}: {n} measurements of the same schedule and threads on both; "
                  f"log2(new / source) median {med:.2f}, standard deviation {std:.2f}")
        for base_name in args.base.split(","):
            log(f"{a} -> {b}, base {base_name}")
            t = curve(src, dst, specs, ks, base_name, args.folds, args.correction, args.seed, log)
            t.insert(0, "base", base_name)
            t.insert(0, "pair", f"{a}->{b}")
            tables.append(t)
            show = t[["method", "K", "median_ape", "within10", "within20", "top1", "spearman", "mape", "corrections"]]
            print(f"\n## {a} -> {b} (base {base_name})\n")
            print(show.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    out = pd.concat(tables, ignore_index=True)
    if args.out:
        out.to_csv(args.out, index=False)
    log(f"done in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
