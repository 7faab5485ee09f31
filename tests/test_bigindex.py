"""64-bit indexing: more than 2**31 elements, rows more than 2**31 bytes apart.

Memory is kept small by views over large zero-filled buffers: np.zeros of a
large size is mapped lazily, and pages that are only read are all the same
page of zeros, so a multi-gigabyte input whose few interesting values were
written costs a few megabytes of resident memory (reading it still takes the
time of reading that many bytes). Only the tests that write a gradient or a
softmax over more than 2**31 elements hold that much memory (8.6 GB), and they
skip when the machine does not have it.

Any 32-bit offset or counter in the kernels shows up here as a wrong value
(the interesting values sit beyond 2**31 elements or bytes), or a crash.
All tests are marked slow; they take about a minute together.
"""

import math

import numpy as np
import pytest

import fastsoftmax as fs
from fastsoftmax import reference

pytestmark = pytest.mark.slow

GIB = 2**30
TWO31 = 2**31


def available_bytes():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import psutil

        return psutil.virtual_memory().available
    except ImportError:
        return None


def needs_memory(n_bytes):
    """Skip unless n_bytes of resident memory (plus room to spare) are available."""
    avail = available_bytes()
    if avail is None or avail < n_bytes + 3 * GIB:
        pytest.skip(f"needs {n_bytes / GIB:.1f} GiB of free memory")


def zeros(shape, dtype):
    """A lazily mapped zero buffer; skip when the address space cannot be had."""
    if np.dtype(np.intp).itemsize < 8:
        pytest.skip("64-bit platforms only")
    try:
        return np.zeros(shape, dtype=dtype)
    except MemoryError:
        size = math.prod(np.atleast_1d(shape)) * np.dtype(dtype).itemsize
        pytest.skip(f"cannot map {size / GIB:.1f} GiB")


def close(actual, expected, dtype):
    rtol = 2e-5 if np.dtype(dtype) == np.float32 else 1e-12
    np.testing.assert_allclose(
        np.asarray(actual, dtype=np.float64), expected, rtol=rtol, atol=rtol, equal_nan=True
    )


# ------------------------------------------------- rows far apart in memory


def far_rows(n_rows, n_cols, dtype, rng):
    """(n_rows, n_cols) random values in rows 2**31 + 64 bytes apart (a view)."""
    itemsize = np.dtype(dtype).itemsize
    stride = (TWO31 + 64) // itemsize
    base = zeros((n_rows, stride), dtype)
    view = base[:, :n_cols]
    view[...] = rng.standard_normal((n_rows, n_cols)) * 3
    assert view.strides[0] > TWO31
    return view


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_family_rows_far_apart(dtype):
    rng = np.random.default_rng(0)
    x = far_rows(3, 40, dtype, rng)
    compact = np.ascontiguousarray(x)
    for name in ["softmax", "log_softmax", "logsumexp"]:
        for axis in [1, 0, None]:
            got = getattr(fs, name)(x, axis=axis)
            close(got, getattr(reference, name)(compact.astype(np.float64), axis=axis), dtype)
    # out= with rows far apart too
    out = far_rows(3, 40, dtype, rng)
    assert fs.softmax(x, axis=1, out=out) is out
    close(out, reference.softmax(compact.astype(np.float64), axis=1), dtype)
    assert fs.log_softmax(x, axis=0, out=out) is out
    close(out, reference.log_softmax(compact.astype(np.float64), axis=0), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_classes", [5, 40])  # tiles across rows, and one row at a time
def test_cross_entropy_rows_far_apart(dtype, n_classes):
    rng = np.random.default_rng(1)
    x = far_rows(3, n_classes, dtype, rng)
    compact = np.ascontiguousarray(x).astype(np.float64)
    t = np.array([0, n_classes - 1, 2])
    w = rng.random(n_classes) + 0.5
    kw = dict(weight=w, label_smoothing=0.1, reduction="none")
    ref_loss, ref_grad, ref_lse = reference.cross_entropy_with_grad(compact, t, **kw)
    close(fs.cross_entropy(x, t, **kw), ref_loss, dtype)
    loss, grad, lse = fs.cross_entropy_with_grad(x, t, return_lse=True, **kw)
    close(loss, ref_loss, dtype)
    close(grad, ref_grad, dtype)
    close(lse, ref_lse, dtype)
    close(fs.cross_entropy_backward(x, t, lse, **kw), ref_grad, dtype)
    # the gradient written over the far-apart rows themselves
    saved = x.copy()
    fs.cross_entropy_backward(x, t, ref_lse, inplace=True, **kw)
    close(x, ref_grad, dtype)
    x[...] = saved
    fs.cross_entropy_with_grad(x, t, inplace=True, **kw)
    close(x, ref_grad, dtype)
    # probabilities far apart too
    x[...] = saved
    q = far_rows(3, n_classes, dtype, rng)
    q[...] = rng.random((3, n_classes))
    ref_q = reference.cross_entropy_with_grad(compact, np.asarray(q, dtype=np.float64), **kw)
    loss, grad = fs.cross_entropy_with_grad(x, q, **kw)
    close(loss, ref_q[0], dtype)
    close(grad, ref_q[1], dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_classes_far_apart(dtype):
    """The class axis itself has a stride above 2**31 bytes (a transposed view)."""
    rng = np.random.default_rng(2)
    x = far_rows(4, 30, dtype, rng).T  # 30 samples of 4 classes, classes 2 GiB apart
    compact = np.ascontiguousarray(x).astype(np.float64)
    t = rng.integers(0, 4, 30)
    ref_loss, ref_grad, _ = reference.cross_entropy_with_grad(compact, t, reduction="sum")
    loss, grad = fs.cross_entropy_with_grad(x, t, reduction="sum")
    close(loss, ref_loss, dtype)
    close(grad, ref_grad, dtype)
    k = far_rows(4, 30, dtype, rng)
    k3 = k.T[None]  # (N=1, C=30, d=4): the trailing d axis has a 2 GiB stride
    t3 = rng.integers(0, 30, (1, 4))
    ref3 = reference.cross_entropy_with_grad(np.asarray(k3, dtype=np.float64), t3, reduction="none")
    loss3, grad3 = fs.cross_entropy_with_grad(k3, t3, reduction="none")
    close(loss3, ref3[0], dtype)
    close(grad3, ref3[1], dtype)


# ------------------------------------------------ more than 2**31 elements


def special_rows(x, rng):
    """Random values in a few rows at the start, the middle and the end of x."""
    n = x.shape[0]
    rows = np.array([0, 1, n // 2, n - 2, n - 1])
    x[rows] = rng.standard_normal((len(rows), x.shape[1])).astype(x.dtype) * 3
    return rows


def test_rows_beyond_2_31_elements():
    """(2**21 + 3) rows of 1024 float32 scores: 2**31 + 3072 elements, 8.6 GB read."""
    rng = np.random.default_rng(3)
    n, c = 2**21 + 3, 1024
    x = zeros((n, c), np.float32)
    rows = special_rows(x, rng)
    special = x[rows].astype(np.float64)
    plain = np.setdiff1d(np.arange(n), rows)[[0, 1, -1]]  # zero rows: lse = log(c)

    lse = fs.logsumexp(x, axis=1)
    close(lse[rows], reference.logsumexp(special, axis=1), np.float32)
    close(lse[plain], np.full(3, math.log(c)), np.float32)

    # class axis = axis 0: each column is a sum over 2**21 rows 4 KiB apart
    col = fs.logsumexp(x, axis=0)
    expected = np.log((n - len(rows)) + np.exp(special).sum(axis=0))
    close(col, expected, np.float32)

    t = (np.arange(n) * 7919 % c).astype(np.int32)
    t[rows[1]] = -100
    loss = fs.cross_entropy(x, t, reduction="none")
    ref_special = reference.cross_entropy(special, t[rows], reduction="none")
    close(loss[rows], ref_special, np.float32)
    close(loss[plain], np.full(3, math.log(c)), np.float32)
    mean = fs.cross_entropy(x, t)
    kept = n - 1
    expected_mean = ((kept - (len(rows) - 1)) * math.log(c) + ref_special.sum()) / kept
    close(mean, expected_mean, np.float32)


def test_broadcast_rows_beyond_2_31_elements():
    """A zero-stride view of (2**21 + 1) copies of one row: 2**31 + 1024 elements."""
    rng = np.random.default_rng(4)
    row = rng.standard_normal(1024)
    x = np.broadcast_to(row, (2**21 + 1, 1024))
    t = np.broadcast_to(np.int64(17), (2**21 + 1,))
    expected_lse = reference.logsumexp(row)
    lse = fs.logsumexp(x, axis=1)
    assert lse.shape == (2**21 + 1,)
    close(lse[[0, 2**20, -1]], np.full(3, expected_lse), np.float64)
    assert np.all(lse == lse[0])
    close(fs.cross_entropy(x, t), expected_lse - row[17], np.float64)
    close(
        fs.cross_entropy(x, t, reduction="sum"), (2**21 + 1) * (expected_lse - row[17]), np.float64
    )


# ------------------------------------------------ one row of > 2**31 classes


N_HUGE = TWO31 + 16
FAR = TWO31 + 3  # a class index beyond 2**31


def huge_row():
    """One float32 row of 2**31 + 16 classes: zeros but x[7] = 3 and x[FAR] = 5."""
    x = zeros(N_HUGE, np.float32)
    x[7] = 3.0
    x[FAR] = 5.0
    return x, math.log((N_HUGE - 2) + math.exp(3.0) + math.exp(5.0))


def test_single_row_beyond_2_31_classes():
    x, lse = huge_row()
    close(fs.logsumexp(x), lse, np.float32)
    close(fs.cross_entropy(x, np.int64(FAR)), lse - 5.0, np.float32)
    close(fs.cross_entropy(x, np.int64(7)), lse - 3.0, np.float32)
    close(fs.cross_entropy(x, np.int64(N_HUGE - 1)), lse, np.float32)
    with pytest.raises(IndexError, match=str(N_HUGE)):
        fs.cross_entropy(x, np.int64(N_HUGE))
    # a probability target far out too (lazily mapped zeros as well)
    q = zeros(N_HUGE, np.float32)
    q[FAR] = 0.75
    q[7] = 0.25
    close(fs.cross_entropy(x, q), 0.75 * (lse - 5.0) + 0.25 * (lse - 3.0), np.float32)


def test_single_row_beyond_2_31_classes_written():
    """softmax in place and the gradient in place over 2**31 + 16 classes (8.6 GB)."""
    needs_memory(N_HUGE * 4)
    x, lse = huge_row()
    fs.log_softmax(x, out=x)
    close(x[[0, 7, FAR, N_HUGE - 1]], [-lse, 3.0 - lse, 5.0 - lse, -lse], np.float32)
    del x
    x, lse = huge_row()
    _, grad = fs.cross_entropy_with_grad(x, np.int64(FAR), inplace=True)
    assert grad is x
    p = np.exp(np.array([0.0, 3.0, 5.0, 0.0]) - lse)
    close(x[[0, 7, FAR, N_HUGE - 1]], p - [0, 0, 1, 0], np.float32)


def test_gradient_beyond_2_31_elements_written():
    """The fused gradient written in place over (2**21 + 3) x 1024 float32 (8.6 GB)."""
    needs_memory(2**21 * 1024 * 4)
    rng = np.random.default_rng(5)
    n, c = 2**21 + 3, 1024
    x = zeros((n, c), np.float32)
    rows = special_rows(x, rng)
    special = x[rows].astype(np.float64)
    t = (np.arange(n) % c).astype(np.int64)
    _, ref_grad, _ = reference.cross_entropy_with_grad(special, t[rows], reduction="sum")
    fs.cross_entropy_with_grad(x, t, reduction="sum", inplace=True)
    close(x[rows], ref_grad, np.float32)
    plain = np.full(c, 1.0 / c)
    plain[t[n // 2 + 1]] -= 1.0
    close(x[n // 2 + 1], plain, np.float32)
