"""Where a saved predictor's error on held-out operators lies: per operator (scale) or per schedule.

    python benchmarks/error_anatomy.py --predictor P [--predictor P2] --data HELDOUT.parquet [--data ...] \
        [--label latency_min_s]

For each predictor, on each dataset and on all of them together: median APE, within +-20%, top-1,
the error parts of ``opscope.predictor.evaluation.metrics.error_parts`` (the median APE left with
each operator's scale error taken away, and with its schedules' errors taken away; the slope of the
predicted spread of an operator's schedules on the measured), then the schedules sorted into
deciles by how far each measured from its operator's mean (log), with the median schedule error in
each: a predictor whose features cannot tell schedules apart predicts the fastest too slow and the
slowest too fast.  The rows are predicted as they are (a saved predictor; nothing is refitted).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd


def anatomy(frame: pd.DataFrame, pred: np.ndarray, true: np.ndarray) -> dict:
    from opscope.predictor.evaluation.metrics import accuracy_table, error_parts

    return {**accuracy_table(frame, pred, true), **error_parts(frame, pred, true)}


def deciles(frame: pd.DataFrame, pred: np.ndarray, true: np.ndarray) -> pd.DataFrame:
    """Sampled schedules in deciles of their measured log distance from their operator's mean, with the
    median of their schedule error (log error less the operator's median log error) in each."""
    from opscope.predictor.evaluation.metrics import task_ids

    d = pd.DataFrame({"task": task_ids(frame), "logt": np.log(true), "err": np.log(pred / true)})
    d["sampled"] = (frame["schedule_kind"].astype(str) != "default").to_numpy() if "schedule_kind" in frame else True
    d["measured_dev"] = d["logt"] - d.groupby("task")["logt"].transform("mean")
    d["schedule_err"] = d["err"] - d.groupby("task")["err"].transform("median")
    s = d[d["sampled"]].copy()
    s["decile"] = pd.qcut(s["measured_dev"], 10, labels=False, duplicates="drop")
    out = s.groupby("decile").agg(rows=("err", "size"), measured_dev_lo=("measured_dev", "min"),
                                  measured_dev_hi=("measured_dev", "max"),
                                  schedule_err=("schedule_err", "median"),
                                  abs_schedule_err=("schedule_err", lambda e: float(np.median(np.abs(e)))))
    return out.reset_index()


def calibration_slope(frame: pd.DataFrame, pred: np.ndarray, true: np.ndarray) -> float:
    """Over sampled schedules, the least-squares slope (through 0) of their measured log distance from
    their operator's mean on the predicted one: 1 when a predicted spread comes true on average (the
    predictor is narrow only where it cannot tell schedules apart), above 1 when stretching would help."""
    from opscope.predictor.evaluation.metrics import task_ids

    d = pd.DataFrame({"task": task_ids(frame), "lp": np.log(pred), "lt": np.log(true)})
    if "schedule_kind" in frame:
        d = d[(frame["schedule_kind"].astype(str) != "default").to_numpy()]
    dp = d["lp"] - d.groupby("task")["lp"].transform("mean")
    dt = d["lt"] - d.groupby("task")["lt"].transform("mean")
    den = float((dp * dp).sum())
    return float((dp * dt).sum()) / den if den > 0 else float("nan")


def main(argv: list[str] | None = None) -> int:
    from opscope.predictor import load_predictor, read_frame

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--predictor", action="append", required=True, help="a saved predictor folder (repeatable)")
    ap.add_argument("--data", action="append", required=True, help="held-out measurements (repeatable)")
    ap.add_argument("--label", default="latency_min_s")
    args = ap.parse_args(argv)
    frames = {path: read_frame(path, label=args.label) for path in args.data}
    cols = ["median_ape", "within20", "top1", "spearman", "scale_abs_log", "schedule_abs_log",
            "median_ape_scale_known", "median_ape_schedules_known", "schedule_slope"]
    for ppath in args.predictor:
        pred = load_predictor(ppath)
        rows, parts = [], []
        for i, (path, frame) in enumerate(frames.items()):
            p, y = pred.predict(frame), frame[args.label].to_numpy(dtype=float)
            rows.append({"data": path, **anatomy(frame, p, y)})
            # operators of different sets are different tasks even where their keys agree
            parts.append((frame.assign(workload_key=frame["workload_key"].astype(str) + f"|{i}"), p, y))
        if len(parts) > 1:
            every = pd.concat([f for f, _, _ in parts], ignore_index=True)
            p, y = np.concatenate([q for _, q, _ in parts]), np.concatenate([t for _, _, t in parts])
            rows.append({"data": "all", **anatomy(every, p, y)})
        else:
            every, p, y = parts[0]
        print(f"\n{ppath}:")
        print(pd.DataFrame(rows)[["data", *cols]].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        print("\nsampled schedules by measured log distance from their operator's mean (all data):")
        print(deciles(every, p, y).to_string(index=False, float_format=lambda v: f"{v:+.3f}"))
        print(f"measured on predicted spread of sampled schedules (slope; 1 = calibrated): "
              f"{calibration_slope(every, p, y):.3f}")
    print("\nmedian_ape_scale_known: the median APE left if each operator's own scale error were taken away "
          "(its schedules' errors alone); median_ape_schedules_known: the reverse; schedule_slope: the predicted "
          "spread of an operator's schedules on the measured (1 = as wide)")
    return 0


if __name__ == "__main__":
    from opscope.cli import run_script

    run_script(main, Path(__file__).name)
