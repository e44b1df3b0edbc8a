"""Operators side by side: co-run measurement, interference model and core partitioning.

Modules (each small, imported on use so that ``import opscope.corun`` stays cheap):

- ``partition``: latency curves, exact and equilibrium core splits, arrangements and the choice;
- ``kernels``: PrimFuncs / Operators compiled to shared libraries a worker can load;
- ``worker``: long-lived measuring processes (the collector's JSON-line workers) placed on core sets;
- ``measure``: alone / together / makespan measurement of tasks under an arrangement;
- ``table``: co-run records in the store's ``corun_*`` tables (its schema, version 5 on), and the frame;
- ``contention``: what co-running tasks contend for (bandwidth per level, caches, cores);
- ``held_out``: the two baselines, folds and splits that keep pairs (or operators) held out;
- ``interference``: the learned interference model, its own validation and its evaluation;
- ``chooser``: the choice that keeps to sequential unless a gain beats the prediction's error;
- ``branches``: fork-join regions (independent branches) of a fused Relax graph;
- ``plan``: the model-level flow behind ``opscope corun``.

See docs/corun.md.
"""

from __future__ import annotations

from opscope.lazy import lazy_exports

_API = {
    "LatencyCurve": "opscope.corun.partition",
    "Arrangement": "opscope.corun.partition",
    "Slot": "opscope.corun.partition",
    "best_split": "opscope.corun.partition",
    "equilibria": "opscope.corun.partition",
    "equilibrium_search": "opscope.corun.partition",
    "shared_makespan": "opscope.corun.partition",
    "choose_arrangement": "opscope.corun.partition",
    "all_arrangements": "opscope.corun.partition",
    "build_kernel": "opscope.corun.kernels",
    "WorkerPool": "opscope.corun.worker",
    "CorunProtocol": "opscope.store.protocol",
    "Task": "opscope.corun.measure",
    "measure_corun": "opscope.corun.measure",
    "measure_curve": "opscope.corun.measure",
    "save_corun": "opscope.corun.table",
    "load_corun": "opscope.corun.table",
    "corun_frame": "opscope.corun.table",
    "InterferenceModel": "opscope.corun.interference",
    "choose_safe": "opscope.corun.chooser",
    "Decision": "opscope.corun.chooser",
    "pair_split": "opscope.corun.interference",
    "evaluate_interference": "opscope.corun.interference",
    "find_regions": "opscope.corun.branches",
    "corun_model": "opscope.corun.plan",
}

__all__ = list(_API)


__getattr__ = lazy_exports(__name__, _API)
