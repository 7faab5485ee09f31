"""The fused cross-entropy kernels against the float64 NumPy reference."""

import itertools
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastsoftmax as fs
from fastsoftmax import reference

DTYPES = [np.float32, np.float64]
# (loss rtol, gradient rtol). The gradient's atol is rtol times its largest entry;
# losses and lse get an atol of rtol / 10, the rounding of float exps summed near 1
# (a loss or lse close to 0 is a difference of terms of order 1).
TOL = {np.float32: (1e-6, 1e-5), np.float64: (1e-12, 1e-12)}


def make_case(rng, shape, dtype, target_kind="int64", weighted=False, ignore=False, scale=3.0):
    """Scores, target and weight for an input of ``shape`` (class axis 1, or 0 if 1-D)."""
    x = (scale * rng.standard_normal(shape)).astype(dtype)
    n_classes = shape[0] if len(shape) == 1 else shape[1]
    sample_shape = () if len(shape) == 1 else (shape[0],) + shape[2:]
    if target_kind == "prob":
        q = rng.random(shape)
        axis = 0 if len(shape) == 1 else 1
        target = (q / q.sum(axis=axis, keepdims=True)).astype(dtype)
    else:
        target = rng.integers(0, n_classes, size=sample_shape).astype(target_kind)
        if ignore and target.size > 1:
            target.reshape(-1)[:: max(2, target.size // 3)] = 3
    weight = rng.random(n_classes) + 0.5 if weighted else None
    return x, target, weight


def check_close(actual, expected, dtype, grad=False):
    rtol = TOL[dtype][1 if grad else 0]
    expected = np.asarray(expected, dtype=np.float64)
    finite = expected[np.isfinite(expected)]
    atol = rtol * (np.max(np.abs(finite)) if finite.size else 0.0) if grad else rtol / 10
    np.testing.assert_allclose(
        np.asarray(actual, dtype=np.float64), expected, rtol=rtol, atol=atol, equal_nan=True
    )


FEATURES = [
    dict(),
    dict(weighted=True),
    dict(ignore=True),
    dict(label_smoothing=0.1),
    dict(weighted=True, ignore=True, label_smoothing=0.2),
    dict(z_loss=1e-2),
    dict(softcap=4.0),
    dict(weighted=True, ignore=True, label_smoothing=0.1, z_loss=1e-3, softcap=5.0),
]
SHAPES = [(7,), (6, 5), (4, 5, 3), (3, 4, 2, 3)]


def split(feature):
    case = {k: feature[k] for k in ("weighted", "ignore") if k in feature}
    kwargs = {k: v for k, v in feature.items() if k not in case}
    return case, kwargs


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize(
    "target_kind, feature",
    # ignore_index does not apply to probability targets.
    [
        (k, f)
        for k in ["int64", "int32", "uint8", "prob"]
        for f in FEATURES
        if not (k == "prob" and f.get("ignore"))
    ],
    ids=lambda v: v if isinstance(v, str) else "-".join(v) or "plain",
)
def test_matches_reference(dtype, shape, target_kind, reduction, feature):
    rng = np.random.default_rng(zlib.crc32(repr((shape, target_kind, reduction, feature)).encode()))
    case, kwargs = split(feature)
    x, target, weight = make_case(rng, shape, dtype, target_kind, **case)
    ignore_index = 3 if case.get("ignore") else -100
    args = (x, target, weight, ignore_index, reduction)
    x_before, t_before = x.copy(), target.copy()

    loss, grad, lse = fs.cross_entropy_with_grad(*args, return_lse=True, **kwargs)
    ref_loss, ref_grad, ref_lse = reference.cross_entropy_with_grad(*args, **kwargs)

    check_close(loss, ref_loss, dtype)
    check_close(grad, ref_grad, dtype, grad=True)
    check_close(lse, ref_lse, dtype)
    assert grad.dtype == dtype and grad.shape == x.shape
    assert np.asarray(loss).dtype == dtype and lse.dtype == dtype
    assert np.shape(loss) == np.shape(ref_loss)
    assert isinstance(loss, np.ndarray) == (reduction == "none")
    # The forward alone gives the same loss; the inputs are untouched.
    forward = fs.cross_entropy(*args, **kwargs)
    np.testing.assert_array_equal(forward, loss)
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(target, t_before)
    # The backward from the returned lse gives the fused gradient.
    back = fs.cross_entropy_backward(x, target, lse, weight, ignore_index, reduction, **kwargs)
    check_close(back, ref_grad, dtype, grad=True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_grad_output(dtype, reduction):
    rng = np.random.default_rng(5)
    x, target, weight = make_case(rng, (8, 6), dtype, weighted=True)
    g = rng.standard_normal(8) if reduction == "none" else 2.5
    _, grad = fs.cross_entropy_with_grad(x, target, weight, reduction=reduction, grad_output=g)
    _, ref_grad, _ = reference.cross_entropy_with_grad(
        x, target, weight, reduction=reduction, grad_output=g
    )
    check_close(grad, ref_grad, dtype, grad=True)
    back = fs.cross_entropy_backward(
        x,
        target,
        fs.cross_entropy_with_grad(x, target, return_lse=True)[2],
        weight,
        reduction=reduction,
        grad_output=g,
    )
    check_close(back, ref_grad, dtype, grad=True)


@pytest.mark.parametrize("dtype", DTYPES)
def test_large_logits_precision(dtype):
    """float32 keeps 1e-6 on the loss and 1e-5 on the gradient for logits up to 1e4."""
    rng = np.random.default_rng(11)
    for shape in [(64, 10), (16, 1000), (2, 32000)]:
        x = rng.uniform(-1e4, 1e4, size=shape).astype(dtype)
        # Put a few scores next to the maximum so the softmax is not one-hot.
        top = x.max(axis=1, keepdims=True)
        x[:, :3] = top - rng.uniform(0, 3, size=(shape[0], 3)).astype(dtype)
        target = rng.integers(0, 3, size=shape[0])
        loss, grad = fs.cross_entropy_with_grad(x, target, reduction="none")
        ref_loss, ref_grad, _ = reference.cross_entropy_with_grad(x, target, reduction="none")
        check_close(loss, ref_loss, dtype)
        check_close(grad, ref_grad, dtype, grad=True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "feature",
    FEATURES
    + [dict(target_kind="prob", label_smoothing=0.1, z_loss=1e-2, softcap=3.0, weighted=True)],
    ids=lambda f: "-".join(f) or "plain",
)
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_finite_differences(dtype, feature, reduction):
    """4th-order central differences of the kernel's own loss, one score at a time."""
    feature = dict(feature)
    kind = feature.pop("target_kind", "int64")
    case, kwargs = split(feature)
    rng = np.random.default_rng(3)
    x, target, weight = make_case(rng, (3, 4, 2), np.float64, kind, **case)
    ignore_index = 3 if case.get("ignore") else -100
    g = rng.standard_normal((3, 2)) if reduction == "none" else 1.0

    def f(z):
        loss = fs.cross_entropy(z.astype(dtype), target, weight, ignore_index, reduction, **kwargs)
        return float(np.sum(np.asarray(loss, dtype=np.float64) * g))

    x = x.astype(dtype).astype(np.float64)
    _, grad = fs.cross_entropy_with_grad(
        x.astype(dtype), target, weight, ignore_index, reduction, grad_output=g, **kwargs
    )
    h = 1e-3 if dtype == np.float64 else 3e-2
    numeric = np.zeros_like(x)
    for idx in itertools.product(*map(range, x.shape)):
        e = np.zeros_like(x)
        e[idx] = h
        numeric[idx] = (-f(x + 2 * e) + 8 * f(x + e) - 8 * f(x - e) + f(x - 2 * e)) / (12 * h)
    tol = 1e-7 if dtype == np.float64 else 2e-3
    np.testing.assert_allclose(grad, numeric, rtol=tol, atol=tol)


def test_special_values_follow_torch():
    x = np.array(
        [
            [1.0, -np.inf, 2.0, 0.5],  # masked class
            [-np.inf, 1.0, 2.0, 0.5],  # target masked: infinite loss
            [np.nan, 1.0, 2.0, 0.5],  # NaN row
            [-np.inf, -np.inf, -np.inf, -np.inf],  # nothing left: NaN
            [np.inf, 1.0, 2.0, 0.5],  # +inf: log-softmax is NaN
        ]
    )
    target = np.array([0, 0, 1, 2, 1])
    loss, grad = fs.cross_entropy_with_grad(x, target, reduction="none")
    assert np.isfinite(loss[0]) and np.all(np.isfinite(grad[0])) and grad[0, 1] == 0
    assert loss[1] == np.inf and np.all(np.isfinite(grad[1]))
    assert np.isnan(loss[2]) and np.all(np.isnan(grad[2]))
    assert np.isnan(loss[3]) and np.all(np.isnan(grad[3]))
    assert np.isnan(loss[4]) and np.all(np.isnan(grad[4]))
    ref_loss, ref_grad, _ = reference.cross_entropy_with_grad(x, target, reduction="none")
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-12, atol=1e-15, equal_nan=True)


def test_all_ignored_mean_is_nan_with_zero_grad():
    x = np.random.default_rng(0).standard_normal((4, 3))
    target = np.full(4, -100)
    loss, grad = fs.cross_entropy_with_grad(x, target)
    assert np.isnan(loss)
    assert np.array_equal(grad, np.zeros_like(x))


def test_zero_total_weight_mean_is_nan():
    x = np.random.default_rng(0).standard_normal((4, 3))
    target = np.array([0, 0, -100, 0])
    loss, grad = fs.cross_entropy_with_grad(x, target, weight=np.array([0.0, 1.0, 1.0]))
    ref_loss, ref_grad, _ = reference.cross_entropy_with_grad(
        x, target, weight=np.array([0.0, 1.0, 1.0])
    )
    assert np.isnan(loss) and np.isnan(ref_loss)
    np.testing.assert_array_equal(np.isnan(grad), np.isnan(ref_grad))
    assert np.all(grad[2] == 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_out_and_inplace_share_memory(dtype):
    rng = np.random.default_rng(1)
    x, target, _ = make_case(rng, (16, 10), dtype)
    _, expected = fs.cross_entropy_with_grad(x, target)

    out = np.empty_like(x)
    _, grad = fs.cross_entropy_with_grad(x, target, out=out)
    assert grad is out and np.array_equal(out, expected)

    x_inplace = x.copy()
    _, grad = fs.cross_entropy_with_grad(x_inplace, target, inplace=True)
    assert grad is x_inplace and np.array_equal(grad, expected)

    x_back = x.copy()
    lse = fs.cross_entropy_with_grad(x, target, return_lse=True)[2]
    grad = fs.cross_entropy_backward(x_back, target, lse, inplace=True)
    assert grad is x_back
    check_close(grad, expected, dtype, grad=True)


def test_inplace_on_strided_and_kdim_input():
    rng = np.random.default_rng(2)
    base = rng.standard_normal((6, 5, 4))
    x = base[:, :, ::2]  # no 3-D view without a copy of the strided trailing axis
    target = rng.integers(0, 5, size=(6, 2))
    _, expected = fs.cross_entropy_with_grad(x.copy(), target)
    _, grad = fs.cross_entropy_with_grad(x, target, inplace=True)
    assert grad is x
    np.testing.assert_allclose(base[:, :, ::2], expected, rtol=1e-13)


@pytest.mark.parametrize("layout", ["fortran", "transposed", "sliced", "negative"])
def test_strided_inputs(layout):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((12, 9))
    x = {
        "fortran": np.asfortranarray(x),
        "transposed": x.T.copy().T,
        "sliced": rng.standard_normal((24, 18))[::2, ::2],
        "negative": x[::-1, ::-1],
    }[layout]
    target = rng.integers(0, 9, size=12)
    loss, grad = fs.cross_entropy_with_grad(x, target, label_smoothing=0.1)
    ref_loss, ref_grad, _ = reference.cross_entropy_with_grad(x, target, label_smoothing=0.1)
    check_close(loss, ref_loss, np.float64)
    check_close(grad, ref_grad, np.float64, grad=True)


def test_readonly_and_memmap_inputs(tmp_path):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((10, 7)).astype(np.float32)
    path = tmp_path / "x.dat"
    x.tofile(path)
    mm = np.memmap(path, dtype=np.float32, mode="r", shape=(10, 7))
    target = rng.integers(0, 7, size=10)
    target.setflags(write=False)
    loss, grad = fs.cross_entropy_with_grad(mm, target)
    ref_loss, ref_grad, _ = reference.cross_entropy_with_grad(x, target)
    check_close(loss, ref_loss, np.float32)
    check_close(grad, ref_grad, np.float32, grad=True)
    with pytest.raises(ValueError, match="read-only"):
        fs.cross_entropy_with_grad(mm, target, inplace=True)


@pytest.mark.parametrize("shape", [(512, 300), (8192, 10)])
@pytest.mark.parametrize("kind", ["index", "prob"])
def test_threads_give_identical_results(kind, shape):
    rng = np.random.default_rng(7)
    x, target, weight = make_case(
        rng, shape, np.float32, "prob" if kind == "prob" else "int64", weighted=True, ignore=True
    )
    x[5, 3] = np.nan
    kw = dict(
        label_smoothing=0.1,
        z_loss=1e-3,
        reduction="none",
        ignore_index=-100 if kind == "prob" else 3,
    )
    one = fs.cross_entropy_with_grad(x, target, weight, n_threads=1, **kw)
    two = fs.cross_entropy_with_grad(x, target, weight, n_threads=2, **kw)
    assert np.array_equal(one[0], two[0], equal_nan=True)
    assert np.array_equal(one[1], two[1], equal_nan=True)
    # And both agree with the reference (the NaN row included).
    ref_loss, ref_grad, _ = reference.cross_entropy_with_grad(x, target, weight, **kw)
    check_close(one[0], ref_loss, np.float32)
    check_close(one[1], ref_grad, np.float32, grad=True)


def test_bad_arguments():
    x = np.zeros((4, 3))
    t = np.array([0, 1, 2, 1])
    with pytest.raises(IndexError, match=r"target 5 .* at position \(2,\)"):
        fs.cross_entropy(x, np.array([0, 1, 5, 1]))
    with pytest.raises(IndexError, match="target -1"):
        fs.cross_entropy(x, np.array([0, -1, 2, 1]))
    with pytest.raises(ValueError, match=r"\(3,\).*\(4,\)"):
        fs.cross_entropy(x, t[:3])
    with pytest.raises(TypeError, match="float32, float64, float16 or bfloat16"):
        fs.cross_entropy(x.astype(np.int64), t)
    with pytest.raises(TypeError, match="target"):
        fs.cross_entropy(x, t.astype(bool))
    with pytest.raises(ValueError, match="weight"):
        fs.cross_entropy(x, t, weight=np.ones(4))
    with pytest.raises(ValueError, match="reduction"):
        fs.cross_entropy(x, t, reduction="avg")
    with pytest.raises(ValueError, match="label_smoothing"):
        fs.cross_entropy(x, t, label_smoothing=1.5)
    with pytest.raises(ValueError, match="softcap"):
        fs.cross_entropy(x, t, softcap=0.0)
    with pytest.raises(ValueError, match="ignore_index"):
        fs.cross_entropy(x, np.full((4, 3), 1 / 3), ignore_index=0)
    with pytest.raises(ValueError, match="n_threads"):
        fs.cross_entropy(x, t, n_threads=0)
    with pytest.raises(TypeError, match="n_threads"):
        fs.cross_entropy(x, t, n_threads=1.5)
    with pytest.raises(ValueError, match="out has shape"):
        fs.cross_entropy_with_grad(x, t, out=np.empty((3, 4)))
    with pytest.raises(TypeError, match="out has dtype"):
        fs.cross_entropy_with_grad(x, t, out=np.empty((4, 3), np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        fs.cross_entropy_with_grad(x, t, out=np.empty((3, 4)).T)
    with pytest.raises(ValueError, match="grad_output"):
        fs.cross_entropy_with_grad(x, t, grad_output=np.ones(4))
    with pytest.raises(ValueError, match="lse"):
        fs.cross_entropy_backward(x, t, np.zeros(3))


# ------------------------------------------------------------------ properties

scores = hnp.arrays(
    dtype=st.sampled_from([np.float32, np.float64]),
    shape=hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=40),
    elements=st.floats(-50, 50, width=32),
)


@settings(max_examples=150, deadline=None)
@given(x=scores, seed=st.integers(0, 2**32 - 1), shift=st.floats(-100, 100, width=32))
def test_properties(x, seed, shift):
    rng = np.random.default_rng(seed)
    target = rng.integers(0, x.shape[1], size=x.shape[0])
    loss, grad = fs.cross_entropy_with_grad(x, target, reduction="none")
    assert np.all(loss >= 0)
    tol = 1e-5 if x.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(grad.sum(axis=1), 0, atol=tol * x.shape[1])
    # Shifting a row by a constant changes neither loss nor gradient.
    shifted = (x.astype(np.float64) + np.float64(shift)).astype(x.dtype)
    if np.array_equal(shifted - x.dtype.type(shift), x):  # the shift was exact
        loss2, grad2 = fs.cross_entropy_with_grad(shifted, target, reduction="none")
        np.testing.assert_allclose(loss2, loss, rtol=tol * 10, atol=tol * 10)
        np.testing.assert_allclose(grad2, grad, rtol=tol * 10, atol=tol * 10)


@pytest.mark.parametrize("dtype", DTYPES)
def test_kdim_special_values_and_threads(dtype):
    """(N, C, d) inputs run across the inner axis: same values, any thread count."""
    rng = np.random.default_rng(9)
    x, target, weight = make_case(rng, (64, 7, 300), dtype, weighted=True, ignore=True)
    x[0, 2, 5] = np.nan
    x[1, :, 7] = -np.inf
    x[2, 3, 9] = np.inf
    x[3, :, 11] = -np.inf
    x[3, 1, 11] = 0.5  # one class left
    target[3, 11] = 1
    x[4, 2, 13] = -np.inf
    target[4, 13] = 2  # the target is masked: infinite loss
    kw = dict(label_smoothing=0.1, z_loss=1e-3, reduction="none", ignore_index=3)
    one = fs.cross_entropy_with_grad(x, target, weight, n_threads=1, return_lse=True, **kw)
    two = fs.cross_entropy_with_grad(x, target, weight, n_threads=2, return_lse=True, **kw)
    for a, b in zip(one, two):
        assert np.array_equal(a, b, equal_nan=True)
    ref_loss, ref_grad, ref_lse = reference.cross_entropy_with_grad(x, target, weight, **kw)
    check_close(one[0], ref_loss, dtype)
    check_close(one[1], ref_grad, dtype, grad=True)
    check_close(one[2], ref_lse, dtype)
    assert np.isnan(one[0][0, 5]) or target[0, 5] == 3
    assert one[0][4, 13] == np.inf


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("special", [None, -np.inf, np.inf, np.nan, -300.0, -1e30])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_tiles_with_one_wide_or_special_row(dtype, special, smoothing):
    # Rows of few classes are computed 64 at a time, with the fast exp only when
    # every score of the tile is in its range: one row out of range (or NaN,
    # or infinite) must neither spoil the others nor be computed wrongly.
    rng = np.random.default_rng(11)
    x = rng.standard_normal((150, 7)).astype(dtype)
    if special is not None:
        x[70, 3] = special
        x[140, 0] = special
    t = rng.integers(0, 7, size=150)
    loss, grad = fs.cross_entropy_with_grad(
        x, t, reduction="none", label_smoothing=smoothing, n_threads=1
    )
    ref_loss, ref_grad, _ = reference.cross_entropy_with_grad(
        x.astype(np.float64), t, reduction="none", label_smoothing=smoothing
    )
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(loss, ref_loss, rtol=tol, atol=tol, equal_nan=True)
    np.testing.assert_allclose(grad, ref_grad, rtol=tol, atol=tol, equal_nan=True)
    np.testing.assert_array_equal(np.isnan(loss), np.isnan(ref_loss))
    # the (N, C, d) layout goes through the same strips
    x3 = np.ascontiguousarray(x.reshape(15, 10, 7).transpose(0, 2, 1))
    loss3 = fs.cross_entropy(x3, t.reshape(15, 10), reduction="none", label_smoothing=smoothing)
    np.testing.assert_allclose(loss3.reshape(-1), ref_loss, rtol=tol, atol=tol, equal_nan=True)


# Options of a plain call: the short path takes them all when of these types.
_PLAIN_OPTIONS = {
    "defaults": {},
    "smoothing": {"label_smoothing": 0.1},
    "z_loss": {"z_loss": 1e-3},
    "softcap": {"softcap": 2.5},
    "weight": {"weight": "w"},
    "sum": {"reduction": "sum"},
    "none": {"reduction": "none"},
    "ignore 1": {"ignore_index": 1},
    "all": {
        "weight": "w",
        "label_smoothing": 0.2,
        "z_loss": 1e-2,
        "softcap": 3.0,
        "ignore_index": 0,
        "reduction": "mean",
    },
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1), (1, 10), (7, 3), (300, 50), (2000, 40)])
@pytest.mark.parametrize("case", ["plain", "ignored", "all ignored", "nan", "inf"])
@pytest.mark.parametrize("options", list(_PLAIN_OPTIONS))
def test_plain_call_matches_the_general_path(dtype, shape, case, options):
    # 2-D C-contiguous scores, int64 labels and options of their defaults'
    # types take a shorter path: the same results, bit for bit, as the
    # general one (forced here by an ignore_index that is not a plain int).
    rng = np.random.default_rng(sum(shape))
    x = (3 * rng.standard_normal(shape)).astype(dtype)
    t = rng.integers(0, shape[1], size=shape[0])
    kw = dict(_PLAIN_OPTIONS[options])
    if kw.get("weight") == "w":
        kw["weight"] = rng.uniform(0.5, 2.0, size=shape[1])
    ignore = kw.pop("ignore_index", -100)
    if case == "ignored":
        t[::3] = ignore
    elif case == "all ignored":
        t[:] = ignore
    elif case == "nan":
        x[0, 0] = np.nan
    elif case == "inf":
        x[-1, -1] = np.inf
    general = np.int64(ignore)
    loss, grad = fs.cross_entropy_with_grad(x, t, ignore_index=ignore, **kw)
    loss_g, grad_g = fs.cross_entropy_with_grad(x, t, ignore_index=general, **kw)
    assert type(loss) is type(loss_g) and loss.dtype == dtype
    np.testing.assert_array_equal(loss, loss_g)
    np.testing.assert_array_equal(grad, grad_g)
    assert grad.dtype == dtype and grad.flags.c_contiguous
    np.testing.assert_array_equal(
        fs.cross_entropy(x, t, ignore_index=ignore, **kw),
        fs.cross_entropy(x, t, ignore_index=general, **kw),
    )
    if case == "plain":
        ref, ref_grad, _ = reference.cross_entropy_with_grad(
            x.astype(np.float64), t, ignore_index=ignore, **kw
        )
        tol = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(loss, ref, rtol=tol, atol=tol)
        np.testing.assert_allclose(grad, ref_grad, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 10), (300, 50)])
@pytest.mark.parametrize("case", ["plain", "ignored", "nan"])
@pytest.mark.parametrize("options", ["defaults", "weight", "sum", "none", "all"])
@pytest.mark.parametrize("delivery", ["out", "out is input", "inplace", "grad_output", "lse"])
def test_plain_call_with_delivery_options_matches_the_general_path(
    dtype, shape, case, options, delivery
):
    # out=, inplace=True, a float grad_output, return_lse=True and a weight of
    # the scores' dtype take the short path too: bit for bit the general one's.
    rng = np.random.default_rng(sum(shape) + len(delivery))
    x = (3 * rng.standard_normal(shape)).astype(dtype)
    t = rng.integers(0, shape[1], size=shape[0])
    kw = dict(_PLAIN_OPTIONS[options])
    if kw.get("weight") == "w":
        kw["weight"] = rng.uniform(0.5, 2.0, size=shape[1]).astype(dtype)
    ignore = kw.pop("ignore_index", -100)
    if case == "ignored":
        t[::3] = ignore
    elif case == "nan":
        x[0, 0] = np.nan
    if delivery == "grad_output" and kw.get("reduction") == "none":
        kw["grad_output"] = np.full(shape[0], 2.5)  # general path: an array
    elif delivery == "grad_output":
        kw["grad_output"] = 2.5
    if delivery == "lse":
        kw["return_lse"] = True

    def run(ignore_index):
        xx = x.copy()
        extra = {}
        if delivery == "out":
            extra["out"] = np.full_like(xx, 7.0)
        elif delivery == "out is input":
            extra["out"] = xx
        elif delivery == "inplace":
            extra["inplace"] = True
        result = fs.cross_entropy_with_grad(xx, t, ignore_index=ignore_index, **kw, **extra)
        if "out" in extra:
            assert result[1] is extra["out"]
        elif delivery == "inplace":
            assert result[1] is xx
        return result

    fast, general = run(ignore), run(np.int64(ignore))
    assert len(fast) == len(general) == (3 if delivery == "lse" else 2)
    for a, b in zip(fast, general):
        assert type(a) is type(b) and a.dtype == b.dtype == dtype
        np.testing.assert_array_equal(a, b)
    if case == "plain":
        ref_kw = {k: v for k, v in kw.items() if k != "return_lse"}
        _, ref_grad, ref_lse = reference.cross_entropy_with_grad(
            x.astype(np.float64), t, ignore_index=ignore, **ref_kw
        )
        tol = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(fast[1], ref_grad, rtol=tol, atol=tol)
        if delivery == "lse":
            np.testing.assert_allclose(fast[2], ref_lse, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(3, 4), (300, 4), (5, 300)])
@pytest.mark.parametrize("general", [False, True])
def test_an_infinite_class_weight_leaves_other_rows_finite(dtype, shape, general):
    # Without smoothing the sum of the weights plays no part: rows whose
    # target has a finite weight keep their finite loss and gradient (as in
    # torch), whatever another class's weight is.
    rng = np.random.default_rng(shape[0])
    x = rng.standard_normal(shape).astype(dtype)
    t = rng.integers(0, shape[1], size=shape[0])
    t[0] = 1
    w = rng.uniform(0.5, 2.0, size=shape[1])
    w[1] = np.inf
    ignore = np.int64(-100) if general else -100
    loss, grad = fs.cross_entropy_with_grad(x, t, w, ignore, reduction="none")
    ref_loss, ref_grad, _ = reference.cross_entropy_with_grad(
        x.astype(np.float64), t, w, reduction="none"
    )
    finite = t != 1
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(loss[finite], ref_loss[finite], rtol=tol, atol=tol)
    np.testing.assert_allclose(grad[finite], ref_grad[finite], rtol=tol, atol=tol)
    assert np.all(np.isinf(loss[~finite]))


def test_plain_call_still_checks_its_arguments():
    x = np.zeros((3, 4))
    with pytest.raises(IndexError, match="target 4 is out of bounds for 4 classes at position"):
        fs.cross_entropy_with_grad(x, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match="target has shape"):
        fs.cross_entropy_with_grad(x, np.array([0, 1]))
    with pytest.raises(TypeError):
        fs.cross_entropy(x, np.array([0, 1, 2]), ignore_index=-100.0)
    with pytest.raises(TypeError):
        fs.cross_entropy(x, np.array([0, 1, 2]), label_smoothing=False)
    t = np.array([0, 1, 2])
    with pytest.raises(ValueError, match="label_smoothing must be in"):
        fs.cross_entropy_with_grad(x, t, label_smoothing=1.5)
    with pytest.raises(ValueError, match="z_loss must be in"):
        fs.cross_entropy_with_grad(x, t, z_loss=float("nan"))
    with pytest.raises(ValueError, match="softcap must be a positive finite"):
        fs.cross_entropy_with_grad(x, t, softcap=-1.0)
    with pytest.raises(ValueError, match="reduction must be one of"):
        fs.cross_entropy_with_grad(x, t, reduction="avg")
    with pytest.raises(ValueError, match="weight has shape"):
        fs.cross_entropy_with_grad(x, t, weight=np.ones(3))
    # A float32 weight gives what its float64 value gives.
    w = np.array([0.5, 1.0, 2.0, 4.0])
    np.testing.assert_array_equal(
        fs.cross_entropy_with_grad(x, t, weight=w.astype(np.float32))[1],
        fs.cross_entropy_with_grad(x, t, weight=w)[1],
    )
    # the input is never written
    x = np.random.default_rng(0).standard_normal((3, 4))
    before = x.copy()
    fs.cross_entropy_with_grad(x, np.array([0, 1, 2]))
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weighted", [False, True])
def test_tiny_smoothing_meets_minus_inf(dtype, weighted):
    """A label smoothing whose eps / C is 0 in float32 still puts mass on a
    class scored -inf: the loss is inf, as the float64 reference says, not
    0 * inf = NaN (found by tests/test_fuzz.py)."""
    x = np.array([[-np.inf, 0.33], [-np.inf, -1.3], [0.5, 0.2]], dtype=dtype)
    q = np.array([[0.0, 1.0], [0.0, 1.0], [0.5, 0.5]], dtype=dtype)
    w = np.array([1.0, 2.0]) if weighted else None
    kw = dict(weight=w, label_smoothing=2.2e-311, reduction="none")
    ref = reference.cross_entropy(x.astype(np.float64), q.astype(np.float64), **kw)
    got = fs.cross_entropy(x, q, **kw)
    assert np.isposinf(ref[:2]).all() and np.isposinf(got[:2]).all()
    np.testing.assert_allclose(got[2], ref[2], rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES + [np.float16])
@pytest.mark.parametrize("probs", [False, True], ids=["indices", "probabilities"])
@pytest.mark.parametrize(
    "options",
    [dict(label_smoothing=0.1, softcap=5.0), dict(label_smoothing=0.2), dict(softcap=3.0)],
    ids=lambda o: "-".join(o),
)
def test_the_forward_loss_is_the_fused_loss_bit_for_bit(dtype, probs, options):
    # Rows of every width up to a few blocks of lanes, one row to many: the
    # forward reads z from another buffer than the fused call with softcap,
    # and the order of its sums must not depend on which.
    rng = np.random.default_rng([zlib.crc32(repr(options).encode()), probs])
    for n_classes in [2, 3, 5, 15, 16, 17, 31, 40, 100]:
        for n_rows in [1, 3, 7]:
            x = (3.0 * rng.standard_normal((n_rows, n_classes))).astype(dtype)
            if probs:
                q = rng.random((n_rows, n_classes))
                target = (q / q.sum(axis=1, keepdims=True)).astype(dtype)
            else:
                target = rng.integers(0, n_classes, n_rows)
            weight = None if probs else rng.random(n_classes) + 0.5
            kw = dict(weight=weight, reduction="none", **options)
            forward = fs.cross_entropy(x, target, **kw)
            fused = fs.cross_entropy_with_grad(x, target, return_lse=True, **kw)[0]
            np.testing.assert_array_equal(forward, fused, err_msg=f"{n_rows} x {n_classes}")
