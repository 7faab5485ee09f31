"""softmax, log_softmax and logsumexp against scipy.special.

scipy is the specification: for every input scipy accepts, fastsoftmax must
return the same values (to a tight tolerance), the same dtype, the same shape
and the same kind of object (ndarray or NumPy scalar); where scipy raises,
fastsoftmax must raise an exception of the same class (or a subclass).
"""

import math

import numpy as np
import pytest
import scipy.special

import fastsoftmax
from fastsoftmax import reference

FUNCS = ["softmax", "log_softmax", "logsumexp"]
KERNEL_DTYPES = [np.float32, np.float64]
FALLBACK_DTYPES = [np.int8, np.int64, np.bool_, np.float16, np.longdouble, np.complex128]
SHAPES = [(7,), (3, 5), (4, 1, 6), (2, 3, 4, 5), (1, 1)]
BIG_SHAPE = (200, 3000)
LAYOUTS = [
    "C",
    "F",
    "transposed",
    "step-sliced",
    "negative-strides",
    "read-only",
    "memmap",
    "broadcast",
    "unaligned",
    "byteswapped",
]

# Infinities and NaN make scipy (and NumPy fallbacks) warn; that is expected.
pytestmark = pytest.mark.filterwarnings("ignore:.*encountered in:RuntimeWarning")


# --------------------------------------------------------------------------
# helpers


def fs_func(name):
    return getattr(fastsoftmax, name)


def sp_func(name):
    return getattr(scipy.special, name)


def axes_for(ndim):
    """None, every axis by positive and negative index, and some tuples."""
    axes = [None]
    axes += list(range(ndim))
    axes += list(range(-ndim, 0))
    if ndim >= 2:
        axes += [(0, -1), (-1, 0), tuple(range(ndim))]
    if ndim >= 3:
        axes += [(1, 2), (0, 2)]
    if ndim >= 4:
        axes += [(-3, -1, 0)]
    return axes


def shape_axis_cases(shapes):
    return [
        pytest.param(shape, axis, id=f"{'x'.join(map(str, shape))}-axis{axis}")
        for shape in shapes
        for axis in axes_for(len(shape))
    ]


def reduced_size(shape, axis):
    """How many elements each reduction (softmax normalisation, lse sum) covers."""
    shape = tuple(shape) or (1,)  # a 0-d input reduces like a 1-element 1-d one
    if axis is None:
        return max(1, math.prod(shape))
    axes = (axis,) if isinstance(axis, int) else axis
    return max(1, math.prod(shape[a] for a in axes))


def make_input(shape, dtype, seed=0):
    """Deterministic values of a moderate range for ``dtype``."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return rng.random(shape) < 0.5
    if dtype.kind in "iu":
        return rng.integers(-20, 21, size=shape).astype(dtype)
    if dtype.kind == "c":
        return (rng.normal(size=shape) * 3 + 1j * rng.normal(size=shape)).astype(dtype)
    return (rng.normal(size=shape) * 3).astype(dtype)


def tolerances(name, result_dtype, n):
    """(rtol, atol) for comparing two results of ``result_dtype``.

    log_softmax and logsumexp lose absolute accuracy of about eps * log(n)
    (the log of a sum of n terms); softmax values below the smallest normal
    number carry no relative precision at all.
    """
    dtype = np.dtype(result_dtype)
    if dtype.kind == "c":
        dtype = np.dtype(dtype.char.lower())  # complex128 -> float64
    info = np.finfo(dtype)
    eps = float(info.eps)
    rtol = {
        np.dtype(np.float16): 2e-3,
        np.dtype(np.float32): 2e-6,
        np.dtype(np.float64): 1e-13,
    }.get(dtype, max(1e-13, 500 * eps))
    if name == "softmax":
        atol = float(info.tiny)
    else:
        atol = 8 * eps * (1 + math.log(n))
    return rtol, atol


def assert_same_nonfinite(actual, expected):
    """NaN, +inf and -inf sit at exactly the same positions."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    parts = [(actual, expected)]
    if np.iscomplexobj(expected) or np.iscomplexobj(actual):
        parts = [(np.real(actual), np.real(expected)), (np.imag(actual), np.imag(expected))]
    for a, e in parts:
        np.testing.assert_array_equal(np.isnan(a), np.isnan(e), err_msg="NaN positions differ")
        np.testing.assert_array_equal(
            np.isposinf(a), np.isposinf(e), err_msg="+inf positions differ"
        )
        np.testing.assert_array_equal(
            np.isneginf(a), np.isneginf(e), err_msg="-inf positions differ"
        )


def assert_same_result(actual, expected, rtol, atol):
    """Same kind of object, dtype, shape, non-finite positions, and close values."""
    if isinstance(expected, tuple):
        assert isinstance(actual, tuple) and len(actual) == len(expected)
        for a, e in zip(actual, expected):
            assert_same_result(a, e, rtol, atol)
        return
    assert type(actual) is type(expected), (type(actual), type(expected))
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert_same_nonfinite(actual, expected)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, equal_nan=True)


def call_both(name, x, *args, **kwargs):
    """Run scipy, then fastsoftmax on the same input, and compare.

    The input must come out of the fastsoftmax call untouched. Where scipy
    raises, fastsoftmax must raise the same exception class (or a subclass).
    """
    before = np.array(x, copy=True)
    try:
        expected = sp_func(name)(x, *args, **kwargs)
    except Exception as exc:  # scipy rejects this input: so must fastsoftmax
        with pytest.raises(type(exc)):
            fs_func(name)(x, *args, **kwargs)
        return None
    actual = fs_func(name)(x, *args, **kwargs)
    np.testing.assert_array_equal(np.asarray(x), before, err_msg="input was modified")
    return actual, expected


def compare(name, x, axis=None, tol=None, **kwargs):
    """call_both and assert_same_result with tolerances for the result dtype.

    ``tol`` overrides the (rtol, atol) pair.
    """
    got = call_both(name, x, axis=axis, **kwargs)
    if got is None:
        return None
    actual, expected = got
    first = expected[0] if isinstance(expected, tuple) else expected
    if tol is None:
        tol = tolerances(name, np.asarray(first).dtype, reduced_size(np.shape(x), axis))
    assert_same_result(actual, expected, *tol)
    return actual


def check_float32_accuracy(name, x, axis, actual):
    """float32 results against scipy on the float64 upcast of the same values.

    softmax: the rounding of x - max in float32 moves small values by a
    relative 1e-6 or so, hence the atol; log_softmax and logsumexp lose about
    eps * log(n) absolutely.
    """
    expected = sp_func(name)(np.asarray(x, dtype=np.float64), axis=axis)
    assert np.asarray(actual).dtype == np.float32
    assert np.shape(actual) == np.shape(expected)
    n = reduced_size(np.shape(x), axis)
    atol = 1e-7 if name == "softmax" else 1e-6 * (1 + math.log(n))
    np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=atol)


def with_layout(x, layout, tmp_path):
    """An array equal to ``x`` element for element, stored as ``layout`` says."""
    if layout == "C":
        return np.ascontiguousarray(x)
    if layout == "F":
        y = np.asfortranarray(x)
        assert x.ndim < 2 or y.flags.f_contiguous and not y.flags.c_contiguous
        return y
    if layout == "transposed":
        # A C-ordered buffer of the axes rotated by one, viewed back.
        perm = list(range(1, x.ndim)) + [0]
        return np.ascontiguousarray(x.transpose(perm)).transpose(np.argsort(perm))
    if layout == "step-sliced":
        big = np.zeros(tuple(2 * n + 1 for n in x.shape), dtype=x.dtype)
        view = big[tuple(slice(1, None, 2) for _ in x.shape)]
        view[...] = x
        return view
    if layout == "negative-strides":
        y = np.flip(np.ascontiguousarray(np.flip(x)))
        assert all(s < 0 for s, n in zip(y.strides, y.shape) if n > 1)
        return y
    if layout == "read-only":
        y = x.copy()
        y.setflags(write=False)
        return y
    if layout == "memmap":
        path = tmp_path / "x.bin"
        np.ascontiguousarray(x).tofile(path)
        y = np.memmap(path, dtype=x.dtype, mode="r", shape=x.shape)
        assert not y.flags.writeable
        return y
    if layout == "broadcast":
        # Zero strides: the first element of each row along axis 0 repeated.
        return np.broadcast_to(x[:1], x.shape) if x.ndim else x
    if layout == "unaligned":
        raw = np.zeros(x.nbytes + 1, dtype=np.uint8)[1:]
        y = raw.view(x.dtype).reshape(x.shape)
        y[...] = x
        assert not y.flags.aligned
        return y
    if layout == "byteswapped":
        return x.astype(x.dtype.newbyteorder())
    raise AssertionError(layout)


def func_dtype_cases(dtypes):
    """(name, dtype) pairs; bool log_softmax has a test of its own below."""
    return [
        pytest.param(name, dtype, id=f"{name}-{np.dtype(dtype).name}")
        for name in FUNCS
        for dtype in dtypes
        if not (name == "log_softmax" and np.dtype(dtype) == np.bool_)
    ]


# --------------------------------------------------------------------------
# values, dtypes, shapes and scalars over the whole grid


@pytest.mark.parametrize("shape, axis", shape_axis_cases(SHAPES))
@pytest.mark.parametrize("name, dtype", func_dtype_cases(KERNEL_DTYPES + FALLBACK_DTYPES))
def test_matches_scipy(name, dtype, shape, axis):
    compare(name, make_input(shape, dtype), axis)


# scipy's own float32 result is off by up to ~1e-5 relative for these sizes
# (NumPy sums a strided axis of 3000 float32 terms one after another), so the
# big float32 cases are held to scipy-on-float32 loosely and to
# scipy-on-float64 tightly.
BIG_F32_TOL = (3e-5, 3e-5)


def check_big(name, x, axis):
    if x.dtype == np.float32:
        actual = compare(name, x, axis, tol=BIG_F32_TOL)
        check_float32_accuracy(name, x, axis, actual)
    else:
        compare(name, x, axis)


@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 1), (-1, 0)])
@pytest.mark.parametrize("name, dtype", func_dtype_cases(KERNEL_DTYPES))
def test_matches_scipy_big(name, dtype, axis):
    check_big(name, make_input(BIG_SHAPE, dtype, seed=1), axis)


@pytest.mark.parametrize("name", FUNCS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_big_fortran_and_transposed(name, dtype):
    x = make_input(BIG_SHAPE, dtype, seed=2)
    for axis in [None, 0, 1]:
        check_big(name, np.asfortranarray(x), axis)
        check_big(name, np.ascontiguousarray(x.T), axis)


@pytest.mark.parametrize(
    "module",
    [
        pytest.param(scipy.special, id="scipy"),
        pytest.param(fastsoftmax, id="fastsoftmax"),
    ],
)
@pytest.mark.parametrize("name", FUNCS)
def test_long_row_float64_accuracy(name, module):
    """Near-equal values over the whole big array: a long sum of equal terms.

    The exact answer comes from math.fsum; scipy meets it to 1e-13, and so
    must fastsoftmax.
    """
    x = np.full(BIG_SHAPE, -1.0)
    x[:, 0] = 0.0
    x[0] = 0.5
    m = float(x.max())
    e = np.exp(x - m)
    total = math.fsum(e.ravel())
    exact = {
        "softmax": e / total,
        "log_softmax": (x - m) - math.log(total),
        "logsumexp": m + math.log(total),
    }[name]
    np.testing.assert_allclose(getattr(module, name)(x), exact, rtol=1e-13, atol=0)


@pytest.mark.parametrize("shape, axis", shape_axis_cases([(7,), (3, 5), (4, 1, 6), (2, 3, 4, 5)]))
@pytest.mark.parametrize("name", FUNCS)
def test_float32_against_float64_scipy(name, shape, axis):
    """The float32 kernels are accurate to float32 precision, not just scipy-like."""
    x = make_input(shape, np.float32, seed=3) * np.float32(10)
    check_float32_accuracy(name, x, axis, fs_func(name)(x, axis=axis))


def layout_cases():
    """(name, layout) pairs; logsumexp of byte-swapped input has its own test."""
    return [
        pytest.param(name, layout, id=f"{name}-{layout}")
        for name in FUNCS
        for layout in LAYOUTS
        if not (name == "logsumexp" and layout == "byteswapped")
    ]


@pytest.mark.parametrize("shape", [(3, 5), (4, 1, 6), (2, 3, 4, 5)], ids=str)
@pytest.mark.parametrize("name, layout", layout_cases())
@pytest.mark.parametrize("dtype", KERNEL_DTYPES)
def test_memory_layouts(name, dtype, layout, shape, tmp_path):
    x = with_layout(make_input(shape, dtype, seed=4), layout, tmp_path)
    for axis in axes_for(len(shape)):
        try:
            actual = compare(name, x, axis)
            # The layout must not change the answer beyond rounding: compare
            # with scipy on a C-contiguous copy of the same values too.
            expected = sp_func(name)(np.ascontiguousarray(x), axis=axis)
            rtol, atol = tolerances(name, np.asarray(expected).dtype, reduced_size(shape, axis))
            np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)
        except AssertionError as exc:
            raise AssertionError(f"axis={axis!r}: {exc}") from exc


@pytest.mark.parametrize("dtype", KERNEL_DTYPES)
def test_logsumexp_byteswapped(dtype):
    x = make_input((3, 5), dtype, seed=4).astype(np.dtype(dtype).newbyteorder())
    compare("logsumexp", x, 1)


@pytest.mark.parametrize("name", FUNCS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_python_lists_and_scalars(name, dtype):
    x = make_input((3, 4), dtype, seed=5)
    compare(name, x.tolist(), None)
    compare(name, x.tolist(), 1)
    compare(name, x[0].tolist(), 0)
    compare(name, x.ravel()[0].item(), None)  # a Python scalar


@pytest.mark.parametrize("shape, axis", [((7,), None), ((3, 5), 1), ((4, 1, 6), (0, 2))])
def test_log_softmax_bool(shape, axis):
    compare("log_softmax", make_input(shape, np.bool_), axis)


@pytest.mark.parametrize("name, dtype", func_dtype_cases(KERNEL_DTYPES + FALLBACK_DTYPES))
@pytest.mark.parametrize("axis", [None, 0, -1, ()])
def test_zero_dimensional(name, dtype, axis):
    x = make_input((), dtype, seed=6)
    compare(name, x, axis)  # 0-d array
    compare(name, x[()], axis)  # NumPy scalar


@pytest.mark.parametrize("name, dtype", func_dtype_cases(KERNEL_DTYPES + [np.int64, np.float16]))
@pytest.mark.parametrize(
    "shape, axis",
    [
        ((0,), 0),
        ((0,), -1),
        ((0, 3), 0),
        ((0, 3), 1),
        ((3, 0), 1),
        ((3, 0), 0),
        ((2, 0, 4), 1),
        ((2, 0, 4), 2),
        ((2, 0, 4), -3),
    ],
)
def test_empty_with_axis(name, dtype, shape, axis):
    compare(name, np.zeros(shape, dtype=dtype), axis)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", KERNEL_DTYPES)
@pytest.mark.parametrize("shape, axis", [((0,), None), ((0, 3), None), ((0, 3), (0, 1))])
def test_empty_without_axis_softmax(name, dtype, shape, axis):
    # scipy raises (a maximum over nothing); so must fastsoftmax.
    compare(name, np.zeros(shape, dtype=dtype), axis)


@pytest.mark.parametrize("dtype", KERNEL_DTYPES)
@pytest.mark.parametrize(
    "shape, axis",
    [
        ((0,), None),
        ((0,), (0,)),
        pytest.param((0, 3), None),
        pytest.param((0, 3), (0, 1)),
    ],
)
def test_empty_without_axis_logsumexp(dtype, shape, axis):
    compare("logsumexp", np.zeros(shape, dtype=dtype), axis)


# --------------------------------------------------------------------------
# special values

BIG = {np.float32: 3e38, np.float64: 1.7e308}


def special_rows(dtype):
    """Rows of 5 holding infinities, NaN and values near the float limits."""
    inf, nan = np.inf, np.nan
    big = BIG[dtype]
    huge_neg = -big
    sub = np.finfo(dtype).smallest_subnormal
    rows = [
        [0.0, -inf, 1.0, 2.0, -inf],
        [-inf, -inf, -inf, -inf, -inf],
        [1.0, inf, 2.0, 3.0, -1.0],
        [inf, inf, 0.0, 0.0, 1.0],
        [inf, -inf, 0.0, 1.0, 2.0],
        [nan, 0.0, 1.0, 2.0, 3.0],
        [-inf, nan, inf, 0.0, 1.0],
        [nan, nan, nan, nan, nan],
        [nan, -inf, -inf, -inf, -inf],
        [big, -big, 0.0, 1.0, -1.0],
        [big, big, big, big, big],
        [-big, -big, -big, -big, -big],
        [-big, -big, 0.0, -big, -big],
        [huge_neg, huge_neg / 2, -1e30, -1e20, -1.0],
        [big, big / 2, -1e30, 1e20, -inf],
        [big, inf, 0.0, 0.0, 0.0],
        [-big, -inf, -inf, -inf, -big],
        [sub, -sub, 0.0, sub, 0.0],
        [0.0, -50.0, -80.0, -100.0, -120.0],
        [0.0, -700.0, -740.0, -745.0, -1000.0],
        [88.0, 89.0, -100.0, -103.0, 1000.0],
        [709.0, 710.0, -745.0, 0.0, -1.0],
    ]
    with np.errstate(over="ignore"):
        return np.array(rows, dtype=dtype)


@pytest.mark.parametrize("name", FUNCS)
@pytest.mark.parametrize("dtype", KERNEL_DTYPES)
def test_special_values_rows(name, dtype):
    x = special_rows(dtype)
    compare(name, x, axis=1)
    compare(name, x, axis=-1)
    # The same rows as columns: the strided path through the kernels.
    compare(name, np.ascontiguousarray(x.T), axis=0)
    compare(name, np.asfortranarray(x), axis=1)
    for row in x:  # one row on its own, axis=None: a scalar for logsumexp
        compare(name, row, None)


@pytest.mark.parametrize("dtype", KERNEL_DTYPES)
def test_special_values_return_sign(dtype):
    x = special_rows(dtype)
    compare("logsumexp", x, axis=1, return_sign=True)
    compare("logsumexp", np.ascontiguousarray(x.T), axis=0, return_sign=True, keepdims=True)
    for row in x:
        compare("logsumexp", row, None, return_sign=True)


@pytest.mark.parametrize("name", FUNCS)
@pytest.mark.parametrize("dtype", KERNEL_DTYPES)
def test_special_values_scattered(name, dtype):
    """Random rows with specials sprinkled in, reduced along several axes."""
    rng = np.random.default_rng(7)
    big = BIG[dtype]
    specials = np.array([np.inf, -np.inf, np.nan, big, -big, 0.0, 80.0, -100.0], dtype=dtype)
    x = make_input((6, 5, 4), dtype, seed=8) * dtype(30)
    mask = rng.random(x.shape) < 0.15
    x[mask] = rng.choice(specials, size=int(mask.sum()))
    for axis in [0, 1, 2, -1, (0, 2), (1, 2), None]:
        compare(name, x, axis)


# --------------------------------------------------------------------------
# logsumexp: b, keepdims, return_sign, precision


@pytest.mark.parametrize("dtype", KERNEL_DTYPES + [np.float16, np.longdouble, np.complex128])
@pytest.mark.parametrize("return_sign", [False, True])
def test_logsumexp_b_broadcasting(dtype, return_sign):
    a = make_input((4, 6), dtype, seed=9)
    bs = [
        np.float64(2.5),
        np.array(0.5),
        np.ones((1, 6), dtype=dtype) * dtype(3),
        np.linspace(0.5, 2.0, 6).astype(dtype),
        np.linspace(0.5, 2.0, 4).astype(dtype)[:, None],
        np.full((4, 6), 2, dtype=np.int64),
    ]
    for b in bs:
        for axis in [None, 0, 1, -1, (0, 1)]:
            compare("logsumexp", a, axis, b=b, return_sign=return_sign)
            compare("logsumexp", a, axis, b=b, return_sign=return_sign, keepdims=True)


@pytest.mark.parametrize(
    "b",
    [
        pytest.param(2, id="int"),
        pytest.param(0.5, id="float"),
        pytest.param(1.5 + 0j, id="complex"),
    ],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_logsumexp_python_scalar_b(dtype, b):
    # A Python scalar does not decide the precision (NumPy 2 promotion).
    a = make_input((3, 4), dtype, seed=10)
    compare("logsumexp", a, 1, b=b)
    compare("logsumexp", a, 1, b=b, return_sign=True)


@pytest.mark.parametrize("dtype", KERNEL_DTYPES)
def test_logsumexp_b_zeros_mask_nonfinite(dtype):
    """A zero weight removes its term, even an infinite or NaN one."""
    a = np.array(
        [[np.inf, 1.0, 2.0], [np.nan, 0.0, 1.0], [-np.inf, np.inf, 3.0], [np.nan, np.inf, -np.inf]],
        dtype=dtype,
    )
    b = np.array([[0, 1, 1], [0, 1, 1], [1, 0, 1], [0, 0, 1]], dtype=dtype)
    got = compare("logsumexp", a, 1, b=b)
    assert np.isfinite(got[:3]).all()
    compare("logsumexp", a, 1, b=b, return_sign=True)
    compare("logsumexp", a, None, b=b)


@pytest.mark.parametrize("dtype", KERNEL_DTYPES)
def test_logsumexp_negative_b(dtype):
    a = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [5.0, 5.0, -1.0], [1.0, 1.0, 1.0]], dtype=dtype)
    b = np.array(
        [[1.0, -1.0, 1.0], [1.0, -1.0, -1.0], [1.0, -1.0, 0.0], [1.0, -1.0, 0.0]], dtype=dtype
    )
    res, sgn = compare("logsumexp", a, 1, b=b, return_sign=True)
    np.testing.assert_array_equal(sgn, [1, -1, 0, 0])
    assert res[1] == pytest.approx(0.0, abs=1e-6)  # |1 - 2| = 1
    assert res[2] == -np.inf and res[3] == -np.inf
    res = compare("logsumexp", a, 1, b=b)
    assert np.isnan(res[1])  # a negative sum without return_sign: NaN
    compare("logsumexp", a, None, b=-np.ones(3, dtype=dtype), return_sign=True)


@pytest.mark.parametrize("dtype", KERNEL_DTYPES)
@pytest.mark.parametrize("axis", [0, -1, (0, 2), (2, 0), (0, 1, 2), (1,), None])
def test_logsumexp_keepdims_return_sign(dtype, axis):
    x = make_input((3, 4, 5), dtype, seed=11)
    x[0, 0, :] = -np.inf
    x[1, 2, 3] = np.nan
    x[2, 1, 1] = np.inf
    for keepdims in [False, True]:
        compare("logsumexp", x, axis, keepdims=keepdims)
        res, sgn = compare("logsumexp", x, axis, keepdims=keepdims, return_sign=True)
        if keepdims:
            assert np.ndim(res) == x.ndim


@pytest.mark.parametrize("dtype, rel", [(np.float32, 1e-6), (np.float64, 1e-13)])
def test_logsumexp_tiny_result_keeps_relative_precision(dtype, rel):
    exact = math.log1p(math.exp(-50.0))  # 1.9287498479639178e-22
    for row in ([0.0, -50.0], [-50.0, 0.0]):
        x = np.array(row, dtype=dtype)
        got = fastsoftmax.logsumexp(x)
        assert isinstance(got, dtype)
        assert float(got) == pytest.approx(exact, rel=rel, abs=0)
        compare("logsumexp", x, None)
    # The same through the row kernels, contiguous and strided.
    x = np.tile(np.array([0.0, -50.0], dtype=dtype), (5, 1))
    got = fastsoftmax.logsumexp(x, axis=1)
    np.testing.assert_allclose(got, exact, rtol=rel, atol=0)
    got = fastsoftmax.logsumexp(np.ascontiguousarray(x.T), axis=0)
    np.testing.assert_allclose(got, exact, rtol=rel, atol=0)
    # Several maximal terms: log(2) + log1p(exp(-50) / 2).
    x = np.array([0.0, 0.0, -50.0], dtype=dtype)
    assert float(fastsoftmax.logsumexp(x)) == pytest.approx(
        math.log(2) + math.log1p(math.exp(-50.0) / 2), rel=rel, abs=0
    )


@pytest.mark.parametrize("dtype", KERNEL_DTYPES)
@pytest.mark.parametrize(
    "shape, axis, keepdims",
    [
        ((0, 3), 0, False),
        ((0, 3), 0, True),
        ((3, 0), 1, False),
        ((3, 0), -1, True),
        ((2, 0, 4), 1, True),
    ],
)
def test_logsumexp_empty_return_sign(dtype, shape, axis, keepdims):
    res, sgn = compare(
        "logsumexp", np.zeros(shape, dtype), axis, keepdims=keepdims, return_sign=True
    )
    assert np.all(res == -np.inf)  # the sign is scipy's: sign(-inf) = -1


# --------------------------------------------------------------------------
# errors


BAD_AXES = [2, -3, (0, 0), (0, -2), (1, 2), 1.0, (0, 1.0), "1", np.float64(0), [0, 1]]


@pytest.mark.parametrize("axis", BAD_AXES, ids=repr)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.complex128])
@pytest.mark.parametrize("name", FUNCS)
def test_bad_axis_raises_like_scipy(name, dtype, axis):
    x = make_input((3, 4), dtype, seed=12)
    try:
        sp_func(name)(x, axis=axis)
    except Exception as exc:
        with pytest.raises(type(exc)):
            fs_func(name)(x, axis=axis)
    else:
        # scipy accepts this one (a list of axes, say): so must fastsoftmax.
        compare(name, x, axis)


@pytest.mark.parametrize("axis", [2, (0, 0), 1.0])
def test_bad_axis_raises_with_b(axis):
    x = make_input((3, 4), np.float64, seed=13)
    with pytest.raises(Exception) as info:
        scipy.special.logsumexp(x, axis=axis, b=2.0)
    with pytest.raises(info.type):
        fastsoftmax.logsumexp(x, axis=axis, b=2.0)


@pytest.mark.parametrize("b_shape", [(3,), (4, 3), (2, 4), (2, 1, 3)])
def test_incompatible_b_raises_like_scipy(b_shape):
    x = make_input((3, 4), np.float64, seed=14)
    with pytest.raises(Exception) as info:
        scipy.special.logsumexp(x, axis=1, b=np.ones(b_shape))
    with pytest.raises(info.type):
        fastsoftmax.logsumexp(x, axis=1, b=np.ones(b_shape))


@pytest.mark.parametrize("dtype", KERNEL_DTYPES)
def test_b_broadcasting_a_up(dtype):
    # b may have more dimensions than a: axes refer to the broadcast shape.
    x = make_input((3, 4), dtype, seed=14)
    b = np.linspace(0.5, 1.5, 24).reshape(2, 3, 4).astype(dtype)
    for axis in [None, 0, 1, 2, -1, (1, 2), (0, 2)]:
        tol = tolerances("logsumexp", dtype, reduced_size(b.shape, axis))
        compare("logsumexp", x, axis, tol=tol, b=b)
        compare("logsumexp", x, axis, tol=tol, b=b, keepdims=True, return_sign=True)


@pytest.mark.parametrize("name", FUNCS)
def test_non_numeric_input_raises_like_scipy(name):
    for x in [
        np.array(["a", "b"]),
        np.array([object(), object()], dtype=object),
        np.array([1.0, 2.0], dtype=object),
    ]:
        compare(name, x, None)


def test_logsumexp_numeric_strings():
    compare("logsumexp", np.array(["1", "2.5"]), None)
    compare("logsumexp", ["1", "2.5"], 0)


# --------------------------------------------------------------------------
# inputs are left alone


@pytest.mark.parametrize("name", FUNCS)
@pytest.mark.parametrize("dtype", KERNEL_DTYPES + [np.float16, np.int64])
def test_input_not_modified(name, dtype):
    x = make_input((5, 6, 7), dtype, seed=15)
    if x.dtype.kind == "f":
        x[0, 0, 0] = np.nan
        x[1, 1, :] = -np.inf
    keep = x.copy()
    for axis in [None, 0, 1, 2, (0, 2), (2, 1, 0)]:
        fs_func(name)(x, axis=axis)
        np.testing.assert_array_equal(x, keep)
        fs_func(name)(x[::-1, ::2], axis=axis)
        np.testing.assert_array_equal(x, keep)
    if name == "logsumexp":
        b = np.ones(7, dtype=x.dtype)
        b_keep = b.copy()
        fastsoftmax.logsumexp(x, axis=2, b=b, return_sign=True)
        np.testing.assert_array_equal(x, keep)
        np.testing.assert_array_equal(b, b_keep)


# --------------------------------------------------------------------------
# out=


def out_arrays(shape, dtype):
    """Writable outputs of ``shape``: C, Fortran and a step-sliced view."""
    big = np.zeros(tuple(2 * n for n in shape), dtype=dtype)
    return {
        "C": np.zeros(shape, dtype=dtype),
        "F": np.zeros(shape, dtype=dtype, order="F"),
        "step-sliced": big[tuple(slice(None, None, 2) for _ in shape)],
    }


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", KERNEL_DTYPES)
@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 2), (2, 1)])
def test_out_written_and_returned(name, dtype, axis):
    x = make_input((4, 5, 6), dtype, seed=16)
    expected = sp_func(name)(x, axis=axis)
    rtol, atol = tolerances(name, dtype, reduced_size(x.shape, axis))
    for label, out in out_arrays(x.shape, dtype).items():
        got = fs_func(name)(x, axis=axis, out=out)
        assert got is out, label
        assert np.shares_memory(got, out)
        np.testing.assert_allclose(out, expected, rtol=rtol, atol=atol, err_msg=label)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_out_fallback_dtypes(name):
    # Integer input: the result (and so out) is float64.
    x = make_input((3, 4), np.int64, seed=17)
    out = np.zeros((3, 4))
    got = fs_func(name)(x, axis=1, out=out)
    assert got is out
    np.testing.assert_allclose(out, sp_func(name)(x, axis=1), rtol=1e-13)
    # float16 runs in the kernels, computed in float32 and rounded once: within
    # an ulp (2**-10 relative) of the exact result, where scipy's float16 is not.
    x16 = make_input((3, 4), np.float16, seed=18)
    out16 = np.zeros((3, 4), dtype=np.float16)
    assert fs_func(name)(x16, axis=0, out=out16) is out16
    exact = sp_func(name)(x16.astype(np.float64), axis=0)
    np.testing.assert_allclose(out16, exact, rtol=2**-10, atol=2**-24)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", KERNEL_DTYPES)
@pytest.mark.parametrize("axis", [0, 1, None])
def test_out_in_place(name, dtype, axis):
    x = make_input((6, 7), dtype, seed=19)
    expected = sp_func(name)(x, axis=axis)
    y = x.copy()
    got = fs_func(name)(y, axis=axis, out=y)
    assert got is y
    rtol, atol = tolerances(name, dtype, reduced_size(x.shape, axis))
    np.testing.assert_allclose(y, expected, rtol=rtol, atol=atol)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", KERNEL_DTYPES + [np.int64])
@pytest.mark.parametrize("axis", [1, (0, 1)])
def test_bad_out_raises(name, dtype, axis):
    x = make_input((3, 4), dtype, seed=20)
    result_dtype = np.float64 if np.dtype(dtype).kind == "i" else dtype
    other = np.float32 if result_dtype == np.float64 else np.float64
    read_only = np.zeros((3, 4), dtype=result_dtype)
    read_only.setflags(write=False)
    with pytest.raises(ValueError):
        fs_func(name)(x, axis=axis, out=np.zeros((4, 3), dtype=result_dtype))
    with pytest.raises(ValueError):
        fs_func(name)(x, axis=axis, out=np.zeros((3, 4, 1), dtype=result_dtype))
    with pytest.raises(TypeError):
        fs_func(name)(x, axis=axis, out=np.zeros((3, 4), dtype=other))
    with pytest.raises(ValueError):
        fs_func(name)(x, axis=axis, out=read_only)
    assert not read_only.any()
    with pytest.raises(TypeError):
        fs_func(name)(x, axis=axis, out=np.zeros((3, 4)).tolist())


# --------------------------------------------------------------------------
# the reference module agrees with scipy too (it is the fallback path)


@pytest.mark.parametrize("name", FUNCS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64, np.complex128])
def test_reference_matches_scipy(name, dtype):
    x = make_input((3, 4, 5), dtype, seed=21)
    if np.dtype(dtype).kind == "f":
        x[0, 0, :] = -np.inf
        x[1, 1, 1] = np.nan
        x[2, 2, 2] = np.inf
    for axis in [None, 0, -1, (0, 2)]:
        expected = sp_func(name)(x, axis=axis)
        actual = getattr(reference, name)(x, axis=axis)
        rtol, atol = tolerances(name, np.asarray(expected).dtype, reduced_size(x.shape, axis))
        assert_same_result(actual, expected, rtol, atol)
