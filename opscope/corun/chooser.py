"""A co-run choice that is never worse than running in sequence, unless the prediction says so with margin.

``choose_arrangement`` (``opscope.corun.partition``) picks the smallest predicted makespan; when
the co-run latencies it uses are wrong, the pick can be slower than simply running the tasks one
after the other.  ``choose_safe`` replaces that with a rule that keeps the safe policy unless the
prediction's own held-out error says the gain is real:

- sequential's makespan is the sum of the tasks' measured alone latencies on all cores;
- for every other arrangement the co-run latencies come from ``estimate(arrangement, alone)``,
  which also returns ``e``, the relative error those latencies had on held-out pairs (the
  interference model's own validation, ``InterferenceModel.estimate``), and the method's name;
- if every true co-run latency is within ``e`` of its prediction, the true makespan is at most
  ``predicted / (1 - e)``: the progress-rate makespan is non-decreasing in each co-run latency and
  grows at most in proportion when all of them grow by the same factor (it is
  ``T_A + (1 - T_A/T_B) L_B`` for two tasks, ``T >= L``);
- sequential's own prediction has an error too (``sequential(sum of alone latencies)`` gives the
  predicted makespan and its held-out error ``e_seq``): its true makespan is at least
  ``M_seq / (1 + e_seq)``;
- the arrangement with the smallest worst case is used only when that worst case is below
  sequential's best case, i.e. when the predicted gain exceeds what both errors could take away.
  Otherwise the tasks run in sequence.

The ``Decision`` says which it did and why, in one line.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from opscope.corun.partition import Arrangement, Choice, all_arrangements, shared_makespan
from opscope.errors import OpscopeError

#: ``estimate(arrangement, alone latencies) -> (co-run latencies, relative error bound, method name)``
Estimate = Callable[[Arrangement, tuple[float, ...]], tuple[tuple[float, ...], float, str]]
#: ``sequential(sum of alone latencies) -> (predicted makespan, relative error bound, method name)``
SequentialEstimate = Callable[[float], tuple[float, float, str]]


@dataclass(frozen=True)
class Option:
    """One arrangement as the chooser saw it."""

    arrangement: Arrangement
    predicted_s: float
    #: the relative error bound of its co-run latencies (0 for sequential: measured alone latencies)
    error_bound: float
    method: str

    @property
    def worst_s(self) -> float:
        """The makespan if every co-run latency was under-predicted by the full error bound."""
        return self.predicted_s / (1.0 - self.error_bound) if self.error_bound < 1.0 else math.inf

    @property
    def best_s(self) -> float:
        """The makespan if it was over-predicted by the full error bound."""
        return self.predicted_s / (1.0 + self.error_bound)


@dataclass(frozen=True)
class Decision:
    """What was chosen among ``options`` (sequential first) and why."""

    options: tuple[Option, ...]
    chosen: Arrangement
    used_prediction: bool
    reason: str

    @property
    def sequential(self) -> Option:
        return self.options[0]

    @property
    def choice(self) -> Choice:
        """The predicted makespan of every arrangement (as ``choose_arrangement`` gives it)."""
        return Choice(tuple((o.arrangement, o.predicted_s) for o in self.options))

    @property
    def chosen_predicted_s(self) -> float:
        return next(o.predicted_s for o in self.options if o.arrangement == self.chosen)

    def predicted_for(self, arrangement: Arrangement) -> float | None:
        return next((o.predicted_s for o in self.options if o.arrangement == arrangement), None)


def _ms(x: float) -> str:
    return f"{x * 1e3:.3f} ms"


def choose_safe(curves, cores: tuple[int, ...], estimate: Estimate | None = None,
                sequential: SequentialEstimate | None = None) -> Decision:
    """Sequential unless an arrangement's worst case (prediction / (1 - error bound)) is below
    sequential's best case (prediction / (1 + its error bound)).

    ``curves``: each task's latency alone per core count (the slot sizes and all ``cores`` must be
    on them).  Without ``estimate`` nothing bounds a co-run prediction: the tasks run in sequence.
    Without ``sequential`` its makespan is taken as the sum of alone latencies, exactly.
    """
    curves = tuple(curves)
    if len(curves) < 2:
        raise OpscopeError(f"a co-run choice needs at least two tasks, got {len(curves)}")
    arrangements = all_arrangements(len(curves), tuple(cores))
    seq_arr = arrangements[0]
    total = sum(c.at(len(cores)) for c in curves)
    seq = Option(seq_arr, total, 0.0, "sum of alone latencies")
    if sequential is not None:
        made, seq_bound, seq_method = sequential(total)
        if not (made > 0 and seq_bound >= 0):
            raise OpscopeError(f"sequential estimate gave makespan {made!r}, error bound {seq_bound!r}")
        seq = Option(seq_arr, float(made), float(seq_bound), seq_method)
    options = [seq]
    for arr in arrangements[1:]:
        alone = tuple(c.at(len(s.cores)) for c, s in zip(curves, arr.slots))
        if estimate is None:
            options.append(Option(arr, shared_makespan(alone, alone), math.inf, "none"))
            continue
        corun, bound, method = estimate(arr, alone)
        if len(corun) != len(alone) or any(not (t > 0) for t in corun):
            raise OpscopeError(f"{arr.label}: the estimate gave {corun} for {len(alone)} tasks")
        if not bound >= 0:
            raise OpscopeError(f"{arr.label}: error bound {bound!r} is not a non-negative number")
        options.append(Option(arr, shared_makespan(alone, corun), float(bound), method))
    best = min(options[1:], key=lambda o: (o.worst_s, o.predicted_s))
    gain = 1.0 - best.predicted_s / seq.predicted_s
    if estimate is None:
        return Decision(tuple(options), seq_arr, False,
                        f"sequential: no validated co-run prediction (an interference model fitted on co-run "
                        f"records bounds its error); sequential {_ms(seq.predicted_s)}")
    seq_note = f", sequential's own bound {seq.error_bound:.0%}" if seq.error_bound else ""
    if best.worst_s < seq.best_s:
        return Decision(tuple(options), best.arrangement, True,
                        f"{best.arrangement.label}: predicted {_ms(best.predicted_s)} ({best.method}), "
                        f"{gain:.0%} below sequential {_ms(seq.predicted_s)}, more than its held-out error "
                        f"bound {best.error_bound:.0%}{seq_note} (worst case {_ms(best.worst_s)} < "
                        f"{_ms(seq.best_s)})")
    bound = "unbounded" if math.isinf(best.error_bound) else f"{best.error_bound:.0%}"
    return Decision(tuple(options), seq_arr, False,
                    f"sequential: the best predicted gain, {best.arrangement.label} at {gain:.0%} "
                    f"({_ms(best.predicted_s)} vs {_ms(seq.predicted_s)}), does not exceed the held-out "
                    f"error bound {bound} of its {best.method} prediction{seq_note}")


def model_estimate(model, tasks) -> Estimate:
    """An ``Estimate`` for ``tasks`` from a fitted ``InterferenceModel``: per member its validated
    prediction (``estimate``); the arrangement's bound is the largest of its members'."""
    import pandas as pd

    from opscope.corun.measure import MemberResult
    from opscope.corun.table import member_rows

    def estimate(arr: Arrangement, alone: tuple[float, ...]) -> tuple[tuple[float, ...], float, str]:
        members = tuple(MemberResult(t.name, t.keys, tuple(k.name for k in t.kernels), s.cores, s.threads, s.pinned,
                                     t.flops, t.bytes, (a,), ()) for t, s, a in zip(tasks, arr.slots, alone))
        frame = pd.DataFrame(member_rows(members, arr, require_together=False))
        pred, bound, methods = model.estimate(frame)
        return tuple(float(x) for x in pred), float(max(bound)), "/".join(sorted(set(methods)))
    return estimate


def model_sequential(model) -> SequentialEstimate:
    """A ``SequentialEstimate`` from a fitted ``InterferenceModel``: its validated prediction of a
    sequential run from the sum of alone latencies (a bound of inf where it saw no sequential run)."""
    import pandas as pd

    def sequential(total: float) -> tuple[float, float, str]:
        row = {"kind": "sequential", "alone_s": total, "shared": 0}
        pred, bound, methods = model.estimate(pd.DataFrame([row]))
        return float(pred[0]), float(bound[0]), methods[0]
    return sequential

