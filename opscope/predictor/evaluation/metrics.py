"""Accuracy metrics, defined as in design.md.

APE = |predicted - measured| / measured.  MAPE is its mean, ``within(p)`` the share of rows with
APE <= p.  Ranking metrics work within one *task*: one operator (workload) on one target at one
thread count, over its schedules.  ``spearman_within`` averages Spearman's rank correlation over
tasks with at least three schedules of distinct latency.  TenSet's top-k peak score, per task, is the
best measured throughput among the k schedules the predictor ranks fastest divided by the best
measured throughput in the task (throughput = 1 / latency), averaged over tasks with more than k
schedules (with k or fewer the score is trivially 1).  When predictions tie at the cut (a model
that does not see the schedule predicts one latency for all of them), the score is averaged over
random orders of the tied schedules, so ties neither help nor hurt.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

TASK_COLUMNS = ("workload_key", "target", "threads")
#: random tie orders averaged when a predictor gives several schedules the same latency
TIE_DRAWS = 64


def ape(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    true = np.asarray(true, dtype=float)
    return np.abs(np.asarray(pred, dtype=float) - true) / true


def mape(pred: np.ndarray, true: np.ndarray) -> float:
    return float(np.mean(ape(pred, true)))


def median_ape(pred: np.ndarray, true: np.ndarray) -> float:
    return float(np.median(ape(pred, true)))


def within(pred: np.ndarray, true: np.ndarray, p: float) -> float:
    return float(np.mean(ape(pred, true) <= p + 1e-12))


def task_ids(frame: pd.DataFrame) -> np.ndarray:
    cols = [c for c in TASK_COLUMNS if c in frame.columns]
    return frame.groupby(cols, sort=False).ngroup().to_numpy()


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra = pd.Series(a).rank().to_numpy()
    rb = pd.Series(b).rank().to_numpy()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = np.sqrt((ra**2).sum() * (rb**2).sum())
    return float((ra * rb).sum() / denom) if denom else float("nan")


def spearman_within(tasks: np.ndarray, pred: np.ndarray, true: np.ndarray) -> tuple[float, int]:
    """(mean Spearman rho over tasks, number of tasks used)."""
    vals = []
    for t in np.unique(tasks):
        m = tasks == t
        if m.sum() >= 3 and np.unique(true[m]).size > 1:
            rho = _spearman(pred[m], true[m])
            if np.isfinite(rho):
                vals.append(rho)
    return (float(np.mean(vals)) if vals else float("nan")), len(vals)


def top_k_peak_score(tasks: np.ndarray, pred: np.ndarray, true: np.ndarray, k: int) -> tuple[float, int]:
    """(TenSet top-k peak score averaged over tasks with more than k schedules, number of tasks)."""
    scores = []
    rng = np.random.default_rng(0)
    for t in np.unique(tasks):
        m = np.flatnonzero(tasks == t)
        if m.size <= k:
            continue
        p = pred[m]
        cut = np.sort(p)[k - 1]
        if np.sum(p <= cut) == k:  # no tie at the cut: the picks are determined
            picks = m[np.argsort(p, kind="stable")[:k]]
            scores.append(true[m].min() / true[picks].min())
        elif k == 1:  # tied fastest predictions: each is equally likely to be the pick
            scores.append(float(np.mean(true[m].min() / true[m[p == cut]])))
        else:  # ties at the cut (e.g. a schedule-blind model): expected score over tie orders
            draws = [m[np.lexsort((rng.random(m.size), p))[:k]] for _ in range(TIE_DRAWS)]
            scores.append(float(np.mean([true[m].min() / true[d].min() for d in draws])))
    return (float(np.mean(scores)) if scores else float("nan")), len(scores)


def accuracy_table(frame: pd.DataFrame, pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Every metric for one set of predictions, as a flat dict."""
    tasks = task_ids(frame)
    rho, n_rho = spearman_within(tasks, pred, true)
    top1, n_top1 = top_k_peak_score(tasks, pred, true, 1)
    top5, n_top5 = top_k_peak_score(tasks, pred, true, 5)
    return {
        "rows": int(len(true)),
        "mape": mape(pred, true),
        "median_ape": median_ape(pred, true),
        "within10": within(pred, true, 0.10),
        "within20": within(pred, true, 0.20),
        "spearman": rho,
        "top1": top1,
        "top5": top5,
        "ranking_tasks": n_top1,
    }


def error_parts(frame: pd.DataFrame, pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Where the log error lies: per task (operator, target, threads), the median log error of its rows
    is the task's *scale* error and each row's distance from it the *schedule* error.

    ``scale_abs_log``: median over tasks of |scale error|; ``scale_bias_log``: median scale error
    (negative: predicted too fast); ``schedule_abs_log``: median over rows of |schedule error|.  A
    predictor that only misjudges each operator's overall speed has schedule error 0; one that knows
    each operator's speed but not what the schedules do has scale error near 0.

    What each part costs, as the median APE left if the other were removed:
    ``median_ape_scale_known`` (each task's scale error divided out: the schedule error alone) and
    ``median_ape_schedules_known`` (each row given its task's scale error only).  ``schedule_slope``:
    over tasks with several rows, the least-squares slope (through 0) of each row's predicted log
    latency less its task's mean on the same for the measured: 1 when the predictor spreads an
    operator's schedules as far apart as they measure, below 1 when it pulls them towards their
    operator's mean (as a regression does with what its features cannot tell apart); NaN without
    such tasks.
    """
    logp = np.log(np.asarray(pred, dtype=float))
    logt = np.log(np.asarray(true, dtype=float))
    err = pd.Series(logp - logt)
    tasks = pd.Series(task_ids(frame))
    scale = err.groupby(tasks).median()
    row_scale = tasks.map(scale).to_numpy(dtype=float)
    schedule = err.to_numpy() - row_scale
    dev_p = logp - pd.Series(logp).groupby(tasks).transform("mean").to_numpy()
    dev_t = logt - pd.Series(logt).groupby(tasks).transform("mean").to_numpy()
    spread = float(np.sum(dev_t * dev_t))
    return {"scale_abs_log": float(scale.abs().median()), "scale_bias_log": float(scale.median()),
            "schedule_abs_log": float(np.median(np.abs(schedule))),
            "median_ape_scale_known": float(np.median(np.abs(np.expm1(schedule)))),
            "median_ape_schedules_known": float(np.median(np.abs(np.expm1(row_scale)))),
            "schedule_slope": float(np.sum(dev_p * dev_t) / spread) if spread > 0 else math.nan}


def model_totals(frame: pd.DataFrame, pred: np.ndarray, true: np.ndarray, model: str) -> list[dict[str, object]]:
    """A model's summed latency, predicted vs measured, over its operators (x their counts).

    Per operator and thread count the default schedule's row stands for the model (the first row
    when no default was measured); both sums use the same rows.
    """
    df = frame[["workload_key", "threads"]].copy()
    df["count"] = pd.to_numeric(frame["count"], errors="coerce").fillna(1.0) if "count" in frame else 1.0
    df["default"] = (frame["schedule_kind"] == "default") if "schedule_kind" in frame else True
    df["pred"], df["true"] = pred, true
    df = df.sort_values("default", ascending=False, kind="stable").groupby(["workload_key", "threads"]).head(1)
    out = []
    for t, g in df.groupby("threads"):
        p, m = float((g["pred"] * g["count"]).sum()), float((g["true"] * g["count"]).sum())
        out.append({"model": model, "threads": int(t), "operators": len(g), "predicted_s": p,
                       "measured_s": m, "error": p / m - 1.0})
    return out
