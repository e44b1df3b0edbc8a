"""A whole model's timed arguments: inputs as the kernels get them, weights scaled to keep activations in range."""

from __future__ import annotations

import math

import numpy as np
import pytest

from opscope.collector.timing import model_args, random_array, weight_array


def test_weight_array_scales_by_fan_in_golden():
    rng = np.random.default_rng(0)
    w = weight_array(rng, (64, 16, 3, 3), "float32")
    # fan_in 16 * 3 * 3 = 144: uniform in +-sqrt(3 / 144) = +-0.1443, variance 1 / 144
    bound = math.sqrt(3 / 144)
    assert w.dtype == np.float32 and np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound
    assert w.var() == pytest.approx(1 / 144, rel=0.1)
    v = weight_array(rng, (512,), "float32")  # a bias or a norm's variance: positive
    assert v.min() >= 0.5 and v.max() < 1.5
    assert set(np.unique(weight_array(rng, (100,), "int64"))) <= set(range(8))


def test_scaled_weights_keep_a_deep_chain_in_range():
    rng = np.random.default_rng(1)
    x = random_array(rng, (1, 256), "float32").astype(np.float64)
    plain, scaled = x.copy(), x.copy()
    for _ in range(10):
        plain = plain @ random_array(rng, (256, 256), "float32").T
        scaled = scaled @ weight_array(rng, (256, 256), "float32").T
    # uniform [-1, 1) weights multiply the scale by about sqrt(256 / 3) = 9.2 per layer: 9.2^10 = 4e9
    assert np.abs(plain).max() > 1e8
    assert 0.05 < scaled.std() < 5


def test_model_args_fill_inputs_then_weights():
    tvm = pytest.importorskip("tvm")
    specs = [((4, 1000), "float32"), ((1000, 1000), "float32"), ((1000,), "float32")]
    a = [t.numpy() for t in model_args(specs, 0, tvm.cpu(), data_inputs=1)]
    assert np.abs(a[0]).max() > 0.99  # the input: uniform [-1, 1)
    assert np.abs(a[1]).max() <= math.sqrt(3 / 1000)  # the weight: fan_in 1000
    assert a[2].min() >= 0.5
    b = [t.numpy() for t in model_args(specs, 0, tvm.cpu(), data_inputs=1)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))  # seeded
    # all inputs: as random_args fills them (the old behaviour, for modules that do not say)
    c = [t.numpy() for t in model_args(specs, 0, tvm.cpu(), data_inputs=3)]
    assert np.abs(c[1]).max() > 0.99
