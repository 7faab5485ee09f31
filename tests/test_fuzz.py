"""Fuzzing every public function against fastsoftmax.reference.

Shapes (empty, one element, rows of a few thousand), dtypes (float16/32/64 in
either byte order, integers, bool, complex, object, strings), memory layouts
(Fortran order, transposes, steps, negative strides, unaligned data,
broadcast views), values (NaN, infinities, huge, subnormal) and arguments
(axes, keepdims, b, weights, ignore_index, smoothing, reductions, z_loss,
softcap, grad_output, out=, inplace=, n_threads) are drawn at random. Each
call either matches the reference within the tolerance of its dtype or raises
TypeError, ValueError or IndexError (the exact type being known in advance),
and never changes an input it was not asked to write to.

The softmax family is compared with the reference computed in float64 for
float16, float32 and float64 inputs, and with the reference on the same input for the
other dtypes (the NumPy fallback), where the reference's exceptions are the
expected ones. The cross-entropy functions are compared with the float64
reference loss, gradient and lse.
"""

import math
import os
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastsoftmax as fs
from fastsoftmax import reference

ERRORS = (TypeError, ValueError, IndexError)
KERNEL = (np.dtype(np.float32), np.dtype(np.float64))
# float16 runs in the kernels too (computed in float32; cross-entropy losses
# and lse in float32).
FAMILY_KERNEL = XENT_KERNEL = KERNEL + (np.dtype(np.float16),)
# Per test: 6 tests, 1,500 examples. FASTSOFTMAX_FUZZ_EXAMPLES=20000 for a long campaign.
EXAMPLES = int(os.environ.get("FASTSOFTMAX_FUZZ_EXAMPLES", "250"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ------------------------------------------------------------------ drawing

FLOAT_DTYPES = ["float32", "float64", "float32", "float64", ">f4", ">f8"]
XENT_DTYPES = FLOAT_DTYPES + ["float16", ">f2"]
OTHER_DTYPES = [
    "float16",
    ">f2",
    "int8",
    "int64",
    "uint8",
    "bool",
    "complex64",
    "complex128",
    "object",
    "longdouble",
]
LAYOUTS = ["C", "C", "F", "reversed", "stepped", "transposed", "unaligned", "broadcast"]


def native(dtype):
    return np.dtype(dtype).newbyteorder("=")


@st.composite
def shapes(draw, min_dims=0, max_dims=3, max_size=6000):
    """A shape whose size stays small, now and then with one wide axis."""
    ndim = draw(st.integers(min_dims, max_dims))
    shape = [draw(st.sampled_from([0, 1, 1, 2, 3, 4, 5, 7])) for _ in range(ndim)]
    if ndim and draw(st.integers(0, 4)) == 0:
        axis = draw(st.integers(0, ndim - 1))
        rest = math.prod(n for i, n in enumerate(shape) if i != axis) or 1
        shape[axis] = draw(st.integers(8, max(8, min(3000, max_size // rest))))
    return tuple(shape)


@st.composite
def float_values(draw, shape, dtype):
    """float64 values for an array of `dtype`: normal at some scale, with special values."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from([1.0, 1.0, 1e-3, 30.0, 1e4]))
    values = np.asarray(rng.standard_normal(shape) * scale, dtype=np.float64)
    if values.size and draw(st.booleans()):
        finfo = np.finfo(np.float32 if native(dtype) == np.float32 else np.float64)
        specials = draw(
            st.lists(
                st.sampled_from(
                    [np.nan, np.inf, -np.inf, finfo.max / 8, -finfo.max / 8, finfo.tiny / 4, 0.0]
                ),
                min_size=1,
                max_size=4,
            )
        )
        flat = values.reshape(-1)
        for v in specials:
            flat[rng.integers(flat.size)] = v
        if draw(st.integers(0, 5)) == 0:  # a whole slice of -inf
            flat[: rng.integers(1, flat.size + 1)] = -np.inf
    return values


def cast(values, dtype):
    dtype = np.dtype(dtype)
    with np.errstate(all="ignore"):
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            v = np.nan_to_num(values, nan=0.0, posinf=info.max, neginf=info.min)
            return np.clip(np.round(v), info.min, info.max).astype(dtype)
        if dtype.kind == "b":
            return values > 0
        if dtype.kind == "c":
            return (values + 0.5j * values.reshape(-1)[::-1].reshape(values.shape)).astype(dtype)
        if dtype.kind == "O":
            return values.astype(object)
        return values.astype(dtype)


@st.composite
def laid_out(draw, a, writable=False):
    """An array equal to `a`, in one of several memory layouts (a view where possible)."""
    layouts = [lay for lay in LAYOUTS if not (writable and lay == "broadcast")]
    layout = draw(st.sampled_from(layouts))
    if a.ndim == 0 or layout == "C":
        return np.ascontiguousarray(a) if a.ndim else a.copy()
    if layout == "F":
        return np.asfortranarray(a)
    if layout == "reversed":
        axes = tuple(i for i in range(a.ndim) if draw(st.booleans())) or (0,)
        return np.flip(np.flip(a, axes).copy(), axes)
    if layout == "stepped":
        big = np.zeros(tuple(2 * n for n in a.shape), dtype=a.dtype)
        view = big[tuple(slice(None, None, 2) for _ in a.shape)]
        view[...] = a
        return view
    if layout == "transposed":
        perm = draw(st.permutations(range(a.ndim)))
        return np.ascontiguousarray(a.transpose(perm)).transpose(np.argsort(perm))
    if layout == "unaligned":
        if a.dtype.kind == "O" or a.dtype.itemsize == 1:
            return a.copy()
        raw = np.zeros(a.nbytes + 1, dtype=np.uint8)[1:]
        view = raw.view(a.dtype).reshape(a.shape)
        view[...] = a
        return view
    # broadcast: a read-only view with a zero stride, over a copy of a's first slice
    axis = draw(st.integers(0, a.ndim - 1))
    if a.shape[axis] == 0:
        return a.copy()
    first = np.take(a, [0], axis=axis)
    return np.broadcast_to(first, a.shape)


def snapshot(*arrays):
    return [(a, np.array(a, copy=True)) for a in arrays if isinstance(a, np.ndarray)]


def assert_unchanged(saved):
    for a, before in saved:
        assert a.dtype == before.dtype and a.shape == before.shape
        if a.dtype.kind == "O":
            assert all(
                x is y or x == y or (x != x and y != y)
                for x, y in zip(a.reshape(-1), before.reshape(-1))
            )
        else:
            assert np.array_equal(a, before, equal_nan=a.dtype.kind in "fc"), "input changed"


# ---------------------------------------------------------------- comparing


def assert_close(actual, expected, dtype, rtol, atol):
    """actual (of `dtype`) against the float64 expected: NaN where NaN, same infinities,
    |actual - expected| <= atol + rtol |expected| elsewhere. A value beyond the dtype's
    range may come out infinite (or as the largest finite value) in `dtype`."""
    actual = np.asarray(actual)
    assert actual.dtype == native(dtype), (actual.dtype, dtype)
    a = actual.astype(np.float64)
    e = np.asarray(expected, dtype=np.float64)
    assert a.shape == e.shape, (a.shape, e.shape)
    big = np.finfo(dtype).max * (1 - rtol)
    with np.errstate(all="ignore"):
        overflow = (np.abs(e) >= big) & (np.abs(a) >= big) & (np.sign(a) == np.sign(e))
        ok = (
            (np.isnan(a) & np.isnan(e))
            | (a == e)
            | overflow
            | (np.abs(a - e) <= atol + rtol * np.abs(e))
        )
    if not np.all(ok):
        bad = np.flatnonzero(~ok.reshape(-1))[:5]
        raise AssertionError(
            f"mismatch at flat {bad.tolist()}: got {a.reshape(-1)[bad]}, "
            f"expected {e.reshape(-1)[bad]} (rtol {rtol}, atol {atol})"
        )


def assert_same(actual, expected):
    """The fallback path: exactly the reference's result."""
    if isinstance(expected, tuple):
        assert isinstance(actual, tuple) and len(actual) == len(expected)
        for u, v in zip(actual, expected):
            assert_same(u, v)
        return
    a, e = np.asarray(actual), np.asarray(expected)
    assert a.dtype == e.dtype and a.shape == e.shape, (a.dtype, e.dtype, a.shape, e.shape)
    if a.dtype.kind == "O":
        assert all(x == y or (x != x and y != y) for x, y in zip(a.reshape(-1), e.reshape(-1)))
    else:
        assert np.array_equal(a, e, equal_nan=a.dtype.kind in "fc")


def expect(exc_type, fn, saved):
    """fn() raises exactly exc_type and leaves the inputs alone."""
    with pytest.raises(exc_type) as info:
        fn()
    assert type(info.value) is exc_type, (type(info.value), exc_type)
    assert_unchanged(saved)


# ---------------------------------------------------------- softmax family


@st.composite
def axes_for(draw, ndim):
    """None, an int, a tuple of ints, and now and then something invalid."""
    kind = draw(st.sampled_from(["none", "int", "int", "tuple", "bad"]))
    if kind == "none":
        return None
    if kind == "int":
        return draw(st.integers(-max(ndim, 1), max(ndim - 1, 0)))
    if kind == "tuple":
        return (
            tuple(
                draw(
                    st.lists(
                        st.integers(-ndim, max(ndim - 1, 0)),
                        max_size=ndim,
                        unique_by=lambda i: i % max(ndim, 1),
                    )
                )
            )
            if ndim
            else ()
        )
    return draw(st.sampled_from([ndim, -ndim - 1, 1.0, "0", (0, 0), [0], (0, ndim)]))


@st.composite
def family_case(draw, name):
    dtype = draw(st.sampled_from(FLOAT_DTYPES * 3 + OTHER_DTYPES))
    shape = draw(shapes())
    x = draw(laid_out(cast(draw(float_values(shape, dtype)), dtype)))
    kwargs = dict(axis=draw(axes_for(x.ndim)))
    if draw(st.booleans()):
        kwargs["n_threads"] = draw(st.sampled_from([None, 1, 2, 3]))
    if name == "logsumexp":
        kwargs["keepdims"] = draw(st.booleans())
        kwargs["return_sign"] = draw(st.booleans())
        if draw(st.integers(0, 5)) == 0:
            kwargs["b"] = draw(st.sampled_from([2.0, -1.0, 0.0, np.ones(shape[-1:] or (1,)) * 0.5]))
    out_kind = (
        None
        if name == "logsumexp"
        else draw(
            st.sampled_from([None, None, "fresh", "F", "wrong-shape", "wrong-dtype", "read-only"])
        )
    )
    return x, kwargs, out_kind


def family_reference(name, x, kwargs):
    fn = getattr(reference, name)
    ref_kw = {k: v for k, v in kwargs.items() if k != "n_threads"}
    if name == "logsumexp":
        return fn(x, **ref_kw)
    return fn(x, ref_kw["axis"])


def make_out(kind, result):
    result = np.asarray(result)
    if kind == "fresh":
        return np.full(result.shape, -7.0, dtype=result.dtype)
    if kind == "F":
        return np.full(result.shape, -7.0, dtype=result.dtype, order="F")
    if kind == "wrong-shape":
        return np.zeros(result.shape + (2,), dtype=result.dtype)
    if kind == "wrong-dtype":
        other = np.float32 if result.dtype != np.float32 else np.float64
        return np.zeros(result.shape, dtype=other)
    out = np.zeros(result.shape, dtype=result.dtype)
    out.setflags(write=False)
    return out


def family_tolerance(name, x, dtype, axis):
    eps = float(np.finfo(dtype).eps)
    # float16 is computed in float32 and rounded once: within an ulp or two
    rtol = 2 * eps if dtype.itemsize == 2 else 1e3 * eps
    axes = range(x.ndim) if axis is None else np.atleast_1d(axis)
    n = math.prod(x.shape[int(a)] for a in axes) if x.ndim else 1
    if name == "softmax":
        return rtol, 16 * float(np.finfo(dtype).smallest_subnormal)
    return rtol, rtol * (math.log(max(n, 1)) + 1)


def check_family(name, case):
    x, kwargs, out_kind = case
    saved = snapshot(x, kwargs.get("b"))
    kernel = native(x.dtype) in FAMILY_KERNEL and x.size > 0 and x.ndim > 0 and "b" not in kwargs
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            expected = family_reference(name, x, kwargs)
            expected_exc = None
        except Exception as exc:
            # What scipy raises, which the drop-ins raise too. For float32 and float64
            # (the kernels' dtypes) that can only be one of ERRORS; scipy's fallback
            # dtypes have a quirk or two (AttributeError for a 0-d object array).
            assert not kernel or isinstance(exc, ERRORS), exc
            expected, expected_exc = None, type(exc)
        n_threads = kwargs.get("n_threads", "x")
        if n_threads is not None and n_threads != "x" and n_threads < 1:
            expected_exc = ValueError
        if expected_exc is not None:
            expect(expected_exc, lambda: getattr(fs, name)(x, **kwargs), saved)
            return
        out = None
        if out_kind is not None:
            out = make_out(out_kind, expected)
            kwargs = dict(kwargs, out=out)
            if out_kind in ("wrong-shape", "read-only"):
                expect(ValueError, lambda: getattr(fs, name)(x, **kwargs), saved)
                return
            if out_kind == "wrong-dtype":
                expect(TypeError, lambda: getattr(fs, name)(x, **kwargs), saved)
                return
        got = getattr(fs, name)(x, **kwargs)
    assert_unchanged(saved)
    if out is not None:
        assert got is out
    if not kernel:
        assert_same(got, expected)
        return
    dtype = native(x.dtype)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        expected64 = family_reference(name, x.astype(np.float64), kwargs)
    rtol, atol = family_tolerance(name, x, dtype, kwargs["axis"])
    if isinstance(got, tuple):  # logsumexp's (result, sign)
        assert_close(got[0], expected64[0], dtype, rtol, atol)
        assert_same(np.asarray(got[1]), np.asarray(expected64[1]).astype(dtype))
        assert np.asarray(got[0]).shape == np.asarray(expected[0]).shape
    else:
        assert_close(got, expected64, dtype, rtol, atol)
        assert np.shape(got) == np.shape(expected)


@FUZZ
@given(data=st.data())
def test_fuzz_softmax(data):
    check_family("softmax", data.draw(family_case("softmax")))


@FUZZ
@given(data=st.data())
def test_fuzz_log_softmax(data):
    check_family("log_softmax", data.draw(family_case("log_softmax")))


@FUZZ
@given(data=st.data())
def test_fuzz_logsumexp(data):
    check_family("logsumexp", data.draw(family_case("logsumexp")))


# ------------------------------------------------------------ cross-entropy

INDEX_DTYPES = ["int64", "int32", "int16", "int8", "uint8", "uint16", "uint32", "uint64", ">i8"]


MISTAKES = {
    # mistake: the exception it raises (None: decided below)
    "input-dtype": TypeError,
    "no-classes": ValueError,
    "label": IndexError,
    "target-shape": ValueError,
    "target-dtype": TypeError,
    "weight": ValueError,
    "smoothing": ValueError,
    "reduction": ValueError,
    "softcap": ValueError,
    "z_loss": ValueError,
    "n_threads": None,
    "prob-ignore": ValueError,
    "out-shape": ValueError,
    "out-dtype": TypeError,
    "out-layout": ValueError,
    "inplace-read-only": ValueError,
    "grad-output-shape": ValueError,
    "lse-shape": ValueError,
}
GRAD_ONLY = ("out-shape", "out-dtype", "out-layout", "inplace-read-only", "grad-output-shape")


@st.composite
def xent_case(draw, name):
    """(keyword arguments of the call, the exception expected or None, the mistake)."""
    # One deliberate mistake at most, so that the expected exception is known.
    applicable = [
        m
        for m in MISTAKES
        if not (
            (m in GRAD_ONLY and name == "cross_entropy")
            or (m == "lse-shape" and name != "cross_entropy_backward")
        )
    ]
    mistake = draw(st.sampled_from([None] * 12 + applicable))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))

    dtype = draw(st.sampled_from(XENT_DTYPES))
    if mistake == "input-dtype":
        dtype = draw(st.sampled_from(["int64", "bool", "complex128", "object", "longdouble"]))
        if native(dtype) in KERNEL:  # long double is double on some platforms
            mistake = None
    ndim = draw(st.sampled_from([1, 2, 2, 2, 3, 4]))
    shape = list(draw(shapes(min_dims=ndim, max_dims=ndim, max_size=4000)))
    class_axis = 0 if ndim == 1 else 1
    if shape[class_axis] == 0 and mistake != "no-classes":
        shape[class_axis] = draw(st.integers(1, 5))
    if mistake == "no-classes":
        shape[class_axis] = 0
    shape = tuple(shape)
    n_classes = shape[class_axis]
    sample_shape = () if ndim == 1 else (shape[0],) + shape[2:]

    inplace = False
    if name != "cross_entropy" and mistake in (None, "inplace-read-only"):
        inplace = mistake == "inplace-read-only" or draw(st.integers(0, 4)) == 0
    x = draw(laid_out(cast(draw(float_values(shape, dtype)), dtype), writable=inplace))
    if mistake == "inplace-read-only":
        x = x.copy()
        x.setflags(write=False)
    kw = dict(input=x, inplace=inplace)

    probs = draw(st.integers(0, 3)) == 0 and mistake not in ("label", "target-dtype")
    ignore_index = draw(st.sampled_from([-100, -100, -1, 0, 2]))
    if mistake == "prob-ignore":
        probs, ignore_index = True, draw(st.integers(0, 3))
    elif probs and ignore_index >= 0:
        ignore_index = -100
    if probs:
        q = rng.random(shape) * (rng.random(shape) < 0.8)
        with np.errstate(all="ignore"):
            q = q / q.sum(axis=class_axis, keepdims=True)
        q = np.nan_to_num(q, nan=1.0 / max(n_classes, 1))
        tdtype = draw(st.sampled_from(["float32", "float64", "float16", ">f8"]))
        target = draw(laid_out(q.astype(tdtype)))
        if mistake == "target-shape":
            target = np.full(shape[:-1] + (shape[-1] + 1,), 0.5, dtype=tdtype)
    else:
        labels = rng.integers(0, max(n_classes, 1), sample_shape)
        if ignore_index >= 0 or draw(st.booleans()):
            labels[rng.random(sample_shape) < 0.3] = ignore_index
        if mistake == "label":
            bad = draw(st.sampled_from([n_classes, n_classes + 5, -2, -101]))
            if labels.size and bad != ignore_index:
                labels.reshape(-1)[rng.integers(labels.size)] = bad
            else:
                mistake = None
        tdtype = np.dtype(draw(st.sampled_from(INDEX_DTYPES)))
        info = np.iinfo(tdtype)
        if labels.size and (labels.min() < info.min or labels.max() > info.max):
            tdtype = np.dtype(np.int64)
        if not (info.min <= ignore_index <= info.max) and mistake != "label":
            tdtype = np.dtype(np.int64)  # keep the meaning of ignore_index
        # (not a broadcast view when one label was made wrong: it could vanish)
        target = draw(laid_out(labels.astype(tdtype), writable=mistake == "label"))
        if mistake == "target-shape":
            target = np.zeros(sample_shape + (2,), dtype=np.int64)
        if mistake == "target-dtype":
            target = labels.astype(draw(st.sampled_from(["bool", "complex64", "object"])))
    kw["target"] = target

    weight = None
    if draw(st.booleans()):
        wdtype = draw(st.sampled_from(["float64", "float32", "int64"]))
        w = rng.random(n_classes) * 3
        w[rng.random(n_classes) < 0.1] = 0.0
        w = w.astype(wdtype) if wdtype != "int64" else rng.integers(0, 4, n_classes)
        weight = draw(laid_out(w))
    if mistake == "weight":
        weight = np.ones(n_classes + draw(st.sampled_from([-1, 1, 3])))
    kw["weight"] = weight
    kw["ignore_index"] = ignore_index
    kw["reduction"] = draw(st.sampled_from(["mean", "sum", "none"]))
    if mistake == "reduction":
        kw["reduction"] = draw(st.sampled_from(["avg", "batchmean", None, "MEAN"]))
    kw["label_smoothing"] = draw(st.sampled_from([0.0, 0.0, 0.1, 1.0]) | st.floats(0.0, 1.0))
    if mistake == "smoothing":
        kw["label_smoothing"] = draw(st.sampled_from([-0.5, 1.5, np.nan]))
    kw["z_loss"] = draw(st.sampled_from([0.0, 0.0, 1e-4, 0.1]))
    if mistake == "z_loss":
        kw["z_loss"] = -1e-3
    kw["softcap"] = draw(st.sampled_from([None, None, 0.5, 5.0, 50.0]))
    if mistake == "softcap":
        kw["softcap"] = draw(st.sampled_from([0.0, -1.0, np.inf]))
    kw["n_threads"] = draw(st.sampled_from([None, 1, 2]))
    if mistake == "n_threads":
        kw["n_threads"] = draw(st.sampled_from([0, -2, 1.5]))

    if name != "cross_entropy":
        if kw["reduction"] == "none":
            g = draw(st.sampled_from([None, "array"]))
            if g == "array":
                g = draw(laid_out(rng.standard_normal(sample_shape) * 2))
        else:
            g = draw(st.sampled_from([None, 1.0, -0.5, 3]))
        if mistake == "grad-output-shape":
            g = np.ones(sample_shape + (3,))
        kw["grad_output"] = g
        out = None
        kind = np.dtype(native(dtype)) if native(dtype) in XENT_KERNEL else np.dtype(np.float64)
        if mistake is None and not inplace and draw(st.integers(0, 3)) == 0:
            out = np.full(shape, -7, dtype=kind)
        elif mistake == "out-shape":
            out = np.zeros(shape + (1,), dtype=kind)
        elif mistake == "out-dtype":
            out = np.zeros(shape, dtype=np.float32 if kind == np.float64 else np.float64)
        elif mistake == "out-layout":
            out = np.zeros(shape + (2,), dtype=kind)[..., 0]
            if out.flags.c_contiguous:  # one element or none: any layout is C-contiguous
                mistake, out = None, None
        kw["out"] = out
    if name == "cross_entropy_with_grad":
        kw["return_lse"] = draw(st.booleans())
    if name == "cross_entropy_backward":
        kw["lse_layout"] = draw(st.sampled_from(["float64", "float32", "strided", "unaligned"]))
        if mistake == "lse-shape":
            kw["lse_layout"] = "wrong-shape"

    expected = MISTAKES.get(mistake)
    if mistake == "n_threads":
        expected = TypeError if isinstance(kw["n_threads"], float) else ValueError
    if inplace and x.dtype not in XENT_KERNEL:  # a byte-swapped input cannot take the gradient
        expected = TypeError
    return kw, expected, mistake


def xent_tolerances(x64, kw, ref):
    """(loss rtol, loss atol per sample, gradient atol) for the input's dtype."""
    dtype = native(kw["input"].dtype)
    eps = float(np.finfo(dtype).eps)
    c = 64.0
    z = np.abs(x64[np.isfinite(x64)])
    scale = (float(z.max()) if z.size else 0.0) + 1.0
    if kw["softcap"] is not None:
        scale = min(scale, kw["softcap"] + 1.0)
    n_classes = x64.shape[0 if x64.ndim == 1 else 1]
    w = kw["weight"]
    wmax = float(np.max(np.abs(w))) if w is not None and np.size(w) else 1.0
    big_l = scale + math.log(n_classes) + 1.0
    zl = kw["z_loss"]
    z_term = 2.0 * zl * big_l * min(big_l, 1e300) if zl else 0.0
    loss_atol = c * eps * ((wmax + 1.0) * (2.0 * scale + big_l) + z_term)
    return c * eps, loss_atol, c * eps * ((wmax + 1.0) * 2.0 + 2.0 * zl * big_l + 1.0)


def run_xent(name, kw, lse=None):
    """The fastsoftmax call a case describes."""
    x = kw["input"]
    args = dict(
        weight=kw["weight"],
        ignore_index=kw["ignore_index"],
        reduction=kw["reduction"],
        label_smoothing=kw["label_smoothing"],
        z_loss=kw["z_loss"],
        softcap=kw["softcap"],
        n_threads=kw["n_threads"],
    )
    if name == "cross_entropy":
        return fs.cross_entropy(x, kw["target"], **args)
    args.update(grad_output=kw["grad_output"], inplace=kw["inplace"], out=kw["out"])
    if name == "cross_entropy_with_grad":
        return fs.cross_entropy_with_grad(x, kw["target"], return_lse=kw["return_lse"], **args)
    return fs.cross_entropy_backward(x, kw["target"], lse, **args)


def lse_argument(layout, lse64, loss_shape):
    lse64 = np.asarray(lse64, dtype=np.float64)
    finite = np.abs(lse64[np.isfinite(lse64)])
    if layout == "float32" and np.max(finite, initial=0.0) < np.finfo(np.float32).max / 2:
        return lse64.astype(np.float32)  # (a larger lse would round to inf: a +inf row)
    if layout == "strided" and lse64.ndim:
        big = np.zeros(tuple(2 * n for n in lse64.shape))
        view = big[tuple(slice(None, None, 2) for _ in lse64.shape)]
        view[...] = lse64
        return view
    if layout == "unaligned" and lse64.ndim:
        raw = np.zeros(lse64.nbytes + 1, dtype=np.uint8)[1:]
        view = raw.view(np.float64).reshape(lse64.shape)
        view[...] = lse64
        return view
    if layout == "wrong-shape":
        return np.zeros(tuple(loss_shape) + (2,))
    return lse64.copy()


def documented(kw, x64, ref_loss, ref_grad):
    """The reference's results where it departs from the documented semantics (see
    tests/test_semantics.py): an ignored sample's gradient is exactly 0 whatever its
    scores (the reference gives NaN with softcap), and 'mean' over a total weight of 0 is
    NaN, its gradient NaN for the samples not ignored (the reference gives +-inf when
    label smoothing or z_loss add to the sum)."""
    t = np.asarray(kw["target"])
    if t.dtype.kind == "f":
        return ref_loss, ref_grad
    ignored = t == kw["ignore_index"]
    mask = ignored if x64.ndim == 1 else np.expand_dims(ignored, 1)
    mask = np.broadcast_to(mask, x64.shape)
    ref_grad = np.where(mask, 0.0, ref_grad)
    if kw["reduction"] == "mean":
        n_classes = x64.shape[0 if x64.ndim == 1 else 1]
        w = np.ones(n_classes) if kw["weight"] is None else np.asarray(kw["weight"], np.float64)
        den = np.sum(w[np.where(ignored, 0, t).astype(np.intp)] * ~ignored)
        if den == 0:
            ref_loss = np.float64(np.nan)
            ref_grad = np.where(mask, 0.0, np.nan)
    return ref_loss, ref_grad


def check_xent(name, case):
    kw, expected_exc, mistake = case
    x = kw["input"]
    loss_shape = () if np.ndim(x) <= 1 else (x.shape[0],) + x.shape[2:]
    lse = None
    if name == "cross_entropy_backward":
        # The forward's lse, from the reference when the input is valid for it.
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                ref_lse = reference.cross_entropy_with_grad(
                    np.asarray(x, dtype=np.float64),
                    kw["target"],
                    kw["weight"],
                    kw["ignore_index"],
                    "none",
                    kw["label_smoothing"],
                    z_loss=kw["z_loss"],
                    softcap=kw["softcap"],
                )[2]
        except Exception:
            ref_lse = np.zeros(loss_shape)
        if np.shape(ref_lse) != loss_shape:
            ref_lse = np.zeros(loss_shape)
        lse = lse_argument(kw["lse_layout"], ref_lse, loss_shape)
    inplace = kw.get("inplace", False)
    watched = [kw["target"], kw["weight"], kw.get("grad_output"), lse]
    if not inplace or expected_exc is not None:
        watched.append(x)
    saved = snapshot(*watched)
    x_before = np.array(x, copy=True)

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        if expected_exc is not None:
            expect(expected_exc, lambda: run_xent(name, kw, lse), saved)
            return
        result = run_xent(name, kw, lse)
        out = kw.get("out")
        assert_unchanged(saved)
        x64 = x_before.astype(np.float64)
        ref_loss, ref_grad, ref_lse = reference.cross_entropy_with_grad(
            x64,
            kw["target"],
            kw["weight"],
            kw["ignore_index"],
            kw["reduction"],
            kw["label_smoothing"],
            z_loss=kw["z_loss"],
            softcap=kw["softcap"],
            grad_output=kw.get("grad_output"),
        )
    ref_loss, ref_grad = documented(kw, x64, ref_loss, ref_grad)
    dtype = native(x.dtype)
    loss_dtype = np.dtype(np.float32) if dtype.itemsize == 2 else dtype
    rtol, loss_atol, grad_atol = xent_tolerances(x64, kw, ref_loss)
    # The per-sample scale of the gradient: grad_output, divided by 'mean's denominator.
    g = kw.get("grad_output")
    g = 1.0 if g is None else np.max(np.abs(g), initial=0.0)
    n_samples = math.prod(loss_shape)
    if kw["reduction"] == "mean":
        if np.asarray(kw["target"]).dtype.kind == "f":
            den = float(n_samples)
        else:
            t = np.asarray(kw["target"])
            w = (
                np.ones(x64.shape[0 if x64.ndim == 1 else 1])
                if kw["weight"] is None
                else np.asarray(kw["weight"], dtype=np.float64)
            )
            kept = t != kw["ignore_index"]
            den = float(np.sum(w[np.where(kept, t, 0).astype(np.intp)] * kept))
        g = g / den if den else np.inf
        loss_atol = loss_atol * n_samples / den if den else np.inf
    elif kw["reduction"] == "sum":
        loss_atol = loss_atol * max(n_samples, 1)

    if name == "cross_entropy":
        loss = result
    elif name == "cross_entropy_with_grad":
        loss, grad = result[:2]
    else:
        grad = result
    if name != "cross_entropy_backward":
        assert np.shape(loss) == np.shape(ref_loss)
        assert isinstance(loss, np.ndarray) == (kw["reduction"] == "none")
        assert_close(loss, ref_loss, loss_dtype, rtol, loss_atol)
    if name == "cross_entropy":
        return
    assert grad.shape == np.shape(x) and grad.dtype == dtype
    if inplace:
        assert grad is x
    if out is not None:
        assert grad is out
    if name == "cross_entropy_backward":
        # p = exp(z - lse) with lse rounded to the scores' dtype (or to float32): an
        # error of |lse| eps in every exponent (see test_backward_precision_large_scores)
        finite = np.abs(lse[np.isfinite(lse)])
        eps = max(float(np.finfo(dtype).eps), float(np.finfo(lse.dtype).eps))
        largest = float(np.max(finite, initial=0.0))
        grad_atol = grad_atol * (1.0 + eps * largest / float(np.finfo(dtype).eps))
    if np.isfinite(g):
        assert_close(grad, ref_grad, dtype, rtol, grad_atol * g)
    else:  # 'mean' over a total weight of 0: NaN except the ignored samples
        assert_close(grad, ref_grad, dtype, rtol, 0.0)
    if name == "cross_entropy_with_grad" and kw["return_lse"]:
        lse_got = result[2]
        assert lse_got.shape == loss_shape and lse_got.dtype == loss_dtype
        assert_close(
            lse_got,
            ref_lse,
            loss_dtype,
            rtol,
            rtol * (x64.size and 1.0) * (1.0 + np.max(np.abs(x64[np.isfinite(x64)]), initial=0.0)),
        )


@FUZZ
@given(data=st.data())
def test_fuzz_cross_entropy(data):
    check_xent("cross_entropy", data.draw(xent_case("cross_entropy")))


@FUZZ
@given(data=st.data())
def test_fuzz_cross_entropy_with_grad(data):
    check_xent("cross_entropy_with_grad", data.draw(xent_case("cross_entropy_with_grad")))


@FUZZ
@given(data=st.data())
def test_fuzz_cross_entropy_backward(data):
    check_xent("cross_entropy_backward", data.draw(xent_case("cross_entropy_backward")))


def test_backward_precision_large_scores():
    """The backward from a float64 lse is as accurate as the fused gradient (1e-5)."""
    rng = np.random.default_rng(11)
    x = rng.uniform(-1e4, 1e4, size=(64, 1000)).astype(np.float32)
    top = x.max(axis=1, keepdims=True)
    x[:, :3] = top - rng.uniform(0, 3, size=(64, 3)).astype(np.float32)
    t = rng.integers(0, 3, 64)
    _, ref_grad, ref_lse = reference.cross_entropy_with_grad(x, t, reduction="none")
    _, fused = fs.cross_entropy_with_grad(x, t, reduction="none")
    scale = np.abs(ref_grad).max()
    assert np.abs(fused - ref_grad).max() < 1e-5 * scale
    back = fs.cross_entropy_backward(x, t, ref_lse, reduction="none")
    assert np.abs(back - ref_grad).max() < 1e-5 * scale
