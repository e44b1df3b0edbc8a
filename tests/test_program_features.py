"""MetaSchedule's per-store program features, rebuilt from a row's workload_script and trace."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def _rows():
    from dense_rows import dense_rows

    return dense_rows()


def test_program_features_of_scheduled_functions():
    from opscope.predictor.features.program import COLUMNS, program_features

    _op, frame = _rows()
    X, skipped = program_features(frame)
    assert X.shape == (5, len(COLUMNS)) == (5, 328)
    assert np.isfinite(X[0]).all() and np.isfinite(X[1]).all()
    assert (X[1] == X[2]).all()  # the same schedule, once computed
    assert not np.allclose(X[0], X[1])  # vectorising and parallelising show in the features
    assert np.isnan(X[3]).all() and np.isnan(X[4]).all()
    reasons = dict(skipped)
    assert "other" in reasons and "stored without its TIR" in reasons["other"]
    assert any(k == frame["workload_key"].iloc[3] for k, _ in skipped)  # the bad trace is named too
