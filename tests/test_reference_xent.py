"""Tests of the float64 NumPy cross-entropy reference.

Three independent checks: agreement with torch (when it is installed), central
finite differences of the loss against the analytic gradient (NumPy only), and
exact values on tiny hand-worked examples.
"""

import importlib.util
import math
import pathlib
import zlib

import numpy as np
import pytest

try:
    from fastsoftmax import reference
except Exception:
    # The package (or its compiled extension) may not be importable, e.g. in
    # a tree that has not been built; reference.py is plain NumPy, so load it
    # straight from its file.
    _path = pathlib.Path(__file__).resolve().parents[1] / "src" / "fastsoftmax" / "reference.py"
    _spec = importlib.util.spec_from_file_location("fastsoftmax_reference", _path)
    reference = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(reference)

cross_entropy = reference.cross_entropy
cross_entropy_with_grad = reference.cross_entropy_with_grad

RTOL = 1e-12
ATOL = 1e-14

# Input shapes with C = 5 classes on axis 1 (axis 0 for 1-D input).
SHAPES = [(5,), (4, 5), (3, 5, 4), (2, 5, 3, 2)]
REDUCTIONS = ["mean", "sum", "none"]


# --------------------------------------------------------------------------
# helpers


def _class_axis(shape):
    return 0 if len(shape) == 1 else 1


def _sample_shape(shape):
    return tuple(n for i, n in enumerate(shape) if i != _class_axis(shape))


def _rng(*key):
    """A generator seeded by the test's parameters, so every case differs."""
    return np.random.default_rng([zlib.crc32(repr(k).encode()) for k in key])


def _scores(rng, shape):
    return rng.normal(scale=2.0, size=shape)


def _probabilities(rng, shape):
    """Random class probabilities (summing to 1 over the class axis)."""
    e = np.exp(rng.normal(size=shape))
    return e / e.sum(axis=_class_axis(shape), keepdims=True)


def _index_target(rng, shape, dtype, ignore_index=None):
    """Random class indices; when ignore_index is given, it occurs at the
    first position and nowhere else."""
    n_classes = shape[_class_axis(shape)]
    y = rng.integers(0, n_classes, size=_sample_shape(shape))
    if ignore_index is not None:
        y = np.where(y == ignore_index, 0, y)
        y.flat[0] = ignore_index
    return np.asarray(y).astype(dtype)


def _grad_output(rng, reduction, shape):
    if reduction == "none":
        return rng.normal(size=_sample_shape(shape))
    return 0.75


def _torch_oracle(
    x,
    target,
    weight=None,
    ignore_index=-100,
    reduction="mean",
    label_smoothing=0.0,
    z_loss=0.0,
    softcap=None,
    grad_output=None,
):
    """Loss, gradient and lse from torch autograd in float64.

    Without z_loss and softcap this is F.cross_entropy itself; with them it
    is the explicit expression those extensions define.
    """
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    class_dim = _class_axis(x.shape)
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    probabilities = target.dtype.kind == "f"
    if probabilities:
        tt = torch.tensor(target, dtype=torch.float64)
    else:
        tt = torch.tensor(target.astype(np.int64))
    wt = None if weight is None else torch.tensor(weight, dtype=torch.float64)

    xs = softcap * torch.tanh(xt / softcap) if softcap is not None else xt
    lse = torch.logsumexp(xs, dim=class_dim)
    if z_loss == 0 and softcap is None:
        loss = F.cross_entropy(
            xt,
            tt,
            weight=wt,
            ignore_index=ignore_index,
            reduction=reduction,
            label_smoothing=label_smoothing,
        )
    else:
        loss_n = F.cross_entropy(
            xs,
            tt,
            weight=wt,
            ignore_index=ignore_index,
            reduction="none",
            label_smoothing=label_smoothing,
        )
        if probabilities:
            kept = torch.ones_like(lse, dtype=torch.bool)
            denominator = xt.numel() / xt.shape[class_dim]
        else:
            kept = tt != ignore_index
            w = torch.ones(xt.shape[class_dim], dtype=torch.float64) if wt is None else wt
            denominator = w[tt[kept]].sum()
        loss_n = loss_n + torch.where(kept, z_loss * lse**2, 0.0)
        if reduction == "none":
            loss = loss_n
        elif reduction == "sum":
            loss = loss_n.sum()
        else:
            loss = loss_n.sum() / denominator

    if grad_output is None:
        go = torch.ones_like(loss)
    else:
        go = torch.tensor(grad_output, dtype=torch.float64)
    loss.backward(go)
    return loss.detach().numpy(), xt.grad.numpy(), lse.detach().numpy()


def _check_against_torch(x, target, **kwargs):
    """Compare loss, gradient and lse (values, types, shapes) with torch."""
    grad_output = kwargs.pop("grad_output", None)
    loss, grad, lse = cross_entropy_with_grad(x, target, grad_output=grad_output, **kwargs)
    t_loss, t_grad, t_lse = _torch_oracle(x, target, grad_output=grad_output, **kwargs)

    reduction = kwargs.get("reduction", "mean")
    if reduction == "none":
        assert isinstance(loss, np.ndarray) and loss.shape == t_loss.shape
    else:
        assert isinstance(loss, np.float64)
    assert loss.dtype == np.float64 and grad.dtype == np.float64
    assert grad.shape == x.shape and lse.shape == t_lse.shape

    np.testing.assert_allclose(loss, t_loss, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(grad, t_grad, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(lse, t_lse, rtol=RTOL, atol=ATOL)
    # The loss-only entry point agrees with the loss returned with the grad.
    np.testing.assert_array_equal(cross_entropy(x, target, **kwargs), loss)


# --------------------------------------------------------------------------
# 1. against torch


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("ignore", ["default", "class", "outside"])
@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8])
def test_index_targets_match_torch(shape, reduction, weighted, label_smoothing, ignore, dtype):
    rng = _rng(shape, reduction, weighted, label_smoothing, ignore, dtype)
    n_classes = shape[_class_axis(shape)]
    x = _scores(rng, shape)
    weight = rng.uniform(0.2, 3.0, size=n_classes) if weighted else None
    if ignore == "default":
        ignore_index, occurring = -100, None
    elif ignore == "class":
        # A real class index, present in the target.
        ignore_index = occurring = 2
    else:
        # Outside the class range, present in the target.
        ignore_index = occurring = 255 if dtype is np.uint8 else -1
    target = _index_target(rng, shape, dtype, occurring)
    _check_against_torch(
        x,
        target,
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
        label_smoothing=label_smoothing,
        grad_output=_grad_output(rng, reduction, shape),
    )


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("normalised", [True, False])
def test_probability_targets_match_torch(shape, reduction, weighted, label_smoothing, normalised):
    rng = _rng("prob", shape, reduction, weighted, label_smoothing, normalised)
    n_classes = shape[_class_axis(shape)]
    x = _scores(rng, shape)
    weight = rng.uniform(0.2, 3.0, size=n_classes) if weighted else None
    # torch does not require the target rows to sum to 1.
    target = _probabilities(rng, shape) if normalised else rng.uniform(0, 1, size=shape)
    _check_against_torch(
        x,
        target,
        weight=weight,
        reduction=reduction,
        label_smoothing=label_smoothing,
        grad_output=_grad_output(rng, reduction, shape),
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_float32_probability_target_matches_torch(reduction):
    rng = _rng("prob32", reduction)
    x = _scores(rng, (4, 5))
    target = _probabilities(rng, (4, 5)).astype(np.float32)
    _check_against_torch(x, target, reduction=reduction, label_smoothing=0.2)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("z_loss, softcap", [(1e-2, None), (0.0, 3.0), (0.5, 1.5)])
@pytest.mark.parametrize(
    "targets", ["index", "index_weight_smooth_ignore", "prob", "prob_weight_smooth"]
)
def test_z_loss_and_softcap_match_torch(shape, reduction, z_loss, softcap, targets):
    rng = _rng("ext", shape, reduction, z_loss, softcap, targets)
    n_classes = shape[_class_axis(shape)]
    x = _scores(rng, shape)
    kwargs = dict(
        reduction=reduction,
        z_loss=z_loss,
        softcap=softcap,
        grad_output=_grad_output(rng, reduction, shape),
    )
    if "weight" in targets:
        kwargs.update(weight=rng.uniform(0.2, 3.0, size=n_classes), label_smoothing=0.1)
    if targets.startswith("index"):
        occurring = 3 if "ignore" in targets else None
        if occurring is not None:
            kwargs.update(ignore_index=occurring)
        target = _index_target(rng, shape, np.int64, occurring)
    else:
        target = _probabilities(rng, shape)
    _check_against_torch(x, target, **kwargs)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_default_grad_output_matches_torch(reduction):
    rng = _rng("default_go", reduction)
    x = _scores(rng, (3, 5, 2))
    target = _index_target(rng, x.shape, np.int64)
    _check_against_torch(x, target, reduction=reduction)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_masked_scores_match_torch(reduction, label_smoothing):
    x = np.array(
        [[0.3, -np.inf, 1.2, -np.inf], [-np.inf, 2.0, -0.5, 0.1], [1.0, 0.0, -np.inf, -np.inf]]
    )
    target = np.array([2, 1, 0])
    weight = np.array([0.5, 2.0, 1.0, 1.5])
    _check_against_torch(
        x, target, weight=weight, reduction=reduction, label_smoothing=label_smoothing
    )
    loss, grad, _ = cross_entropy_with_grad(
        x, target, reduction=reduction, label_smoothing=label_smoothing
    )
    assert np.all(np.isfinite(grad))
    # A masked class has probability 0; only smoothing's share of the target
    # reaches it (-eps / C per sample).
    masked_grad = 0.0 if label_smoothing == 0 else -label_smoothing / 4
    if reduction == "mean":
        masked_grad /= 3
    np.testing.assert_allclose(grad[np.isneginf(x)], masked_grad, rtol=1e-15)
    # Smoothing puts weight on the masked classes: infinite loss.
    assert np.all(np.isfinite(loss)) == (label_smoothing == 0)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_infinitely_wrong_target_matches_torch(reduction):
    x = np.array([[0.3, -np.inf, 1.2], [0.0, 1.0, 2.0]])
    target = np.array([1, 2])
    _check_against_torch(x, target, reduction=reduction)
    loss, grad, _ = cross_entropy_with_grad(x, target, reduction=reduction)
    assert np.all(np.isposinf(loss) if reduction != "none" else loss[0] == np.inf)
    assert np.all(np.isfinite(grad))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_row_matches_torch(reduction, bad):
    x = np.array([[0.3, 0.1, 1.2], [0.0, bad, 2.0], [-np.inf, -np.inf, -np.inf], [1.0, -1.0, 0.5]])
    target = np.array([1, 0, 2, 0])
    _check_against_torch(
        x,
        target,
        reduction=reduction,
        grad_output=(np.arange(1.0, 5.0) if reduction == "none" else None),
    )
    loss, grad, _ = cross_entropy_with_grad(x, target, reduction="none")
    np.testing.assert_array_equal(np.isnan(loss), [False, True, True, False])
    assert np.all(np.isnan(grad[1:3])) and np.all(np.isfinite(grad[[0, 3]]))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_masked_probability_target_matches_torch(reduction):
    # torch computes sum(q * log p), so q = 0 on a -inf score makes the
    # loss NaN while the gradient stays finite; the reference does the same.
    x = np.array([[0.3, -np.inf, 1.2], [0.0, 1.0, 2.0]])
    target = np.array([[0.4, 0.0, 0.6], [0.2, 0.3, 0.5]])
    _check_against_torch(x, target, reduction=reduction)
    loss, grad, _ = cross_entropy_with_grad(x, target, reduction="none")
    assert np.isnan(loss[0]) and np.isfinite(loss[1])
    assert np.all(np.isfinite(grad))


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("z_loss", [0.0, 0.1])
def test_all_ignored_mean_matches_torch(weighted, label_smoothing, z_loss):
    rng = _rng("all_ignored", weighted, label_smoothing)
    x = _scores(rng, (3, 4, 2))
    target = np.full((3, 2), 1)
    weight = rng.uniform(0.5, 2.0, size=4) if weighted else None
    _check_against_torch(
        x,
        target,
        weight=weight,
        ignore_index=1,
        reduction="mean",
        label_smoothing=label_smoothing,
        z_loss=z_loss,
        grad_output=2.0,
    )
    loss, grad, _ = cross_entropy_with_grad(
        x, target, weight=weight, ignore_index=1, label_smoothing=label_smoothing, z_loss=z_loss
    )
    assert np.isnan(loss)
    np.testing.assert_array_equal(grad, 0.0)


def test_zero_total_weight_matches_torch():
    # Every kept sample has a class of weight 0: 0 / 0 in torch's mean, which
    # makes the loss and the kept samples' gradients NaN.
    x = np.array([[1.0, 2.0, 0.0], [0.0, 1.0, 2.0], [0.5, 0.5, 0.5]])
    target = np.array([0, 1, 2])
    weight = np.array([0.0, 0.0, 1.0])
    _check_against_torch(x, target, weight=weight, ignore_index=2)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_ignored_non_finite_row(reduction, label_smoothing):
    """An ignored sample has gradient exactly 0, even if its scores are NaN.

    torch agrees on the loss but gives NaN there (log_softmax's backward
    multiplies the zero upstream gradient by exp(NaN)); every other sample
    must match torch.
    """
    x = np.array(
        [
            [0.3, 0.1, 1.2],
            [np.nan, 0.0, 1.0],
            [-np.inf, -np.inf, -np.inf],
            [0.0, np.inf, 1.0],
            [1.0, -1.0, 0.5],
        ]
    )
    target = np.array([1, -100, -100, -100, 0])
    loss, grad, lse = cross_entropy_with_grad(
        x, target, reduction=reduction, label_smoothing=label_smoothing
    )
    t_loss, t_grad, t_lse = _torch_oracle(
        x, target, reduction=reduction, label_smoothing=label_smoothing
    )
    np.testing.assert_allclose(loss, t_loss, rtol=RTOL, atol=ATOL)
    assert np.all(np.isfinite(loss))
    np.testing.assert_array_equal(grad[1:4], 0.0)
    np.testing.assert_allclose(grad[[0, 4]], t_grad[[0, 4]], rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(lse, t_lse, rtol=RTOL, atol=ATOL)


# --------------------------------------------------------------------------
# 2. finite differences (NumPy only)

# name -> (keyword arguments, kind of target)
FD_FEATURES = {
    "plain": ({}, "index"),
    "weight": ({"weight": [0.5, 2.0, 1.0, 1.5]}, "index"),
    "ignore_index": ({"ignore_index": 1}, "index"),
    "smoothing": ({"label_smoothing": 0.2}, "index"),
    "smoothing_weight_ignore": (
        {"label_smoothing": 0.3, "weight": [0.5, 2.0, 1.0, 1.5], "ignore_index": 1},
        "index",
    ),
    "full_smoothing": ({"label_smoothing": 1.0, "weight": [0.5, 2.0, 1.0, 1.5]}, "index"),
    "prob": ({}, "prob"),
    "prob_unnormalised": ({}, "prob_raw"),
    "prob_smoothing_weight": ({"label_smoothing": 0.2, "weight": [0.5, 2.0, 1.0, 1.5]}, "prob"),
    "z_loss": ({"z_loss": 0.3}, "index"),
    "z_loss_weight_ignore": (
        {"z_loss": 0.3, "weight": [0.5, 2.0, 1.0, 1.5], "ignore_index": 1},
        "index",
    ),
    "z_loss_prob": ({"z_loss": 0.3}, "prob"),
    "softcap": ({"softcap": 2.0}, "index"),
    "softcap_prob": ({"softcap": 1.5, "label_smoothing": 0.1}, "prob"),
    "everything": (
        {
            "softcap": 2.5,
            "z_loss": 0.2,
            "label_smoothing": 0.15,
            "weight": [0.5, 2.0, 1.0, 1.5],
            "ignore_index": 1,
        },
        "index",
    ),
}

FD_SHAPES = [(4,), (3, 4), (2, 4, 3)]


def _fd_target(rng, shape, kind, kwargs):
    if kind == "prob":
        return _probabilities(rng, shape)
    if kind == "prob_raw":
        return rng.uniform(0, 1, size=shape)
    ignore_index = kwargs.get("ignore_index")
    return _index_target(rng, shape, np.int64, ignore_index)


def _objective(x, target, kwargs, reduction, grad_output):
    """The scalar whose gradient cross_entropy_with_grad returns."""
    loss = cross_entropy(x, target, reduction=reduction, **kwargs)
    return float(np.sum(grad_output * loss))


@pytest.mark.parametrize("feature", sorted(FD_FEATURES))
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", FD_SHAPES)
def test_gradient_matches_finite_differences(feature, reduction, shape):
    kwargs, kind = FD_FEATURES[feature]
    rng = _rng("fd", feature, reduction, shape)
    x = rng.normal(size=shape)
    target = _fd_target(rng, shape, kind, kwargs)
    if reduction == "none":
        grad_output = rng.normal(size=_sample_shape(shape))
    else:
        grad_output = -1.3

    _, grad, _ = cross_entropy_with_grad(
        x, target, reduction=reduction, grad_output=grad_output, **kwargs
    )
    if shape == (4,) and kwargs.get("ignore_index") is not None and reduction == "mean":
        # The only sample is ignored: the loss is NaN and nothing to difference.
        np.testing.assert_array_equal(grad, 0.0)
        return

    h = 1e-6
    numeric = np.empty_like(x)
    for i in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[i] += h
        minus[i] -= h
        numeric[i] = (
            _objective(plus, target, kwargs, reduction, grad_output)
            - _objective(minus, target, kwargs, reduction, grad_output)
        ) / (2 * h)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_finite_differences_with_masked_scores(reduction):
    x = np.array([[0.3, -np.inf, 1.2, 0.4], [-np.inf, 2.0, -0.5, 0.1]])
    target = np.array([2, 3])
    weight = [0.5, 2.0, 1.0, 1.5]
    grad_output = np.array([0.7, -1.1]) if reduction == "none" else 1.9
    _, grad, _ = cross_entropy_with_grad(
        x, target, weight=weight, reduction=reduction, z_loss=0.1, grad_output=grad_output
    )
    h = 1e-6
    for i in zip(*np.nonzero(np.isfinite(x))):
        plus, minus = x.copy(), x.copy()
        plus[i] += h
        minus[i] -= h
        kwargs = {"weight": weight, "z_loss": 0.1}
        numeric = (
            _objective(plus, target, kwargs, reduction, grad_output)
            - _objective(minus, target, kwargs, reduction, grad_output)
        ) / (2 * h)
        np.testing.assert_allclose(grad[i], numeric, rtol=1e-6, atol=1e-8)
    np.testing.assert_array_equal(grad[np.isneginf(x)], 0.0)


# --------------------------------------------------------------------------
# 3. exact values on hand-worked examples

LOG2 = math.log(2.0)


def test_exact_two_equal_scores():
    loss, grad, lse = cross_entropy_with_grad(np.zeros(2), np.int64(0))
    assert loss == pytest.approx(LOG2, rel=1e-15)
    np.testing.assert_allclose(grad, [-0.5, 0.5], rtol=1e-15)
    assert lse.shape == () and float(lse) == pytest.approx(LOG2, rel=1e-15)


def test_exact_label_smoothing():
    # p = (1/4, 3/4); target 1; eps = 0.5 over C = 2 classes:
    # 0.5 * (-log 3/4) + 0.25 * (-log 1/4 - log 3/4).
    x = np.array([0.0, math.log(3.0)])
    loss, grad, _ = cross_entropy_with_grad(x, np.int64(1), label_smoothing=0.5)
    expected = 0.5 * math.log(4 / 3) + 0.25 * (math.log(4.0) + math.log(4 / 3))
    assert loss == pytest.approx(expected, rel=1e-14)
    # p minus the smoothed target (1/4, 3/4): exactly zero here.
    np.testing.assert_allclose(grad, [0.0, 0.0], atol=1e-15)


def test_exact_weighted_reductions():
    # Row 0: p = (1/4, 3/4), target 0, loss log 4. Row 1: p = (1/2, 1/2),
    # target 1, loss log 2. Weights (1, 3).
    x = np.array([[0.0, math.log(3.0)], [0.0, 0.0]])
    target = np.array([0, 1])
    weight = np.array([1.0, 3.0])
    none = cross_entropy(x, target, weight, reduction="none")
    np.testing.assert_allclose(none, [2 * LOG2, 3 * LOG2], rtol=1e-15)
    assert cross_entropy(x, target, weight, reduction="sum") == pytest.approx(5 * LOG2, rel=1e-15)
    # The mean divides by the target weights, 1 + 3.
    assert cross_entropy(x, target, weight) == pytest.approx(5 * LOG2 / 4, rel=1e-15)
    # Ignoring row 0 leaves row 1 alone: its weighted loss over its weight.
    assert cross_entropy(x, target, weight, ignore_index=0) == pytest.approx(LOG2, rel=1e-15)
    _, grad, _ = cross_entropy_with_grad(x, target, weight, ignore_index=0)
    np.testing.assert_allclose(grad, [[0.0, 0.0], [0.5, -0.5]], rtol=1e-15)


def test_exact_z_loss():
    loss, grad, _ = cross_entropy_with_grad(np.zeros(2), np.int64(0), z_loss=0.1)
    assert loss == pytest.approx(LOG2 + 0.1 * LOG2**2, rel=1e-15)
    np.testing.assert_allclose(grad, [-0.5 + 0.1 * LOG2, 0.5 + 0.1 * LOG2], rtol=1e-15)
    # The z-loss term is not scaled by the class weight, but the mean's
    # denominator is the target weight.
    loss = cross_entropy(np.zeros((1, 2)), np.array([0]), np.array([4.0, 1.0]), z_loss=0.1)
    assert loss == pytest.approx((4 * LOG2 + 0.1 * LOG2**2) / 4, rel=1e-15)


def test_exact_softcap():
    # With softcap 1, the scores (0, atanh(1/2)) become (0, 1/2).
    x = np.array([0.0, math.atanh(0.5)])
    loss, grad, lse = cross_entropy_with_grad(x, np.int64(0), softcap=1.0)
    expected_lse = math.log(1.0 + math.exp(0.5))
    assert float(lse) == pytest.approx(expected_lse, rel=1e-15)
    assert loss == pytest.approx(expected_lse, rel=1e-15)
    p1 = math.exp(0.5) / (1.0 + math.exp(0.5))
    # (p - onehot) * (1 - tanh^2): tanh is 0 and 1/2.
    np.testing.assert_allclose(grad, [-p1, p1 * 0.75], rtol=1e-14)


def test_exact_probability_target():
    x = np.zeros(2)
    loss, grad, _ = cross_entropy_with_grad(x, np.array([0.3, 0.7]))
    assert loss == pytest.approx(LOG2, rel=1e-15)
    np.testing.assert_allclose(grad, [0.2, -0.2], rtol=1e-14)
    loss, grad, _ = cross_entropy_with_grad(x, np.array([0.3, 0.7]), weight=[2.0, 1.0])
    assert loss == pytest.approx(1.3 * LOG2, rel=1e-15)
    np.testing.assert_allclose(grad, [0.05, -0.05], rtol=1e-13)
    # Smoothing by 1/2 over 2 classes turns (1, 0) into (3/4, 1/4).
    loss, grad, _ = cross_entropy_with_grad(x, np.array([1.0, 0.0]), label_smoothing=0.5)
    assert loss == pytest.approx(LOG2, rel=1e-15)
    np.testing.assert_allclose(grad, [-0.25, 0.25], rtol=1e-15)
    # The mean divides by the number of samples, not by the weights.
    loss = cross_entropy(np.zeros((2, 2)), np.array([[0.3, 0.7], [1.0, 0.0]]), weight=[2.0, 1.0])
    assert loss == pytest.approx((1.3 * LOG2 + 2 * LOG2) / 2, rel=1e-15)


def test_exact_masked_class():
    x = np.array([0.0, -np.inf, 0.0])
    loss, grad, _ = cross_entropy_with_grad(x, np.int64(0))
    assert loss == pytest.approx(LOG2, rel=1e-15)
    np.testing.assert_array_equal(grad, [-0.5, 0.0, 0.5])
    assert cross_entropy(x, np.int64(1)) == np.inf


def test_exact_infinite_rows():
    # All scores -inf: no distribution at all, NaN; the lse is -inf.
    loss, grad, lse = cross_entropy_with_grad(np.full(3, -np.inf), np.int64(0))
    assert np.isnan(loss) and np.all(np.isnan(grad)) and lse == -np.inf
    # A +inf score: inf / inf, NaN for the whole row; the lse is +inf.
    loss, grad, lse = cross_entropy_with_grad(np.array([0.0, np.inf, 1.0]), np.int64(0))
    assert np.isnan(loss) and np.all(np.isnan(grad)) and lse == np.inf
    # Softcapping bounds the scores, so both become finite.
    loss, grad, lse = cross_entropy_with_grad(np.array([-np.inf, np.inf]), np.int64(1), softcap=1.0)
    assert loss == pytest.approx(math.log1p(math.exp(-2.0)), rel=1e-15)
    np.testing.assert_array_equal(grad, [0.0, 0.0])


def test_output_types_and_shapes():
    x = np.zeros((2, 3, 4), dtype=np.float32)
    target = np.zeros((2, 4), dtype=np.int16)
    for reduction in ("mean", "sum"):
        loss, grad, lse = cross_entropy_with_grad(x, target, reduction=reduction)
        assert type(loss) is np.float64
        assert grad.shape == x.shape and grad.dtype == np.float64
        assert lse.shape == (2, 4) and lse.dtype == np.float64
    loss = cross_entropy(x, target, reduction="none")
    assert isinstance(loss, np.ndarray) and loss.shape == (2, 4) and loss.dtype == np.float64
    loss = cross_entropy(np.zeros(3), np.int64(1), reduction="none")
    assert isinstance(loss, np.ndarray) and loss.shape == ()
    # Integer scores are accepted and computed in float64.
    np.testing.assert_allclose(cross_entropy([[0, 0]], [1]), LOG2, rtol=1e-15)


# --------------------------------------------------------------------------
# errors


@pytest.mark.parametrize("ignore_index", [0, 2])
def test_probability_target_rejects_ignore_index(ignore_index):
    x = np.zeros((2, 3))
    target = np.full((2, 3), 1 / 3)
    with pytest.raises(ValueError, match="ignore_index"):
        cross_entropy(x, target, ignore_index=ignore_index)
    with pytest.raises(ValueError, match="ignore_index"):
        cross_entropy_with_grad(x, target, ignore_index=ignore_index)
    # A negative ignore_index is simply unused.
    assert cross_entropy(x, target, ignore_index=-1) == pytest.approx(math.log(3), rel=1e-15)


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda: cross_entropy(np.zeros((2, 3)), np.array([0, 3])), IndexError),
        (lambda: cross_entropy(np.zeros((2, 3)), np.array([0, -1])), IndexError),
        (lambda: cross_entropy(np.zeros((2, 3)), np.array([0, 1, 2])), ValueError),
        (lambda: cross_entropy(np.zeros((2, 3)), np.zeros((2, 2))), ValueError),
        (lambda: cross_entropy(np.zeros((2, 3)), np.array([True, False])), TypeError),
        (lambda: cross_entropy(np.zeros((2, 3)), np.array([0, 1]), weight=np.ones(2)), ValueError),
        (lambda: cross_entropy(np.zeros((2, 3)), np.array([0, 1]), reduction="avg"), ValueError),
        (
            lambda: cross_entropy(np.zeros((2, 3)), np.array([0, 1]), label_smoothing=1.5),
            ValueError,
        ),
        (lambda: cross_entropy(np.zeros((2, 3)), np.array([0, 1]), softcap=0.0), ValueError),
        (
            lambda: cross_entropy_with_grad(
                np.zeros((2, 3)), np.array([0, 1]), grad_output=np.ones(2)
            ),
            ValueError,
        ),
        (
            lambda: cross_entropy_with_grad(
                np.zeros((2, 3)), np.array([0, 1]), reduction="none", grad_output=1.0
            ),
            ValueError,
        ),
    ],
)
def test_invalid_arguments(call, error):
    with pytest.raises(error):
        call()
