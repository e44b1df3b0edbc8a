"""Predictor-guided search against fake collector roles, and the offline trial counts by hand."""

import numpy as np
import pytest

from opscope.collector.roles import Built, Candidate, RunResult
from opscope.predictor.evaluation.synthetic import synthetic_operators
from opscope.predictor.models.base import FramePredictor
from opscope.predictor.search import guided_search, random_expected_trials, trials_to_within

OP = synthetic_operators(seed=1, models=1, per_model=1)[0]


def _cands(n):
    out = [Candidate(OP.key, "default", "default", "[]", (), "")]
    for i in range(1, n):
        out.append(Candidate(OP.key, f"s{i}", "sampled", "[]", (("unroll", i),), ""))
    return out


class KnobPredictor(FramePredictor):
    """Predicts from the unroll knob: a stand-in with a known order (higher unroll = faster)."""

    def fit(self, frame, y=None):
        return self

    def predict(self, frame):
        unroll = frame.get("knob_unroll")
        unroll = np.zeros(len(frame)) if unroll is None else unroll.fillna(0).to_numpy(float)
        return 1.0 / (1.0 + unroll)


class FakeBuilder:
    def __init__(self, fail=()):
        self.fail, self.built = set(fail), []

    def build(self, batch):
        self.built += [c.schedule_id for c in batch]
        return [Built(c, error="boom") if c.schedule_id in self.fail else Built(c, artifact=c.schedule_id)
                for c in batch]


class FakeRunner:
    def __init__(self, truth):
        self.truth = truth

    def run(self, jobs):
        return [RunResult("ok", (self.truth[j],) * 3, threads=1) for j in jobs]


def test_measures_only_the_predicted_best_and_the_default():
    cands = _cands(20)
    truth = {c.schedule_id: 1.0 / (1 + dict(c.knobs).get("unroll", 0)) for c in cands}
    builder = FakeBuilder(fail={"s18"})
    res = guided_search(KnobPredictor(), OP, cands, target="t", threads=1, budget=4, builder=builder,
                        runner=FakeRunner(truth), make_job=lambda b, t: b.artifact, batch=2, progress=None)
    # top-3 predicted (unroll 19, 18, 17) plus the default baseline inside the budget of 4
    assert builder.built == ["s19", "s18", "s17", "default"]
    assert [t.status for t in res.trials] == ["ok", "build_error", "ok", "ok"]
    assert res.best_s == pytest.approx(1 / 20)
    assert res.default_s == pytest.approx(1.0)
    assert res.trials_to_within(0.05) == 1
    assert res.sampled == 20
    df = res.frame()
    assert df["best_so_far_s"].iloc[-1] == pytest.approx(1 / 20)


def test_trials_to_within_by_hand():
    # best is 1.0; 1.04 is within 5 %, 1.06 is not; order 2.0, 1.06, 1.04 -> third trial
    assert trials_to_within(np.array([2.0, 1.06, 1.04, 1.0]), 1.0, 0.05) == 3
    assert trials_to_within(np.array([2.0, 3.0]), 1.0, 0.05) is None


def test_random_expected_trials_by_hand():
    # N = 4 schedules, G = 1 within 5 % of the best -> (4 + 1) / (1 + 1) = 2.5
    assert random_expected_trials(np.array([1.0, 2.0, 3.0, 4.0])) == pytest.approx(2.5)
    # simulation agrees with the formula
    rng = np.random.default_rng(0)
    lat = np.array([1.0, 1.02, 2.0, 3.0, 4.0, 5.0])
    sims = [trials_to_within(rng.permutation(lat), 1.0) for _ in range(20000)]
    assert np.mean(sims) == pytest.approx(random_expected_trials(lat), rel=0.03)


def test_predicted_best_is_the_least_prediction_over_ok_candidates_at_the_thread_count():
    import pandas as pd

    from opscope.predictor.search import candidates_frame, predicted_best

    other = synthetic_operators(seed=2, models=1, per_model=1)[0]
    cands = _cands(6)  # default (unroll 0) and s1..s5 (unroll 1..5)
    rows = candidates_frame(OP, cands, "t", threads=1)
    rows["status"] = "ok"
    rows.loc[rows["schedule_id"] == "s5", "status"] = "run_error"  # a failed schedule is no candidate
    at2 = candidates_frame(OP, [Candidate(OP.key, "s9", "sampled", "[]", (("unroll", 9),), "")], "t", threads=2)
    at2["status"] = "ok"  # another thread count: not a candidate at 1 thread
    store = pd.concat([rows, at2], ignore_index=True)
    got = predicted_best(KnobPredictor(), [OP, other], store, target="t", threads=1)
    # KnobPredictor gives 1 / (1 + unroll): the best ok candidate at 1 thread is s4 (unroll 4); the
    # operator with no stored rows keeps its default schedule (unroll 0)
    assert got == pytest.approx([1 / (1 + 4), 1 / (1 + 0)])
    got2 = predicted_best(KnobPredictor(), [OP], store, target="t", threads=2)
    assert got2 == pytest.approx([1 / (1 + 9)])
