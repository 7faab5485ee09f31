"""The table of NaN and infinity semantics (docs/user_guide/semantics.md), row by row.

Each row of the table is a kind of slice (a row of scores); the tests put
every kind into one batch among ordinary rows and check what that table says
about each, over the code paths that compute it: few classes (tiles across
rows) and many (one row at a time), a class axis that is not last, strided
and Fortran-ordered inputs, several threads, float32 and float64, the fused
forward and backward and the backward from ``lse``, and softcap.
"""

import numpy as np
import pytest

import fastsoftmax as fs

nan, inf = np.nan, np.inf
DTYPES = [np.float32, np.float64]

# ---------------------------------------------------------------- the family

# Kinds of slices for softmax, log_softmax and logsumexp. Position 1 holds the
# special value where there is one.
FAMILY_KINDS = ["finite", "nan", "pos_inf", "pos_and_neg_inf", "neg_inf", "all_neg_inf", "huge"]


def family_row(kind, n, rng):
    row = rng.standard_normal(n)
    if kind == "nan":
        row[1] = nan
    elif kind == "pos_inf":
        row[1] = inf
    elif kind == "pos_and_neg_inf":
        row[1], row[2] = inf, -inf
    elif kind == "neg_inf":
        row[1] = row[-1] = -inf
    elif kind == "all_neg_inf":
        row[:] = -inf
    elif kind == "huge":  # the largest finite values: no overflow on the way
        row[0] = row[1] = np.finfo(np.float32).max
    return row


def family_batch(n_classes, repeat, rng):
    kinds = [k for k in FAMILY_KINDS for _ in range(repeat)]
    rng.shuffle(kinds)
    return kinds, np.array([family_row(k, n_classes, rng) for k in kinds])


def check_family_row(kind, x, sm, lsm, lse, sign):
    """One slice x against the table: softmax sm, log_softmax lsm, logsumexp lse (and sign)."""
    finite = np.isfinite(x)
    if kind in ("nan", "pos_inf", "pos_and_neg_inf", "all_neg_inf"):
        assert np.all(np.isnan(sm)), "softmax: NaN throughout"
    else:
        assert np.all(np.isfinite(sm)) and abs(float(np.sum(sm, dtype=np.float64)) - 1) < 1e-5
        assert np.all(sm[x == -inf] == 0), "softmax: 0 for -inf"
    if kind == "nan":
        assert np.all(np.isnan(lsm)) and np.isnan(lse) and np.isnan(sign)
    elif kind in ("pos_inf", "pos_and_neg_inf"):
        # shift 0, log(sum) = +inf: NaN where x = +inf, -inf elsewhere
        assert np.all(np.isnan(lsm[x == inf])) and np.all(lsm[x != inf] == -inf)
        assert lse == inf and sign == 1
    elif kind == "all_neg_inf":
        assert np.all(np.isnan(lsm)), "log_softmax: (-inf) - (-inf)"
        assert lse == -inf and sign == 0
    else:
        assert np.all(lsm[x == -inf] == -inf) and np.all(np.isfinite(lsm[finite]))
        assert np.isfinite(lse) and sign == 1


FAMILY_LAYOUTS = {
    # name: (n_classes, rows per kind, how the (rows, classes) batch is laid out, axis)
    "few-classes": (5, 3, lambda b: b, 1),
    "many-classes": (300, 2, lambda b: b, 1),
    "class-axis-0": (7, 3, lambda b: b.T, 0),
    "fortran": (40, 2, np.asfortranarray, 1),
    "strided": (9, 2, lambda b: np.repeat(b, 2, axis=1)[::-1, ::2][::-1], 1),
    "3-d": (6, 4, lambda b: b.reshape(len(b) // 2, 2, -1).transpose(0, 2, 1), 1),
    "threads": (64, 300, lambda b: b, 1),
}


@pytest.mark.parametrize("layout", list(FAMILY_LAYOUTS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_family_table(dtype, layout):
    n_classes, repeat, arrange, axis = FAMILY_LAYOUTS[layout]
    rng = np.random.default_rng(1)
    kinds, batch = family_batch(n_classes, repeat, rng)
    x = arrange(batch.astype(dtype))
    kw = dict(axis=axis, n_threads=2)
    sm, lsm = fs.softmax(x, **kw), fs.log_softmax(x, **kw)
    lse, sign = fs.logsumexp(x, return_sign=True, **kw)
    assert np.array_equal(fs.logsumexp(x, **kw), lse, equal_nan=True)
    assert sm.dtype == lsm.dtype == lse.dtype == dtype

    def rows(a):  # back to (rows, classes)
        a = np.moveaxis(a, axis, -1)
        return a.reshape(-1, n_classes)

    if x.ndim == 3:
        lse, sign = lse.reshape(-1), sign.reshape(-1)
    for i, kind in enumerate(kinds):
        check_family_row(kind, rows(x)[i], rows(sm)[i], rows(lsm)[i], lse[i], sign[i])


@pytest.mark.parametrize("dtype", DTYPES)
def test_family_empty(dtype):
    """An empty slice: logsumexp is -inf (sign -1, scipy's); softmax and log_softmax raise
    scipy's ValueError (a maximum over nothing); empty arrays along other axes are fine."""
    x = np.zeros((3, 0), dtype=dtype)
    lse, sign = fs.logsumexp(x, axis=1, return_sign=True)
    assert np.array_equal(lse, np.full(3, -inf)) and np.array_equal(sign, np.full(3, -1.0))
    for name in ["softmax", "log_softmax"]:
        with pytest.raises(ValueError):
            getattr(fs, name)(x, axis=1)
        assert getattr(fs, name)(x, axis=0).shape == (3, 0)


# ------------------------------------------------------------- cross-entropy

# Kinds of rows for the loss, the target being class 0 unless said otherwise.
XENT_KINDS = {
    # kind: (loss, gradient, lse), each "finite", "nan", "inf", "-inf", "zero"
    "finite": ("finite", "finite", "finite"),
    "nan": ("nan", "nan", "nan"),
    "masked": ("finite", "finite", "finite"),  # -inf at classes other than the target
    "masked_target": ("inf", "finite", "finite"),  # -inf at the target
    "pos_inf": ("nan", "nan", "inf"),
    "pos_inf_target": ("nan", "nan", "inf"),
    "pos_and_neg_inf": ("nan", "nan", "inf"),
    "all_neg_inf": ("nan", "nan", "-inf"),
    "ignored_nan": ("zero", "zero", "nan"),
    "ignored_pos_inf": ("zero", "zero", "inf"),
    "ignored_all_neg_inf": ("zero", "zero", "-inf"),
    "ignored_finite": ("zero", "zero", "finite"),
}
IGNORE = -100


def xent_row(kind, n, rng):
    row = rng.standard_normal(n)
    target = IGNORE if kind.startswith("ignored") else 0
    if kind.endswith("nan"):
        row[1] = nan
    elif kind == "masked":
        row[1] = row[-1] = -inf
    elif kind == "masked_target":
        row[0] = -inf
    elif kind.endswith("pos_inf"):
        row[1] = inf
    elif kind == "pos_inf_target":
        row[0] = inf
    elif kind == "pos_and_neg_inf":
        row[1], row[2] = inf, -inf
    elif kind.endswith("all_neg_inf"):
        row[:] = -inf
    return row, target


def xent_batch(n_classes, repeat, rng, kinds=tuple(XENT_KINDS)):
    kinds = [k for k in kinds for _ in range(repeat)]
    rng.shuffle(kinds)
    rows, targets = zip(*(xent_row(k, n_classes, rng) for k in kinds))
    return kinds, np.array(rows), np.array(targets)


def holds(what, value):
    value = np.asarray(value, dtype=np.float64)
    return {
        "finite": np.all(np.isfinite(value)),
        "nan": np.all(np.isnan(value)),
        "inf": np.all(value == inf),
        "-inf": np.all(value == -inf),
        "zero": np.all(value == 0),
    }[what]


XENT_LAYOUTS = {
    # name: (n_classes, rows per kind, layout of the (rows, classes) batch)
    "few-classes": (5, 3, lambda b: b),
    "many-classes": (300, 2, lambda b: b),
    "fortran": (40, 2, np.asfortranarray),
    "strided": (9, 2, lambda b: np.repeat(b, 2, axis=1)[:, ::2]),
    "k-dim": (6, 4, "k-dim"),
    "threads": (64, 100, lambda b: b),
}


def arrange(layout, batch, targets):
    how = XENT_LAYOUTS[layout][2]
    if how == "k-dim":  # (rows, C) -> (2, C, rows / 2): the class axis is not last
        x = batch.reshape(2, -1, batch.shape[1]).transpose(0, 2, 1)
        return x, targets.reshape(2, -1)
    return how(batch), targets


def per_row(x, a):
    """An input-shaped result as (rows, classes), a loss-shaped one as (rows,), in batch order."""
    a = np.asarray(a)
    if a.ndim == x.ndim:
        return a.transpose(0, 2, 1).reshape(-1, x.shape[1]) if a.ndim == 3 else a
    return a.reshape(-1)


@pytest.mark.parametrize("layout", list(XENT_LAYOUTS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_table(dtype, layout):
    n_classes, repeat, _ = XENT_LAYOUTS[layout]
    kinds, batch, targets = xent_batch(n_classes, repeat, np.random.default_rng(2))
    x, t = arrange(layout, batch.astype(dtype), targets)
    kw = dict(reduction="none", ignore_index=IGNORE, n_threads=2)
    loss, grad, lse = fs.cross_entropy_with_grad(x, t, return_lse=True, **kw)
    assert np.array_equal(fs.cross_entropy(x, t, **kw), loss, equal_nan=True)
    back = fs.cross_entropy_backward(x, t, lse, **kw)
    inplace = x.copy(order="K")
    fs.cross_entropy_with_grad(inplace, t, inplace=True, **kw)
    loss_r, lse_r = per_row(x, loss), per_row(x, lse)
    grads = {
        "fused": per_row(x, grad),
        "backward": per_row(x, back),
        "inplace": per_row(x, inplace),
    }
    for i, kind in enumerate(kinds):
        want_loss, want_grad, want_lse = XENT_KINDS[kind]
        assert holds(want_loss, loss_r[i]), (kind, loss_r[i])
        assert holds(want_lse, lse_r[i]), (kind, lse_r[i])
        for name, g in grads.items():
            assert holds(want_grad, g[i]), (kind, name, g[i])
        if kind in ("masked", "masked_target"):
            row = per_row(x, x)[i]
            masked = row == -inf
            if kind == "masked":  # a masked class has probability 0: no gradient
                assert np.all(grads["fused"][i][masked] == 0)
            else:  # the target's gradient is -1 (times its weight), the rest softmax
                assert grads["fused"][i][0] == -1


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_classes", [5, 300])
def test_label_smoothing_reaches_masked_classes(dtype, n_classes):
    """With label smoothing every class is a target: a -inf score makes the loss +inf."""
    kinds, batch, targets = xent_batch(
        n_classes, 2, np.random.default_rng(3), kinds=("finite", "masked", "masked_target")
    )
    loss, grad = fs.cross_entropy_with_grad(
        batch.astype(dtype), targets, reduction="none", label_smoothing=0.1
    )
    for i, kind in enumerate(kinds):
        assert holds("finite" if kind == "finite" else "inf", loss[i]), (kind, loss[i])
        assert holds("finite", grad[i])


@pytest.mark.parametrize("dtype", DTYPES)
def test_probability_target_at_masked_class(dtype):
    """q = 0 where the score is -inf: NaN loss (0 * -inf, as torch); q > 0 there: +inf."""
    x = np.array([[1.0, -inf, 2.0], [1.0, -inf, 2.0], [1.0, 0.5, 2.0]], dtype=dtype)
    q = np.array([[0.5, 0.0, 0.5], [0.4, 0.2, 0.4], [0.0, 0.0, 1.0]], dtype=dtype)
    loss, grad, lse = fs.cross_entropy_with_grad(x, q, reduction="none", return_lse=True)
    assert np.isnan(loss[0]) and loss[1] == inf and np.isfinite(loss[2])
    assert np.all(np.isfinite(grad)) and np.all(np.isfinite(lse))
    assert grad[0, 1] == 0  # probability 0, target 0
    back = fs.cross_entropy_backward(x, q, lse, reduction="none")
    np.testing.assert_allclose(back, grad, rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_probability_target_non_finite_rows(dtype):
    x = np.array([[1.0, nan, 2.0], [1.0, inf, 2.0], [-inf, -inf, -inf]], dtype=dtype)
    q = np.full((3, 3), 1 / 3, dtype=dtype)
    loss, grad, lse = fs.cross_entropy_with_grad(x, q, reduction="none", return_lse=True)
    assert np.all(np.isnan(loss)) and np.all(np.isnan(grad))
    assert np.isnan(lse[0]) and lse[1] == inf and lse[2] == -inf


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_all_ignored(dtype, weighted):
    """Every target ignored: 'mean' is NaN (0 / 0, as torch), 'sum' 0; the gradient is 0."""
    x = np.random.default_rng(4).standard_normal((5, 4)).astype(dtype)
    x[0, 1] = nan
    t = np.full(5, IGNORE)
    w = np.arange(1.0, 5.0) if weighted else None
    loss, grad = fs.cross_entropy_with_grad(x, t, w)
    assert np.isnan(loss) and np.all(grad == 0)
    loss, grad = fs.cross_entropy_with_grad(x, t, w, reduction="sum")
    assert loss == 0 and np.all(grad == 0)
    assert np.all(fs.cross_entropy(x, t, w, reduction="none") == 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_total_weight(dtype):
    """'mean' with class weights summing to 0 over the kept targets: NaN loss and gradient
    (ignored rows keep a zero gradient)."""
    x = np.random.default_rng(5).standard_normal((4, 3)).astype(dtype)
    t = np.array([0, 0, IGNORE, 0])
    loss, grad = fs.cross_entropy_with_grad(x, t, weight=np.array([0.0, 1.0, 1.0]))
    assert np.isnan(loss)
    assert np.all(np.isnan(grad[[0, 1, 3]])) and np.all(grad[2] == 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_batch(dtype):
    x = np.zeros((0, 3), dtype=dtype)
    t = np.zeros(0, dtype=np.int64)
    loss, grad = fs.cross_entropy_with_grad(x, t)
    assert np.isnan(loss) and grad.shape == (0, 3)
    assert fs.cross_entropy(x, t, reduction="sum") == 0
    assert fs.cross_entropy(x, t, reduction="none").shape == (0,)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softcap_makes_infinities_finite(dtype):
    """softcap s maps +-inf to +-s: finite loss, and no gradient through the capped score."""
    x = np.array(
        [[1.0, inf, 2.0], [1.0, -inf, 2.0], [-inf, -inf, -inf], [nan, 0.0, 1.0]], dtype=dtype
    )
    t = np.array([0, 1, 2, 0])
    loss, grad = fs.cross_entropy_with_grad(x, t, reduction="none", softcap=5.0)
    assert np.all(np.isfinite(loss[:3])) and np.all(np.isfinite(grad[:3]))
    assert grad[0, 1] == 0 and grad[1, 1] == 0
    np.testing.assert_allclose(loss[2], np.log(3), rtol=1e-6)  # all equal to -5
    assert np.isnan(loss[3]) and np.all(np.isnan(grad[3]))  # NaN stays NaN


@pytest.mark.parametrize("dtype", DTYPES)
def test_non_finite_z_loss_rows(dtype):
    """z_loss adds z * lse**2: +inf for a masked target as before, NaN rows stay NaN."""
    kinds, batch, targets = xent_batch(7, 2, np.random.default_rng(6))
    loss, grad = fs.cross_entropy_with_grad(
        batch.astype(dtype), targets, reduction="none", ignore_index=IGNORE, z_loss=1e-2
    )
    for i, kind in enumerate(kinds):
        want_loss, want_grad, _ = XENT_KINDS[kind]
        assert holds(want_loss, loss[i]), (kind, loss[i])
        assert holds(want_grad, grad[i]), (kind, grad[i])


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_reductions_propagate(reduction):
    """A NaN sample makes the reduced loss NaN; a +inf one (masked target) makes it +inf."""
    x = np.zeros((3, 4))
    t = np.array([0, 1, 2])
    x_nan, x_inf = x.copy(), x.copy()
    x_nan[1, 0] = nan
    x_inf[1, 1] = -inf
    assert np.isnan(fs.cross_entropy(x_nan, t, reduction=reduction))
    assert fs.cross_entropy(x_inf, t, reduction=reduction) == inf


# ----------------------------------------------- the reference follows it too


@pytest.mark.parametrize("extra", [dict(label_smoothing=0.1), dict(z_loss=1e-3)], ids=str)
def test_zero_total_weight_with_smoothing_or_z_loss(extra):
    """Smoothing and z_loss add to the sum, but 'mean' over a total weight of 0 stays NaN."""
    x = np.array([[0.3, -0.2], [1.0, 0.0]])
    t = np.array([0, IGNORE])
    loss, grad = fs.cross_entropy_with_grad(x, t, np.array([0.0, 1.0]), **extra)
    assert np.isnan(loss) and np.all(np.isnan(grad[0])) and np.all(grad[1] == 0)


@pytest.mark.parametrize("extra", [dict(label_smoothing=0.1), dict(z_loss=1e-3)], ids=str)
def test_reference_zero_total_weight_with_smoothing_or_z_loss(extra):
    from fastsoftmax import reference

    x = np.array([[0.3, -0.2], [1.0, 0.0]])
    t = np.array([0, IGNORE])
    loss, grad, _ = reference.cross_entropy_with_grad(x, t, np.array([0.0, 1.0]), **extra)
    assert np.isnan(loss) and np.all(np.isnan(grad[0])) and np.all(grad[1] == 0)


def test_reference_ignored_nan_row_with_softcap():
    from fastsoftmax import reference

    x = np.array([[nan, 1.0, 2.0], [0.5, 1.0, 2.0]])
    t = np.array([IGNORE, 1])
    _, grad, _ = reference.cross_entropy_with_grad(x, t, reduction="none", softcap=5.0)
    assert np.all(grad[0] == 0)
    _, fast = fs.cross_entropy_with_grad(x, t, reduction="none", softcap=5.0)
    assert np.all(fast[0] == 0)
