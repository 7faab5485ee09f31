"""Property tests of softmax, log_softmax and logsumexp on random finite arrays."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastsoftmax
from fastsoftmax import reference

SETTINGS = settings(max_examples=150, deadline=None)
DTYPES = st.sampled_from([np.float32, np.float64])
MAX_SIDE = 50
MAX_SIZE = 4096  # elements per array: keeps the runs fast

# Relative accuracy expected of each dtype, against an exact-ish float64 answer.
RTOL = {np.float32: 2e-6, np.float64: 1e-13}


@st.composite
def shapes(draw):
    """1 to 3 dimensions of 1 to MAX_SIDE, at most MAX_SIZE elements in all."""
    ndim = draw(st.integers(1, 3))
    shape, budget = [], MAX_SIZE
    for _ in range(ndim):
        side = draw(st.integers(1, min(MAX_SIDE, budget)))
        shape.append(side)
        budget //= side
    return tuple(draw(st.permutations(shape)))


SHAPES = shapes()


def finite_elements(dtype, bound=1e3):
    return st.floats(
        -bound, bound, width=np.finfo(dtype).bits, allow_nan=False, allow_infinity=False
    )


@st.composite
def arrays_and_axes(draw, elements=None):
    """A float32/float64 array of up to 3 dims and a valid axis (None, int or tuple)."""
    dtype = draw(DTYPES)
    shape = draw(SHAPES)
    if elements is None:
        elements = finite_elements(dtype)
    x = draw(hnp.arrays(dtype, shape, elements=elements))
    ndim = len(shape)
    axis = draw(
        st.one_of(
            st.none(),
            st.integers(-ndim, ndim - 1),
            hnp.valid_tuple_axes(ndim, min_size=1),
        )
    )
    return x, axis


def reduced_size(shape, axis):
    if axis is None:
        return math.prod(shape)
    axes = (axis,) if isinstance(axis, int) else axis
    return math.prod(shape[a] for a in axes)


def log_atol(dtype, n, scale=1.0):
    """Absolute error of a log-of-a-sum result: a few eps times (scale + log n)."""
    return 8 * float(np.finfo(dtype).eps) * (scale + math.log(n))


@st.composite
def exact_shift_cases(draw):
    """x and x + c where every element and the shift are multiples of 1/256.

    With |k| <= 2**18 the sums stay within float32's 24-bit significand, so
    x + c is exact in both dtypes and the results must agree to rounding.
    """
    dtype = draw(DTYPES)
    shape = draw(SHAPES)
    k = draw(hnp.arrays(np.int32, shape, elements=st.integers(-(2**17), 2**17)))
    c = draw(st.integers(-(2**17), 2**17))
    ndim = len(shape)
    axis = draw(
        st.one_of(st.none(), st.integers(-ndim, ndim - 1), hnp.valid_tuple_axes(ndim, min_size=1))
    )
    x = k.astype(dtype) / dtype(256)
    y = (k + c).astype(dtype) / dtype(256)
    return x, y, dtype(c / 256), axis


@SETTINGS
@given(exact_shift_cases())
def test_softmax_shift_invariant(case):
    x, y, c, axis = case
    eps = float(np.finfo(x.dtype).eps)
    np.testing.assert_allclose(
        fastsoftmax.softmax(y, axis=axis),
        fastsoftmax.softmax(x, axis=axis),
        rtol=4 * eps,
        atol=float(np.finfo(x.dtype).tiny),
    )


@SETTINGS
@given(exact_shift_cases())
def test_log_softmax_shift_invariant(case):
    x, y, c, axis = case
    n = reduced_size(x.shape, axis)
    np.testing.assert_allclose(
        fastsoftmax.log_softmax(y, axis=axis),
        fastsoftmax.log_softmax(x, axis=axis),
        rtol=4 * float(np.finfo(x.dtype).eps),
        atol=log_atol(x.dtype, n),
    )


@SETTINGS
@given(exact_shift_cases())
def test_logsumexp_shift_equivariant(case):
    x, y, c, axis = case
    n = reduced_size(x.shape, axis)
    shifted = fastsoftmax.logsumexp(y, axis=axis)
    expected = fastsoftmax.logsumexp(x, axis=axis).astype(np.float64) + float(c)
    # The result is rounded at the magnitude of max(|x|, |x + c|) (up to 1e3).
    eps = float(np.finfo(x.dtype).eps)
    np.testing.assert_allclose(
        shifted, expected, rtol=4 * eps, atol=log_atol(x.dtype, n, scale=2 * 1024)
    )


@SETTINGS
@given(arrays_and_axes())
def test_softmax_sums_to_one(case):
    x, axis = case
    s = fastsoftmax.softmax(x, axis=axis)
    assert s.dtype == x.dtype and s.shape == x.shape
    assert np.all(s >= 0) and np.all(s <= 1)
    totals = np.sum(s.astype(np.float64), axis=axis)
    # Each value is good to a few ulp (float32) or ~1e-13 relative (float64).
    atol = 4 * float(np.finfo(np.float32).eps) if x.dtype == np.float32 else 1e-13
    np.testing.assert_allclose(totals, 1.0, rtol=0, atol=atol)


@SETTINGS
@given(arrays_and_axes())
def test_log_softmax_is_log_of_softmax(case):
    x, axis = case
    s = fastsoftmax.softmax(x, axis=axis)
    ls = fastsoftmax.log_softmax(x, axis=axis)
    assert ls.dtype == x.dtype and ls.shape == x.shape
    assert np.all(ls <= 0)
    # Where softmax is a normal number its log is accurate to a few eps.
    normal = s > np.finfo(x.dtype).tiny
    n = reduced_size(x.shape, axis)
    eps = float(np.finfo(x.dtype).eps)
    np.testing.assert_allclose(
        ls[normal], np.log(s[normal].astype(np.float64)), rtol=8 * eps, atol=log_atol(x.dtype, n)
    )


@SETTINGS
@given(arrays_and_axes())
def test_logsumexp_matches_float64_reference(case):
    x, axis = case
    got = fastsoftmax.logsumexp(x, axis=axis)
    expected = reference.logsumexp(x.astype(np.float64), axis=axis)
    assert np.asarray(got).dtype == x.dtype
    assert np.shape(got) == np.shape(expected)
    n = reduced_size(x.shape, axis)
    # float32: the result is rounded to float32 (rtol) and x - max is rounded
    # before exp (about eps per term, absolute in the log).
    np.testing.assert_allclose(got, expected, rtol=RTOL[x.dtype.type], atol=log_atol(x.dtype, n))


@SETTINGS
@given(arrays_and_axes(), st.sampled_from(["softmax", "log_softmax"]))
def test_matches_float64_reference(case, name):
    x, axis = case
    got = getattr(fastsoftmax, name)(x, axis=axis)
    expected = getattr(reference, name)(x.astype(np.float64), axis=axis)
    assert got.dtype == x.dtype and got.shape == x.shape
    n = reduced_size(x.shape, axis)
    if name == "softmax":
        # exp(x - max) with x - max rounded: a relative error of eps * |x - max|,
        # which is beyond rtol only for values far below the largest, all of
        # them smaller than this atol.
        atol = 1e-7 if x.dtype == np.float32 else 1e-15
    else:
        atol = log_atol(x.dtype, n)
    np.testing.assert_allclose(got, expected, rtol=RTOL[x.dtype.type], atol=atol)


@SETTINGS
@given(arrays_and_axes(elements=st.floats(-60, 60, width=32)))
def test_logsumexp_consistent_with_softmax(case):
    """softmax == exp(x - logsumexp(x, keepdims=True)) for moderate inputs."""
    x, axis = case
    lse = fastsoftmax.logsumexp(x, axis=axis, keepdims=True)
    assert np.ndim(lse) == x.ndim
    expected = np.exp(x.astype(np.float64) - lse.astype(np.float64))
    got = fastsoftmax.softmax(x, axis=axis)
    # An error of d in lse is a relative error of d in every value.
    rtol = 64 * float(np.finfo(x.dtype).eps) * (1 + math.log(reduced_size(x.shape, axis)))
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=1e-30)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exact_shift_strategy_is_exact(dtype):
    """The shifted arrays of exact_shift_cases really differ by exactly c."""
    k = np.array([2**17, -(2**17), 3, -1], dtype=np.int32)
    x = k.astype(dtype) / dtype(256)
    y = (k + 2**17).astype(dtype) / dtype(256)
    assert np.array_equal(y.astype(np.float64) - x.astype(np.float64), np.full(4, 512.0))
