"""Thread count: validation, determinism, and the OpenMP default."""

import numpy as np
import pytest

import fastsoftmax
from fastsoftmax import _threads

FUNCS = ["softmax", "log_softmax", "logsumexp"]
# 512000 elements: at 32768 elements per thread, room for up to 15 threads.
SHAPE = (512, 1000)


def big_input(dtype, order="C", seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=SHAPE) * 5).astype(dtype)
    x[3, :7] = -np.inf  # a few special values along the way
    x[5, 11] = np.nan
    x[100, 17] = np.inf
    return np.asarray(x, order=order)


def call(name, x, axis, n_threads):
    return getattr(fastsoftmax, name)(x, axis=axis, n_threads=n_threads)


def test_inputs_are_big_enough_for_two_threads():
    """Otherwise the determinism tests below would only ever run one thread."""
    assert _threads.threads_for(2, SHAPE[0] * SHAPE[1]) == 2
    assert _threads.threads_for(1, SHAPE[0] * SHAPE[1]) == 1


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("axis", [1, 0, -1, None, (0, 1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", FUNCS)
def test_bitwise_identical_across_thread_counts(name, dtype, axis, order):
    x = big_input(dtype, order)
    one = call(name, x, axis, 1)
    for n in (2, 3):
        many = call(name, x, axis, n)
        assert np.asarray(many).dtype == np.asarray(one).dtype
        assert np.array_equal(one, many, equal_nan=True), f"n_threads={n}"
    assert np.array_equal(one, call(name, x, axis, None), equal_nan=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_logsumexp_keepdims_return_sign_thread_independent(dtype):
    x = big_input(dtype)
    one = fastsoftmax.logsumexp(x, axis=1, keepdims=True, return_sign=True, n_threads=1)
    two = fastsoftmax.logsumexp(x, axis=1, keepdims=True, return_sign=True, n_threads=2)
    for a, b in zip(one, two):
        assert np.array_equal(a, b, equal_nan=True)


@pytest.mark.parametrize("out_order", ["C", "F"])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_out_thread_independent(name, dtype, out_order):
    x = big_input(dtype)
    out1 = np.empty_like(x, order=out_order)
    out2 = np.empty_like(x, order=out_order)
    getattr(fastsoftmax, name)(x, axis=1, out=out1, n_threads=1)
    getattr(fastsoftmax, name)(x, axis=1, out=out2, n_threads=2)
    assert np.array_equal(out1, out2, equal_nan=True)


@pytest.mark.parametrize("n_threads", [0, -1, -8])
@pytest.mark.parametrize("name", FUNCS)
def test_non_positive_n_threads_is_value_error(name, n_threads):
    with pytest.raises(ValueError):
        call(name, np.ones((2, 3)), 1, n_threads)


@pytest.mark.parametrize(
    "n_threads", [1.5, 2.0, "2", True, False, np.float64(2), [2], 1j], ids=repr
)
@pytest.mark.parametrize("name", FUNCS)
def test_non_integer_n_threads_is_type_error(name, n_threads):
    with pytest.raises(TypeError):
        call(name, np.ones((2, 3)), 1, n_threads)


@pytest.mark.parametrize(
    "x",
    [
        pytest.param(np.ones((2, 3), dtype=np.int64), id="int64"),
        pytest.param(np.ones((0, 3)), id="empty"),
        pytest.param(np.float64(1.0), id="scalar"),
    ],
)
@pytest.mark.parametrize("name", FUNCS)
def test_n_threads_checked_on_every_path(name, x):
    """The fallback paths validate n_threads too."""
    with pytest.raises(ValueError):
        call(name, x, -1, 0)
    with pytest.raises(TypeError):
        call(name, x, -1, 1.5)


def test_n_threads_checked_with_b():
    with pytest.raises(ValueError):
        fastsoftmax.logsumexp(np.ones(3), b=np.ones(3), n_threads=0)
    with pytest.raises(TypeError):
        fastsoftmax.logsumexp(np.ones(3), b=np.ones(3), n_threads="1")


@pytest.mark.parametrize("n_threads", [1, 2, 64, np.int64(2), np.int32(1)], ids=repr)
@pytest.mark.parametrize("name", FUNCS)
def test_valid_n_threads_accepted(name, n_threads):
    x = np.arange(12.0).reshape(3, 4)
    expected = getattr(fastsoftmax, name)(x, axis=1)
    np.testing.assert_array_equal(call(name, x, 1, n_threads), expected)


def _openmp_pools(threadpoolctl):
    return [info for info in threadpoolctl.threadpool_info() if info["user_api"] == "openmp"]


def test_threadpoolctl_limits_default_threads():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if not fastsoftmax.openmp_enabled():
        pytest.skip("built without OpenMP")
    if not _openmp_pools(threadpoolctl):
        pytest.skip("threadpoolctl finds no OpenMP runtime")
    before = fastsoftmax.build_info()["default_threads"]
    # Raise the default above 1 first (when the machine allows it), so the
    # limit below has something to change.
    with threadpoolctl.threadpool_limits(limits=2, user_api="openmp"):
        raised = fastsoftmax.build_info()["default_threads"]
        assert raised == 2
        with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
            assert fastsoftmax.build_info()["default_threads"] == 1
            x = big_input(np.float64)
            limited = fastsoftmax.softmax(x, axis=1)
        assert fastsoftmax.build_info()["default_threads"] == raised
    assert fastsoftmax.build_info()["default_threads"] == before
    np.testing.assert_array_equal(limited, fastsoftmax.softmax(x, axis=1, n_threads=2))
