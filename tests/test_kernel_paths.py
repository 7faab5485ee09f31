"""Every C body meets the NumPy reference.

The C layer plans each batch as tiles, strips, columns (the softmax family
over a long class axis that is not the last) or rows (csrc/fastsoftmax.h),
and the row bodies specialise on the target kind, softcap, the gradient
(none, fused, or from lse) and unit or general strides. This grid picks a
layout for each plan and runs every function over it in float32 and float64,
with no option and with every option set, against fastsoftmax.reference in
float64; a last test checks from the plans the C layer returned that the
grid reached every body.
"""

import itertools

import numpy as np
import pytest

import fastsoftmax as fs
from fastsoftmax import _kernels, reference

# name: (shape, class axis, how the array is laid out). C is the class count.
LAYOUTS = {
    "tiles C=1": ((70, 1), "contiguous"),
    "tiles C=10": ((130, 10), "contiguous"),
    "tiles C=32": ((65, 32), "contiguous"),
    "tiles C=33": ((9, 33), "contiguous"),
    "tiles C=64": ((66, 64), "contiguous"),
    "rows C=65": ((9, 65), "contiguous"),
    "rows C=100": ((70, 100), "contiguous"),
    "rows C=300": ((5, 300), "contiguous"),
    "rows C=600": ((3, 600), "contiguous"),
    "rows C=10 strided": ((40, 10), "every other class"),
    "rows C=100 strided": ((6, 100), "every other class"),
    "rows C=40 Fortran": ((7, 40), "fortran"),
    "strips C=3": ((4, 3, 70), "contiguous"),
    "strips C=40": ((3, 40, 5), "contiguous"),
    "strips C=300": ((2, 300, 3), "contiguous"),
    "columns C=300": ((2, 300, 120), "contiguous"),  # the softmax family only
    "rows inner strided": ((3, 12, 4), "inner transposed"),
}
DTYPES = [np.float32, np.float64]
# Tolerances against the float64 reference, relative to the largest value.
TOL = {np.float32: 3e-5, np.float64: 1e-11}
SEEN = set()  # (plan, body) pairs the grid reached


def lay_out(a, how):
    """``a`` with the same values in the named memory layout."""
    if how == "contiguous":
        return np.ascontiguousarray(a)
    if how == "fortran":
        return np.asfortranarray(a)
    if how == "every other class":
        wide = np.zeros(a.shape[:1] + (2 * a.shape[1],) + a.shape[2:], dtype=a.dtype)
        wide[:, ::2] = a
        return wide[:, ::2]
    if how == "inner transposed":  # (N, C, D) whose D axis has the largest stride
        return np.ascontiguousarray(np.moveaxis(a, 2, 0)).transpose(1, 2, 0)
    raise ValueError(how)


def close(actual, desired, dtype):
    actual, desired = np.asarray(actual, np.float64), np.asarray(desired, np.float64)
    scale = max(1.0, float(np.max(np.abs(desired[np.isfinite(desired)]), initial=0.0)))
    np.testing.assert_allclose(actual, desired, rtol=TOL[dtype], atol=TOL[dtype] * scale)


@pytest.fixture
def plans(monkeypatch):
    """Records the plan of every kernel call the test makes."""
    seen = []
    for name in ("xent", "xent_rows", "softmax"):
        kernel = getattr(_kernels, name)

        def record(*args, _kernel=kernel, **kwargs):
            seen.append(_kernel(*args, **kwargs))

        monkeypatch.setattr(_kernels, name, record)
    return seen


def case(layout, dtype, probs, options, seed=0):
    shape, how = LAYOUTS[layout]
    rng = np.random.default_rng([seed, len(shape), shape[1]])
    x = lay_out((3.0 * rng.standard_normal(shape)).astype(dtype), how)
    n_classes, sample_shape = shape[1], (shape[0],) + shape[2:]
    kwargs = {}
    if probs:
        q = rng.random(shape)
        target = lay_out((q / q.sum(axis=1, keepdims=True)).astype(dtype), how)
    else:
        target = rng.integers(0, n_classes, size=sample_shape)
    if options == "every option":
        kwargs = dict(
            weight=rng.uniform(0.5, 2.0, n_classes),
            label_smoothing=0.1,
            z_loss=0.01,
            softcap=4.0,
            reduction="none",
            grad_output=rng.uniform(0.5, 1.5, sample_shape),
        )
        if not probs:
            target.reshape(-1)[::3] = -5  # ignored
            kwargs["ignore_index"] = -5
    elif options == "smoothing and weights":  # the options strips and tiles take
        kwargs = dict(weight=rng.uniform(0.5, 2.0, n_classes), label_smoothing=0.2, z_loss=0.05)
    return x, target, kwargs


OPTIONS = ["none", "smoothing and weights", "every option"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("probs", [False, True], ids=["indices", "probabilities"])
@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_cross_entropy_paths_match_the_reference(layout, options, probs, dtype, plans):
    x, target, kwargs = case(layout, dtype, probs, options)
    x64 = x.astype(np.float64)
    t64 = target.astype(np.float64) if probs else target
    ref_loss, ref_grad = reference.cross_entropy_with_grad(x64, t64, **kwargs)[:2]
    forward_kwargs = {k: v for k, v in kwargs.items() if k != "grad_output"}

    loss = fs.cross_entropy(x, target, **forward_kwargs)
    loss2, grad, lse = fs.cross_entropy_with_grad(x, target, return_lse=True, **kwargs)
    close(loss, ref_loss, dtype)
    close(loss2, ref_loss, dtype)
    close(grad, ref_grad, dtype)
    close(fs.cross_entropy_backward(x, target, lse, **kwargs), ref_grad, dtype)
    inplace = x.copy(order="K")
    fs.cross_entropy_with_grad(inplace, target, inplace=True, **kwargs)
    close(inplace, ref_grad, dtype)

    softcap = "softcap" in kwargs
    bodies = ["forward", "fused", "backward", "fused"]
    for plan, body in zip(plans, bodies):
        SEEN.add((plan, body, probs, softcap, dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_softmax_paths_match_the_reference(layout, dtype, plans):
    x, _, _ = case(layout, dtype, False, "none", seed=1)
    x64 = x.astype(np.float64)
    axis = 1
    close(fs.softmax(x, axis=axis), reference.softmax(x64, axis=axis), dtype)
    close(fs.log_softmax(x, axis=axis), reference.log_softmax(x64, axis=axis), dtype)
    close(fs.logsumexp(x, axis=axis), reference.logsumexp(x64, axis=axis), dtype)
    out = np.empty_like(x)
    close(fs.softmax(x, axis=axis, out=out), reference.softmax(x64, axis=axis), dtype)
    for plan, op in zip(plans, ["softmax", "log_softmax", "logsumexp", "softmax"]):
        SEEN.add((plan, op, dtype))


def test_the_grid_reached_every_body():
    # Run after the grids above (pytest keeps the file's order).
    if not SEEN:
        pytest.skip("run with the grid tests of this file")
    rows, strips, tiles = _kernels.ROWS, _kernels.STRIPS, _kernels.TILES
    columns = _kernels.COLUMNS
    expected = set()
    for dtype in DTYPES:
        for plan, body in itertools.product([strips, tiles], ["forward", "fused"]):
            expected.add((plan, body, False, False, dtype))
        for body, probs, softcap in itertools.product(
            ["forward", "fused", "backward"], [False, True], [False, True]
        ):
            expected.add((rows, body, probs, softcap, dtype))
        expected.add((rows, "backward", False, False, dtype))
        for plan, op in itertools.product(
            [rows, strips, tiles, columns], ["softmax", "log_softmax", "logsumexp"]
        ):
            expected.add((plan, op, dtype))
    assert expected <= SEEN, sorted(expected - SEEN, key=str)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("target_layout", ["fortran", "every other class"])
def test_probability_target_in_another_layout_than_the_scores(target_layout, dtype):
    # Contiguous scores with a strided probability target: the row body must
    # not take the unit-stride loops for the target.
    rng = np.random.default_rng(7)
    x = (3.0 * rng.standard_normal((9, 40))).astype(dtype)
    q = rng.random((9, 40))
    q = lay_out((q / q.sum(axis=1, keepdims=True)).astype(dtype), target_layout)
    ref_loss, ref_grad = reference.cross_entropy_with_grad(
        x.astype(np.float64), q.astype(np.float64), label_smoothing=0.1
    )[:2]
    loss, grad, lse = fs.cross_entropy_with_grad(x, q, label_smoothing=0.1, return_lse=True)
    close(loss, ref_loss, dtype)
    close(grad, ref_grad, dtype)
    close(fs.cross_entropy_backward(x, q, lse, label_smoothing=0.1), ref_grad, dtype)
