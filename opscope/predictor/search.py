"""Predictor-guided schedule search: sample many schedules, rank them by predicted latency, measure
only the top ``budget``, and say how close to the best found each trial got.

The roles come from the collector (``ScheduleSampler`` -> ``Builder`` -> ``Runner``), so the
search runs against fakes in tests and against TVM for real.  ``trials_to_within`` and
``random_expected_trials`` score a search order offline on already-measured schedules: the first
is the number of measurements, in a given order, until one lands within ``tol`` of the best; the
second is the same number in expectation for uniformly random order without replacement,
``(N + 1) / (G + 1)`` for ``G`` good schedules among ``N``.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import numpy as np
import pandas as pd

from opscope.errors import PredictorError
from opscope.predictor.frames import operator_frame
from opscope.predictor.models.base import FramePredictor
from opscope.workloads.operator import Operator


@dataclass(frozen=True)
class Trial:
    schedule_id: str
    schedule_kind: str
    rank: int  # position in the predictor's order, 0 = predicted fastest
    predicted_s: float
    measured_s: float  # median of the repeats; NaN when the schedule failed
    status: str
    error: str = ""


@dataclass(frozen=True)
class SearchResult:
    op_name: str
    threads: int
    sampled: int  # candidates the predictor ranked
    trials: tuple[Trial, ...]  # measured, in measurement order

    @property
    def best_s(self) -> float:
        ok = [t.measured_s for t in self.trials if t.status == "ok"]
        return min(ok) if ok else math.nan

    @property
    def default_s(self) -> float:
        ok = [t.measured_s for t in self.trials if t.status == "ok" and t.schedule_kind == "default"]
        return ok[0] if ok else math.nan

    def frame(self) -> pd.DataFrame:
        df = pd.DataFrame([t.__dict__ for t in self.trials])
        df.insert(0, "trial", np.arange(1, len(df) + 1))
        df["best_so_far_s"] = df["measured_s"].cummin()
        return df

    def trials_to_within(self, tol: float = 0.05) -> int | None:
        return trials_to_within(np.array([t.measured_s for t in self.trials]), self.best_s, tol)


def candidates_frame(op: Operator, candidates: Sequence[Any], target: str, threads: int) -> pd.DataFrame:
    """Store-format rows (no label) for schedule candidates: the operator's columns plus knobs."""
    base = operator_frame([op], target, threads)
    rows = []
    for c in candidates:
        knobs = dict(c.knobs)
        row = base.iloc[0].to_dict()
        row.update(schedule_id=c.schedule_id, schedule_kind=c.schedule_kind, trace_json=c.trace_json,
                   knobs_json=json.dumps(knobs, sort_keys=True, default=str))
        row.update({f"knob_{k}": v for k, v in knobs.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def guided_search(predictor: FramePredictor, op: Operator, candidates: Sequence[Any], *, target: str,
                  threads: int, budget: int, builder: Any, runner: Any, make_job: Any, batch: int = 4,
                  progress: TextIO | None = sys.stderr) -> SearchResult:
    """Rank ``candidates`` with ``predictor``; build and run the best ``budget`` of them.

    ``make_job(built, threads) -> RunJob`` turns a built artifact into the runner's job (the
    collector's ``RunJob`` with the operator's arguments and the protocol).  The default schedule,
    when among the candidates, is always measured (as the baseline), inside the budget.
    """
    if budget < 1:
        raise PredictorError(f"budget must be >= 1, got {budget}")
    if not candidates:
        raise PredictorError(f"operator {op.name!r}: the sampler produced no candidates")
    frame = candidates_frame(op, candidates, target, threads)
    predicted = predictor.predict(frame)
    order = list(np.argsort(predicted, kind="stable"))
    chosen = order[:budget]
    defaults = [i for i in order if candidates[i].schedule_kind == "default"]
    if defaults and defaults[0] not in chosen:
        chosen = chosen[: budget - 1] + [defaults[0]]
    rank = {int(i): r for r, i in enumerate(order)}
    trials: list[Trial] = []
    for start in range(0, len(chosen), batch):
        group = [candidates[i] for i in chosen[start:start + batch]]
        built = builder.build(group)
        ok_built = [b for b in built if b.ok]
        results = iter(runner.run([make_job(b, threads) for b in ok_built]))
        for i, b in zip(chosen[start:start + batch], built):
            if b.ok:
                res = next(results)
                lat = float(np.median(res.latencies_s)) if res.status == "ok" and res.latencies_s else math.nan
                trials.append(Trial(b.candidate.schedule_id, b.candidate.schedule_kind, rank[int(i)],
                                    float(predicted[i]), lat, res.status, res.error))
            else:
                trials.append(Trial(b.candidate.schedule_id, b.candidate.schedule_kind, rank[int(i)],
                                    float(predicted[i]), math.nan, "build_error", b.error))
        if hasattr(builder, "discard"):
            builder.discard(built)
        if progress is not None:
            best = min((t.measured_s for t in trials if t.status == "ok"), default=math.nan)
            print(f"[tune {op.name}] {len(trials)}/{len(chosen)} measured, best {best * 1e6:.1f} us",
                  file=progress, flush=True)
    return SearchResult(op.name, threads, len(candidates), tuple(trials))


def trials_to_within(measured_in_order: np.ndarray, best: float, tol: float = 0.05) -> int | None:
    """1-based number of trials until one is within ``tol`` of ``best`` (None: never)."""
    good = np.flatnonzero(np.asarray(measured_in_order, dtype=float) <= best * (1 + tol))
    return int(good[0]) + 1 if good.size else None


def random_expected_trials(latencies: np.ndarray, tol: float = 0.05) -> float:
    """Expected trials for random order without replacement: (N + 1) / (G + 1)."""
    lat = np.asarray(latencies, dtype=float)
    good = int(np.sum(lat <= lat.min() * (1 + tol)))
    return (len(lat) + 1) / (good + 1)


def predicted_best(predictor: FramePredictor, ops: Sequence[Operator], rows: pd.DataFrame, *, target: str,
                   threads: int) -> np.ndarray:
    """Per operator, the predicted latency of the build with its best schedule among known candidates:
    the least prediction over its stored rows at ``threads`` whose status is ok (any schedule kind) and
    its default schedule.

    Not the prediction of the schedule that measured fastest: that schedule was picked for the error
    its measurement happened to have against the prediction, so its prediction sits above it (held-out
    sampled schedules in the fastest fifth of their operator were predicted a median 1.2x slow).  The
    least prediction over the candidates asks what a user without the measurements would: how fast the
    best of these schedules is."""
    frames = [operator_frame(list(ops), target, threads)]
    owner = list(range(len(ops)))
    if len(rows):
        index = {op.key: i for i, op in enumerate(ops)}
        ok = rows["status"].astype(str).eq("ok") if "status" in rows else pd.Series(True, index=rows.index)
        mine = rows[ok & rows["workload_key"].isin(index)
                    & (pd.to_numeric(rows["threads"], errors="coerce") == threads)]
        if len(mine):
            frames.append(mine)
            owner += [index[k] for k in mine["workload_key"]]
    batch = pd.concat(frames, ignore_index=True)
    predicted = np.asarray(predictor.predict(batch), dtype=float)
    if predicted.shape != (len(batch),):
        raise PredictorError(f"predictor returned {predicted.shape} predictions for {len(batch)} rows")
    out = np.full(len(ops), np.inf)
    np.minimum.at(out, np.asarray(owner), predicted)
    return out
