"""The safe co-run chooser: a predicted arrangement only when its gain beats the prediction's error."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opscope.corun.chooser import choose_safe
from opscope.corun.partition import LatencyCurve, shared_makespan

CORES = (0, 1)


def flat(name: str, t: float) -> LatencyCurve:
    """A task that does not get faster on a second core."""
    return LatencyCurve(name, ((1, t), (2, t)))


def fake(slowdown: dict[str, float], bound: float):
    """A model whose prediction is alone x a fixed slowdown per kind, with a known error bound."""
    def estimate(arr, alone):
        return tuple(a * slowdown[arr.kind] for a in alone), bound, "fake"
    return estimate


def test_gain_above_the_error_bound_uses_the_prediction():
    # sequential: 2 + 2 = 4 ms; split(1+1): each 2 ms x 1.1 = 2.2 ms at once -> makespan 2.2 ms,
    # a predicted gain of 1 - 2.2 / 4 = 45%; with a 30% bound the worst case is 2.2 / 0.7 = 3.14 ms < 4
    curves = (flat("a", 2e-3), flat("b", 2e-3))
    d = choose_safe(curves, CORES, fake({"disjoint": 1.1, "shared": 2.0}, 0.30))
    assert d.used_prediction and d.chosen.kind == "disjoint"
    assert d.sequential.predicted_s == pytest.approx(4e-3)
    assert d.chosen_predicted_s == pytest.approx(2.2e-3)
    worst = next(o.worst_s for o in d.options if o.arrangement == d.chosen)
    assert worst == pytest.approx(2.2e-3 / 0.7)
    assert d.reason.startswith("split(1+1): predicted 2.200 ms (fake), 45% below sequential 4.000 ms")
    assert "error bound 30%" in d.reason


def test_gain_below_the_error_bound_keeps_sequential():
    # the same 45% predicted gain, but the model's held-out error is 50%: worst case 2.2 / 0.5 = 4.4 ms > 4 ms
    curves = (flat("a", 2e-3), flat("b", 2e-3))
    d = choose_safe(curves, CORES, fake({"disjoint": 1.1, "shared": 2.0}, 0.50))
    assert not d.used_prediction and d.chosen.kind == "sequential"
    assert d.reason == ("sequential: the best predicted gain, split(1+1) at 45% (2.200 ms vs 4.000 ms), does not "
                        "exceed the held-out error bound 50% of its fake prediction")
    # a gain exactly equal to what the error can take away is not enough: 2.2 / (1 - 0.45) = 4.0
    edge = choose_safe(curves, CORES, fake({"disjoint": 1.1, "shared": 2.0}, 0.45))
    assert edge.chosen.kind == "sequential"


def test_sequentials_own_error_bound_counts_in_both_directions():
    # split's worst case is 2.2 / 0.7 = 3.143 ms (30% bound).  Sequential predicted 4 ms:
    # with a 20% bound its best case is 4 / 1.2 = 3.333 ms > 3.143 ms -> split is still safe;
    # with a 30% bound its best case is 4 / 1.3 = 3.077 ms < 3.143 ms -> keep sequential.
    curves = (flat("a", 2e-3), flat("b", 2e-3))
    model = fake({"disjoint": 1.1, "shared": 2.0}, 0.30)
    safe = choose_safe(curves, CORES, model, lambda total: (total, 0.20, "sum"))
    assert safe.chosen.kind == "disjoint" and "sequential's own bound 20%" in safe.reason
    assert safe.sequential.best_s == pytest.approx(4e-3 / 1.2)
    kept = choose_safe(curves, CORES, model, lambda total: (total, 0.30, "sum"))
    assert kept.chosen.kind == "sequential" and "sequential's own bound 30%" in kept.reason
    # a calibrated sequential prediction (x1.5: 6 ms) is what the gain is measured against
    calibrated = choose_safe(curves, CORES, fake({"disjoint": 1.1, "shared": 2.0}, 0.5),
                             lambda total: (1.5 * total, 0.0, "median ratio"))
    assert calibrated.sequential.predicted_s == pytest.approx(6e-3) and calibrated.chosen.kind == "disjoint"


def test_without_a_validated_model_the_tasks_run_in_sequence():
    curves = (flat("a", 2e-3), flat("b", 2e-3))
    d = choose_safe(curves, CORES)
    assert d.chosen.kind == "sequential" and not d.used_prediction
    assert "no validated co-run prediction" in d.reason
    # the predictions are still listed: split at no interference would be 2 ms
    assert d.predicted_for(d.options[1].arrangement) == pytest.approx(2e-3)


def test_an_unbounded_error_never_acts():
    curves = (flat("a", 2e-3), flat("b", 2e-3))
    d = choose_safe(curves, CORES, fake({"disjoint": 1.0, "shared": 1.0}, math.inf))
    assert d.chosen.kind == "sequential" and "unbounded" in d.reason


@settings(max_examples=200, deadline=None)
@given(a1=st.floats(1e-4, 1e-2), a2=st.floats(1e-4, 1e-2), b1=st.floats(1e-4, 1e-2), b2=st.floats(1e-4, 1e-2),
       slow=st.tuples(st.floats(1.0, 3.0), st.floats(1.0, 3.0)), bound=st.floats(0.0, 0.9),
       seq_bound=st.floats(0.0, 0.9), where=st.tuples(st.floats(0, 1), st.floats(0, 1), st.floats(0, 1)))
def test_when_the_error_stays_within_its_bound_the_choice_never_loses_to_sequential(a1, a2, b1, b2, slow, bound,
                                                                                    seq_bound, where):
    """The guarantee behind the rule: true co-run latencies anywhere within the bound of the
    prediction (and no faster than alone) give a true makespan at most sequential's."""
    curves = (LatencyCurve("a", ((1, a1), (2, a2))), LatencyCurve("b", ((1, b1), (2, b2))))

    def estimate(arr, alone):
        return tuple(a * s for a, s in zip(alone, slow)), bound, "fake"

    d = choose_safe(curves, CORES, estimate, lambda total: (total, seq_bound, "sum"))
    pred_seq = a2 + b2
    # the true sequential makespan, anywhere within its own bound of the prediction
    lo, hi = pred_seq / (1 + seq_bound), pred_seq / (1 - seq_bound)
    seq = lo + where[2] * (hi - lo)
    if d.chosen.kind == "sequential":
        assert d.sequential.predicted_s == pytest.approx(pred_seq)
        return
    alone = tuple(c.at(len(s.cores)) for c, s in zip(curves, d.chosen.slots))
    pred = tuple(a * s for a, s in zip(alone, slow))
    # a true latency T with |pred - T| / T <= bound lies in [pred / (1 + bound), pred / (1 - bound)]
    true = tuple(max(a, p / (1 + bound) + w * (p / (1 - bound) - p / (1 + bound)))
                 for a, p, w in zip(alone, pred, where))
    assert shared_makespan(alone, true) <= seq * (1 + 1e-9)


def test_model_estimate_uses_the_validated_method_and_its_bound():
    from test_corun_interference import synthetic_frame

    from opscope.corun.chooser import model_estimate
    from opscope.corun.interference import InterferenceModel
    from opscope.corun.measure import Task
    from opscope.corun.partition import all_arrangements

    frame = synthetic_frame(12)
    model = InterferenceModel(learner="xgboost", n_estimators=150).fit(frame)
    # the law: sharing cores doubles latency, and every baseline but the median gets that wrong
    assert model.method_["shared"] in ("model", "median_slowdown")
    shared_err = model.validation("shared", model.method_["shared"])
    assert shared_err.median < model.validation("shared", "no_interference").median

    class K:
        def __init__(self, name, nbytes):
            self.name, self.key = name, name
            self.features = {"flops": 1e6, "bytes": nbytes}

    tasks = (Task("a", (K("a", 1e5),)), Task("b", (K("b", 1e5),)))
    shared = all_arrangements(2, CORES)[-1]
    corun, bound, method = model_estimate(model, tasks)(shared, (1e-3, 1e-3))
    assert method == model.method_["shared"]
    assert bound == pytest.approx(shared_err.bound)
    assert corun[0] == pytest.approx(2e-3, rel=0.1)


def test_the_model_validates_the_sequential_prediction_too():
    import pandas as pd
    from test_corun_interference import synthetic_frame

    from opscope.corun.chooser import model_sequential
    from opscope.corun.interference import InterferenceModel

    frame = synthetic_frame(8)
    # one sequential run per pair whose chain takes 1.5x the sum of its alone latencies
    seq = frame.groupby("pair_id").agg(alone_s=("alone_s", "sum")).reset_index()
    seq = seq.assign(kind="sequential", together_s=1.5 * seq["alone_s"], slowdown=1.5, shared=0)
    model = InterferenceModel(learner="linear").fit(pd.concat([frame, seq], ignore_index=True))
    assert model.method_["sequential"] == "median_slowdown"
    made, bound, method = model_sequential(model)(4e-3)
    assert (made, method) == (pytest.approx(6e-3), "median_slowdown") and bound == pytest.approx(0.0)
    # without sequential runs there is nothing to bound it with: never act on a prediction
    plain = InterferenceModel(learner="linear").fit(frame)
    assert math.isinf(model_sequential(plain)(4e-3)[1])
