"""Fitted scikit-learn trees written as plain JSON arrays and evaluated without scikit-learn.

A saved forest must load on another machine with another scikit-learn, so it is stored as what it
is: per tree the left/right child, split feature and threshold of every node and the leaf values.
Prediction walks all rows down a tree at once, one depth level per step, comparing float32
features with the thresholds exactly as scikit-learn does.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from opscope.errors import PredictorError


def export_tree(tree: Any) -> dict[str, list]:
    """``DecisionTreeRegressor.tree_`` -> JSON-ready arrays."""
    return {
        "left": tree.children_left.tolist(),
        "right": tree.children_right.tolist(),
        "feature": tree.feature.tolist(),
        "threshold": tree.threshold.tolist(),
        "value": tree.value[:, 0, 0].tolist(),
    }


class JsonTrees:
    """A sum of trees, times ``scale``, plus ``offset`` (a forest's mean or a boosting's sum)."""

    def __init__(self, trees: list[dict[str, list]], scale: float, offset: float) -> None:
        if not trees:
            raise PredictorError("tree ensemble: no trees")
        try:
            self.trees = [
                (
                    np.asarray(t["left"], dtype=np.int64),
                    np.asarray(t["right"], dtype=np.int64),
                    np.asarray(t["feature"], dtype=np.int64),
                    np.asarray(t["threshold"], dtype=np.float64),
                    np.asarray(t["value"], dtype=np.float64),
                )
                for t in trees
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise PredictorError(f"tree ensemble: malformed tree ({exc!r})") from exc
        self.scale = float(scale)
        self.offset = float(offset)

    def predict(self, X: np.ndarray) -> np.ndarray:
        X32 = np.asarray(X, dtype=np.float32)
        rows = np.arange(len(X32))
        total = np.zeros(len(X32))
        for left, right, feature, threshold, value in self.trees:
            node = np.zeros(len(X32), dtype=np.int64)
            active = rows
            while active.size:
                cur = node[active]
                inner = left[cur] != -1
                active, cur = active[inner], cur[inner]
                if not active.size:
                    break
                go_left = X32[active, feature[cur]] <= threshold[cur]
                node[active] = np.where(go_left, left[cur], right[cur])
            total += value[node]
        return total * self.scale + self.offset

    def to_json(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "offset": self.offset,
            "trees": [
                {"left": lf.tolist(), "right": r.tolist(), "feature": f.tolist(), "threshold": t.tolist(),
                 "value": v.tolist()}
                for lf, r, f, t, v in self.trees
            ],
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> JsonTrees:
        try:
            return cls(d["trees"], d["scale"], d["offset"])
        except KeyError as exc:
            raise PredictorError(f"tree ensemble: missing field {exc}") from exc
