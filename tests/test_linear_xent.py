"""The fused linear + cross-entropy kernel of the SGD loop, against NumPy in float64."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastsoftmax import _kernels
from fastsoftmax.reference import log_softmax

ROWS = _kernels.linear_rows()


def run(X, idx, labels, g, g_value, W, b, smoothing, parts, n_threads, class_block=0):
    n_classes, d = W.shape
    gW = np.full((parts, n_classes, d), np.nan, dtype=W.dtype)
    gb = np.full((parts, n_classes), np.nan, dtype=W.dtype)
    z = np.empty((parts, ROWS * n_classes), dtype=W.dtype)
    totals = np.empty(parts)
    total = _kernels.linear_xent(
        X, idx, labels, g, g_value, W, b, gW, None if b is None else gb, z, totals,
        smoothing, n_threads, class_block,
    )  # fmt: skip
    return total, gW.sum(axis=0, dtype=np.float64), gb.sum(axis=0, dtype=np.float64)


def expected(X, idx, labels, g, g_value, W, b, smoothing):
    rows = np.arange(len(X)) if idx is None else idx
    xb = X[rows].astype(np.float64)
    z = xb @ W.T.astype(np.float64) + (0 if b is None else b.astype(np.float64))
    n_classes = W.shape[0]
    q = np.full(z.shape, smoothing / n_classes)
    q[np.arange(len(rows)), labels[rows]] += 1 - smoothing
    logp = log_softmax(z, axis=1)
    loss = -(q * logp).sum(axis=1)
    w = np.ones(len(rows)) if g is None else g[rows]
    dz = (np.exp(logp) - q) * (g_value * w)[:, None]
    return float(loss @ w), dz.T @ xb, dz.sum(axis=0)


@st.composite
def cases(draw):
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    n_x = draw(st.integers(1, 11))
    d = draw(st.integers(0, 37))
    n_classes = draw(st.integers(1, 9))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n_x, d + 3)).astype(dtype)
    X = base[:, :d] if draw(st.booleans()) else base[:, 3:]  # rows further apart than d
    if draw(st.booleans()):
        X = np.ascontiguousarray(X)
    idx = None
    if draw(st.booleans()):
        idx = rng.integers(0, n_x, size=draw(st.integers(0, 13)))  # repeats allowed
    labels = rng.integers(0, n_classes, size=n_x)
    g = rng.uniform(0, 2, size=n_x) if draw(st.booleans()) else None
    W = rng.standard_normal((n_classes, d)).astype(dtype)
    b = rng.standard_normal(n_classes).astype(dtype) if draw(st.booleans()) else None
    smoothing = draw(st.sampled_from([0.0, 0.1, 1.0]))
    parts = draw(st.integers(1, 5))
    # Both blockings of the classes, whichever the CPU would choose (0).
    class_block = draw(st.sampled_from([0, 2, 4]))
    return X, idx, labels, g, 0.37, W, b, smoothing, parts, class_block


@settings(max_examples=300, deadline=None)
@given(cases())
def test_matches_numpy_and_ignores_the_thread_count(case):
    X, idx, labels, g, g_value, W, b, smoothing, parts, class_block = case
    total, gW, gb = run(X, idx, labels, g, g_value, W, b, smoothing, parts, 1, class_block)
    ref_total, ref_gW, ref_gb = expected(X, idx, labels, g, g_value, W, b, smoothing)
    tol = 2e-5 if W.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(total, ref_total, rtol=tol, atol=tol)
    np.testing.assert_allclose(gW, ref_gW, rtol=tol, atol=tol)
    if b is not None:
        np.testing.assert_allclose(gb, ref_gb, rtol=tol, atol=tol)
    for n_threads in (2, 3):
        again = run(X, idx, labels, g, g_value, W, b, smoothing, parts, n_threads, class_block)
        assert again[0] == total
        np.testing.assert_array_equal(again[1], gW)
        np.testing.assert_array_equal(again[2], gb)


def test_checks_indices_labels_and_shapes():
    X = np.ones((4, 3))
    W, b = np.zeros((2, 3)), np.zeros(2)
    labels = np.array([0, 1, 1, 0])
    gW, gb, z, totals = np.empty((2, 2, 3)), np.empty((2, 2)), np.empty((2, ROWS * 2)), np.empty(2)

    def call(X=X, idx=None, labels=labels, W=W, gW=gW, z=z):
        return _kernels.linear_xent(X, idx, labels, None, 1.0, W, b, gW, gb, z, totals, 0.0, 1)

    call()
    with pytest.raises(IndexError, match="index 4 at position 1 is out of bounds for 4 rows"):
        call(idx=np.array([0, 4]))
    with pytest.raises(IndexError, match="index -1 at position 0"):
        call(idx=np.array([-1]))
    with pytest.raises(IndexError, match="label 2 of row 3 is out of bounds for 2 classes"):
        call(labels=np.array([0, 1, 1, 2]))
    with pytest.raises(ValueError, match="one value per row"):
        call(labels=np.array([0, 1]))
    with pytest.raises(ValueError, match="shapes"):
        call(W=np.zeros((2, 4)))
    with pytest.raises(ValueError, match="shapes"):
        call(z=np.empty((2, 2)))
    with pytest.raises(ValueError, match="rows must be contiguous"):
        call(X=np.ones((4, 6))[:, ::2])
    with pytest.raises(ValueError, match="class_block must be 0, 2 or 4, got 3"):
        _kernels.linear_xent(X, None, labels, None, 1.0, W, b, gW, gb, z, totals, 0.0, 1, 3)


def unaligned(a):
    raw = np.zeros(a.nbytes + 1, dtype=np.uint8)[1:]
    view = raw.view(a.dtype).reshape(a.shape)
    view[...] = a
    return view


def test_unaligned_rows_are_refused_and_the_trainer_copies_them():
    from fastsoftmax import SoftmaxRegression

    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 5))
    y = rng.integers(0, 3, size=40)
    W = np.zeros((3, 5))
    parts = (np.empty((2, 3, 5)), np.empty((2, 3)), np.empty((2, ROWS * 3)), np.empty(2))
    bad = unaligned(X)
    assert not bad.flags.aligned
    with pytest.raises(ValueError, match="must be aligned"):
        _kernels.linear_xent(bad, None, y, None, 1.0, W, None, parts[0], None, *parts[2:], 0.0, 1)
    params = dict(solver="sgd", max_iter=2, tol=None, random_state=0, batch_size=8)
    a = SoftmaxRegression(**params).fit(X, y)
    b = SoftmaxRegression(**params).fit(bad, y)
    c = SoftmaxRegression(**params).partial_fit(bad, y, classes=[0, 1, 2])
    np.testing.assert_array_equal(a.coef_, b.coef_)
    assert np.isfinite(c.coef_).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["contiguous", "beside a column", "strided rows", "reversed"])
def test_take_rows_is_numpy_take(dtype, layout):
    rng = np.random.default_rng(7)
    base = rng.standard_normal((40, 12)).astype(dtype)
    X = {"contiguous": base, "beside a column": base, "strided rows": base[::3, ::2],
         "reversed": base[::-1]}[layout]  # fmt: skip
    idx = rng.integers(0, X.shape[0], size=25)
    buf = np.full((25, X.shape[1] + 1), -7.0, dtype=dtype)
    out = buf[:, : X.shape[1]] if layout == "beside a column" else buf[:, 1:]
    _kernels.take_rows(X, idx, out)
    np.testing.assert_array_equal(out, np.take(X, idx, axis=0))
    # the column beside the rows is left alone
    np.testing.assert_array_equal(buf[:, -1 if layout == "beside a column" else 0], -7.0)


def test_take_rows_checks_indices_and_shapes():
    X, out = np.ones((4, 3)), np.empty((2, 3))
    _kernels.take_rows(X, np.array([3, 0]), out)
    _kernels.take_rows(X, np.array([], dtype=np.int64), np.empty((0, 3)))
    with pytest.raises(IndexError, match="index 4 at position 1 is out of bounds for 4 rows"):
        _kernels.take_rows(X, np.array([0, 4]), out)
    with pytest.raises(IndexError, match="index -1 at position 0"):
        _kernels.take_rows(X, np.array([-1, 0]), out)
    with pytest.raises(ValueError, match=r"out must have shape \(2, 3\), got \(2, 4\)"):
        _kernels.take_rows(X, np.array([0, 1]), np.empty((2, 4)))
    with pytest.raises(ValueError, match=r"out must have shape \(3, 3\)"):
        _kernels.take_rows(X, np.array([0, 1, 2]), out)
