"""The softmax family over a long class axis that is not the last one.

Such a batch is planned as FS_COLUMNS (csrc/columns.h): its class axis cut
into tasks of sub-chunks of rows, merged within a task as they come and across
tasks after, and rows read several at a time as one row of lanes where they are
contiguous. The layouts below reach each of those: rows read as lanes with rows
left over, rows read one at a time (a strided input or output), inner axes cut
into blocks of columns with several sub-chunks a task, several samples.
"""

import numpy as np
import pytest

import fastsoftmax as fs
from fastsoftmax import _kernels, reference

pytestmark = pytest.mark.filterwarnings("ignore:.*encountered in:RuntimeWarning")

FUNCS = ["softmax", "log_softmax", "logsumexp"]
DTYPES = [np.float32, np.float64]
TOL = {np.float32: 3e-5, np.float64: 1e-11}

# name: (shape, axis)
GEOMETRIES = {
    "few columns, rows as lanes": ((7001, 10), 0),
    "rows left over": ((2, 301, 120), 1),
    "one column of two": ((40001, 2), 0),
    "odd columns": ((2000, 37), 0),
    "blocks of columns, sub-chunks": ((300, 4100), 0),
    "3-D, middle axis": ((3, 500, 70), 1),
}


@pytest.fixture
def plans(monkeypatch):
    seen = []
    kernel = _kernels.softmax

    def record(*args, **kwargs):
        seen.append(kernel(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(_kernels, "softmax", record)
    return seen


def make(shape, dtype, seed=0):
    rng = np.random.default_rng([seed, *shape])
    return (4.0 * rng.standard_normal(shape)).astype(dtype)


def close(actual, desired, dtype):
    actual, desired = np.asarray(actual, np.float64), np.asarray(desired, np.float64)
    finite = desired[np.isfinite(desired)]
    scale = max(1.0, float(np.max(np.abs(finite), initial=0.0)))
    np.testing.assert_allclose(
        actual, desired, rtol=TOL[dtype], atol=TOL[dtype] * scale, equal_nan=True
    )


def check(x, axis, out=None):
    x64 = x.astype(np.float64)
    for name in FUNCS:
        expected = getattr(reference, name)(x64, axis=axis)
        close(getattr(fs, name)(x, axis=axis), expected, x.dtype.type)
        if out is not None and name != "logsumexp":
            close(getattr(fs, name)(x, axis=axis, out=out), expected, x.dtype.type)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_matches_the_reference(geometry, dtype, plans):
    shape, axis = GEOMETRIES[geometry]
    check(make(shape, dtype), axis)
    assert set(plans) == {_kernels.COLUMNS}


@pytest.mark.parametrize("dtype", DTYPES)
def test_strided_input_and_output_read_rows_one_at_a_time(dtype, plans):
    wide = make((3000, 50), dtype)
    x = wide[:, :40]  # rows 50 apart: not one row of lanes
    check(x, 0)
    out = np.empty((3000, 45), dtype)[:, :40]
    check(np.ascontiguousarray(x), 0, out=out)
    assert set(plans) == {_kernels.COLUMNS}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("order", ["rising", "falling", "flat"])
def test_maxima_that_move_between_sub_chunks(order, dtype, plans):
    # Columns whose maximum rises, falls or stays from one sub-chunk (and
    # task) to the next: the running sums are rescaled, added below the
    # maximum, or added at it with their counts of maximal terms.
    n, inner = 3000, 600
    ramp = np.linspace(0.0, 30.0, n)[:, None]
    noise = make((n, inner), np.float64, seed=3)
    x = {"rising": ramp + noise, "falling": ramp[::-1] + noise, "flat": np.zeros((n, inner))}
    x = x[order].astype(dtype)
    x[:, 5] = 2.5  # a constant column: every term maximal
    check(x, 0)
    assert set(plans) == {_kernels.COLUMNS}
    lse = fs.logsumexp(x, axis=0)
    close(lse[5], np.log(n) + 2.5, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_special_values_in_some_chunks(dtype, plans):
    n, inner = 8000, 12
    x = make((n, inner), dtype)
    x[:, 0] = -np.inf  # every term -inf
    x[: n // 2, 1] = -np.inf  # the first chunks -inf, the others finite
    x[n // 2 :, 2] = -np.inf
    x[n - 3, 3] = np.inf  # +inf in the last chunk
    x[7, 4] = np.inf  # +inf in the first chunk, with a NaN later
    x[n - 100, 4] = np.nan
    x[n // 3, 5] = np.nan  # NaN in a middle chunk
    x[:, 6] = 1e30 if dtype == np.float32 else 1e300  # huge but finite
    x[::2, 7] = -1e30  # far below the maximum: exps that underflow
    x[:, 8] = np.where(np.arange(n) % 1000 == 0, -np.inf, x[:, 8])
    for name in FUNCS:
        expected = getattr(reference, name)(x.astype(np.float64), axis=0)
        actual = getattr(fs, name)(x, axis=0)
        close(actual, expected, dtype)
        np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected), err_msg=name)
        for n_threads in (1, 3):
            again = getattr(fs, name)(x, axis=0, n_threads=n_threads)
            assert np.array_equal(actual, again, equal_nan=True), (name, n_threads)
    assert set(plans) == {_kernels.COLUMNS}


@pytest.mark.parametrize("dtype", DTYPES)
def test_in_place(dtype):
    x = make((5000, 16), dtype)
    expected = reference.softmax(x.astype(np.float64), axis=0)
    fs.softmax(x, axis=0, out=x)
    close(x, expected, dtype)


def test_short_or_small_class_axes_stay_strips(plans):
    fs.softmax(make((255, 1000), np.float32), axis=0)  # few classes
    fs.softmax(make((1000, 30), np.float32), axis=0)  # a small array
    assert plans == [_kernels.STRIPS, _kernels.STRIPS]


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_maximum_in_the_rows_left_over(dtype, plans):
    # (2, 301, 120): a task's last row is read on its own after the rows read
    # as lanes; it holds the maximum of every third column, far above the rest,
    # so that a shift that missed it would overflow the exps.
    x = make((2, 301, 120), dtype)
    x[:, -1, ::3] = 100.0 if dtype == np.float32 else 800.0
    check(x, 1)
    assert set(plans) == {_kernels.COLUMNS}
