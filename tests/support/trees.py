"""Comparing checkpoint trees (nested dicts, lists and numpy arrays) exactly."""

import numpy as np


def assert_same_tree(a, b, path="", ordered=False):
    """``a`` equals ``b`` leaf by leaf: arrays by dtype, shape and values (NaN equals NaN), dicts
    by their keys (in the same order when ``ordered``), floats with NaN equal to NaN; ``path``
    names the first difference."""
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape, path
        assert np.array_equal(a, b, equal_nan=True), path
    elif isinstance(a, dict):
        same_keys = list(a) == list(b) if ordered else set(a) == set(b)
        assert isinstance(b, dict) and same_keys, (path, set(a) ^ set(b))
        for k in a:
            assert_same_tree(a[k], b[k], f"{path}/{k}", ordered)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for k, (x, y) in enumerate(zip(a, b)):
            assert_same_tree(x, y, f"{path}/{k}", ordered)
    else:
        nan = isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b)
        assert a == b or nan, (path, a, b)
