"""Partition search on hand-made latency curves whose answers are worked out by hand here."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opscope.corun.partition import (
    LatencyCurve,
    best_split,
    choose_arrangement,
    compositions,
    equilibria,
    equilibrium_search,
    is_equilibrium,
    shared_makespan,
    split_makespan,
)
from opscope.errors import OpscopeError


def perfect(name: str, work: float, n: int) -> LatencyCurve:
    """Perfect scaling: latency = work / cores."""
    return LatencyCurve.from_mapping(name, {c: work / c for c in range(1, n + 1)})


def test_two_perfectly_scaling_ops_split_in_proportion_to_work():
    # A does 12 units, B 6 units, 3 cores.  Splits: (1,2): max(12/1, 6/2) = 12;
    # (2,1): max(12/2, 6/1) = 6.  The optimum gives A two cores.
    a, b = perfect("A", 12.0, 3), perfect("B", 6.0, 3)
    s = best_split([a, b], 3)
    assert s.cores == (2, 1)
    assert s.makespan_s == pytest.approx(max(12.0 / 2, 6.0 / 1))
    # (1,2) is not an equilibrium: A (the bottleneck) gains by taking a core from B.
    assert not is_equilibrium([a, b], (1, 2))
    assert [e.cores for e in equilibria([a, b], 3)] == [(2, 1)]


def test_eight_cores_proportional_split():
    # work 30 and 10 on 8 cores: splits (6,2): max(5, 5) = 5 is the balanced optimum;
    # (5,3): max(6, 3.33) = 6; (7,1): max(4.29, 10) = 10.
    a, b = perfect("A", 30.0, 8), perfect("B", 10.0, 8)
    s = best_split([a, b], 8)
    assert s.cores == (6, 2)
    assert s.makespan_s == pytest.approx(5.0)
    assert equilibrium_search([a, b], 8).cores == (6, 2)  # from (4,4): 7.5 -> 6 -> 5, then no move helps


def test_irregular_curve_has_a_local_equilibrium_that_is_not_optimal():
    # A is slower on 2 and 3 cores than on 1 (bad parallel schedule) but fast on 4:
    # A: 1->10, 2->11, 3->11, 4->2.5 (5 cores machine, B gets the rest).
    # B: 1->3, 2->2, 3->2, 4->2.
    a = LatencyCurve.from_mapping("A", {1: 10.0, 2: 11.0, 3: 11.0, 4: 2.5})
    b = LatencyCurve.from_mapping("B", {1: 3.0, 2: 2.0, 3: 2.0, 4: 2.0})
    # splits of 5: (1,4)=max(10,2)=10, (2,3)=11, (3,2)=11, (4,1)=max(2.5,3)=3
    assert best_split([a, b], 5).cores == (4, 1)
    assert best_split([a, b], 5).makespan_s == pytest.approx(3.0)
    eq = {e.cores for e in equilibria([a, b], 5)}
    # (1,4): moving a core to A gives (2,3) = 11 > 10, moving one to B is impossible -> equilibrium.
    assert eq == {(1, 4), (4, 1)}
    assert equilibrium_search([a, b], 5, start=(1, 4)).cores == (1, 4)  # stuck locally


def test_three_tasks_dynamic_programming_matches_enumeration():
    curves = [perfect("A", 9.0, 6), LatencyCurve.from_mapping("B", {1: 4.0, 2: 3.0, 3: 3.0, 4: 3.0}),
              perfect("C", 3.0, 6)]
    # by hand: (4,1,1) -> max(2.25, 4, 3) = 4; (3,2,1) -> max(3, 3, 3) = 3: the optimum
    s = best_split(curves, 6)
    assert s.cores == (3, 2, 1)
    assert s.makespan_s == pytest.approx(3.0)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(st.floats(0.1, 100.0), min_size=6, max_size=6), min_size=2, max_size=3),
    st.integers(3, 6),
)
def test_best_split_is_the_minimum_over_all_splits(latencies, total):
    curves = [LatencyCurve.from_mapping(f"t{i}", {c + 1: t for c, t in enumerate(ls)})
              for i, ls in enumerate(latencies)]
    if total < len(curves):
        return
    brute = min(split_makespan(curves, c) for c in compositions(total, len(curves)))
    assert best_split(curves, total).makespan_s == pytest.approx(brute)
    # the optimum is always an equilibrium; equilibrium search never ends worse than its start
    assert is_equilibrium(curves, best_split(curves, total).cores)
    assert equilibrium_search(curves, total).makespan_s >= brute - 1e-12


def test_compositions_count():
    # C(n-1, k-1): 8 cores into 2 tasks -> 7 splits, 6 cores into 3 -> 10
    assert len(compositions(8, 2)) == 7
    assert len(compositions(6, 3)) == 10
    assert all(sum(c) == 6 and min(c) >= 1 for c in compositions(6, 3))


def test_shared_makespan_two_tasks_by_hand():
    # A alone 2 s, B alone 4 s; co-running, A takes 3 s and B 6 s (1.5x slowdown each).
    # A finishes at 3 s, having done 3/6 = half of B; B finishes its half alone in 2 s -> 5 s.
    assert shared_makespan((2.0, 4.0), (3.0, 6.0)) == pytest.approx(3.0 + (1 - 3.0 / 6.0) * 4.0)
    # No interference at all: makespan = the longer task.
    assert shared_makespan((2.0, 4.0), (2.0, 4.0)) == pytest.approx(4.0)
    # Perfect time sharing (each 2x slower) is exactly sequential.
    assert shared_makespan((2.0, 4.0), (4.0, 8.0)) == pytest.approx(6.0)


def test_choose_arrangement_prefers_split_when_kernels_do_not_scale():
    # Neither kernel gains from a second core: split (1,1) = max(1, 2) = 2 beats sequential 1 + 2 = 3.
    a = LatencyCurve.from_mapping("A", {1: 1.0, 2: 1.0})
    b = LatencyCurve.from_mapping("B", {1: 2.0, 2: 2.0})
    ch = choose_arrangement([a, b], (0, 1))
    assert ch.chosen.kind == "disjoint"
    assert ch.chosen_makespan_s == pytest.approx(2.0)
    by_label = {arr.label: t for arr, t in ch.predicted}
    assert by_label["sequential(2c)"] == pytest.approx(3.0)
    assert by_label["shared(2c x2)"] == pytest.approx(3.0)  # no interference model: time sharing


def test_choose_arrangement_prefers_sequential_when_kernels_scale_perfectly():
    # Perfect scaling: sequential = 4/2 + 2/2 = 3; split (1,1) = max(4, 2) = 4.
    ch = choose_arrangement([perfect("A", 4.0, 2), perfect("B", 2.0, 2)], (0, 1))
    assert ch.chosen.kind == "sequential"
    assert ch.chosen_makespan_s == pytest.approx(3.0)


def test_choose_arrangement_uses_predicted_corun_for_shared():
    a, b = perfect("A", 4.0, 2), perfect("B", 2.0, 2)
    # predicted co-run latencies with little interference: 2.2 and 1.1 -> makespan 2.2 + 0 = 2.2
    ch = choose_arrangement([a, b], (0, 1), shared_corun_s=(2.2, 1.1))
    assert ch.chosen.kind == "shared"
    assert ch.chosen_makespan_s == pytest.approx(1.1 + (1 - 1.1 / 2.2) * 2.0)


def test_bad_curves_raise_clear_errors():
    with pytest.raises(OpscopeError, match="not positive"):
        LatencyCurve.from_mapping("A", {1: 0.0})
    with pytest.raises(OpscopeError, match="no latency measured for 2 cores"):
        LatencyCurve.from_mapping("A", {1: 1.0, 4: 0.5}).at(2)
    with pytest.raises(OpscopeError, match="cannot each get a core"):
        best_split([perfect("A", 1, 2), perfect("B", 1, 2), perfect("C", 1, 2)], 2)


def test_every_split_enumerated_once():
    seen = compositions(5, 3)
    assert len(seen) == len(set(seen))
    expected = {c for c in itertools.product(range(1, 4), repeat=3) if sum(c) == 5}
    assert set(seen) == expected
