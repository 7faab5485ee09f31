"""No kernel reads or writes outside its arrays.

The tile bodies of rows with few classes read and write whole vectors that
run on past a row's end where that stays inside the tile (csrc/fs_transpose.h);
these tests put every array's last byte just before a page the process may
not touch, so a read or write past the end is a crash, and fill the gaps of
strided outputs with a sentinel that must survive.
"""

import ctypes
import mmap
import sys

import numpy as np
import pytest

import fastsoftmax as fs
from fastsoftmax import reference

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="guard pages through mprotect on Linux"
)

PAGE = mmap.PAGESIZE


def guarded(shape, dtype, row_pad=0):
    """A C-ordered array of ``shape`` (rows padded by ``row_pad`` elements,
    returned as a view without them) whose last byte is the last one before
    a page the process may not touch."""
    dtype = np.dtype(dtype)
    full = tuple(shape[:-1]) + (shape[-1] + row_pad,)
    nbytes = int(np.prod(full)) * dtype.itemsize
    pages = -(-nbytes // PAGE)
    mm = mmap.mmap(-1, (pages + 1) * PAGE)
    base = ctypes.addressof(ctypes.c_char.from_buffer(mm))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    if libc.mprotect(base + pages * PAGE, PAGE, 0) != 0:  # PROT_NONE
        pytest.skip("mprotect failed")
    # Only the tail padding of the last row lies past the view's last element;
    # drop it so that the view itself ends at the guard.
    offset = pages * PAGE - nbytes + row_pad * dtype.itemsize
    flat = np.frombuffer(
        mm,  # the array keeps the mapping alive
        dtype=np.uint8,
        count=nbytes - row_pad * dtype.itemsize,
        offset=offset,
    )
    a = np.lib.stride_tricks.as_strided(
        flat.view(dtype),
        shape=shape,
        strides=tuple(np.cumprod((1,) + full[:0:-1])[::-1] * dtype.itemsize),
        writeable=True,
    )
    last = a.ctypes.data + int(np.dot(np.array(shape) - 1, a.strides)) + dtype.itemsize
    assert last == base + pages * PAGE
    return a


ROWS = [1, 15, 16, 17, 63, 64, 65, 130]
CLASSES = [1, 2, 3, 7, 8, 9, 10, 15, 16, 17, 33, 64, 65, 100, 127, 128]
DTYPES = [np.float32, np.float64]


def _inputs(n, c, dtype, row_pad):
    rng = np.random.default_rng(n * 100 + c)
    x = guarded((n, c), dtype, row_pad)
    x[...] = rng.standard_normal((n, c)) * 3
    t = guarded((n,), np.int64)
    t[...] = rng.integers(0, c, n)
    return x, t


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("row_pad", [0, 3], ids=["rows packed", "rows apart"])
@pytest.mark.parametrize("c", CLASSES)
@pytest.mark.parametrize("n", ROWS)
def test_cross_entropy_stays_inside_its_arrays(n, c, dtype, row_pad):
    x, t = _inputs(n, c, dtype, row_pad)
    out = guarded((n, c), dtype)
    loss, grad = fs.cross_entropy_with_grad(x, t, out=out)
    assert grad is out
    ref_loss, ref_grad, _ = reference.cross_entropy_with_grad(x.astype(np.float64), t)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(loss, ref_loss, rtol=tol)
    np.testing.assert_allclose(grad, ref_grad, rtol=tol, atol=tol / n)
    if not row_pad:  # in place: the gradient over the guarded input
        _, g2 = fs.cross_entropy_with_grad(x, t, inplace=True)
        assert np.shares_memory(g2, x)
        np.testing.assert_allclose(g2, ref_grad, rtol=tol, atol=tol / n)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("row_pad", [0, 3], ids=["rows packed", "rows apart"])
@pytest.mark.parametrize("c", CLASSES)
@pytest.mark.parametrize("n", ROWS)
@pytest.mark.parametrize("name", ["softmax", "log_softmax", "logsumexp"])
def test_softmax_family_stays_inside_its_arrays(name, n, c, dtype, row_pad):
    x, _ = _inputs(n, c, dtype, row_pad)
    if name == "logsumexp":  # scipy's signature: no out=
        y = fs.logsumexp(x, axis=-1)
    else:
        out = guarded((n, c), dtype)
        y = getattr(fs, name)(x, axis=-1, out=out)
        assert y is out
    ref = getattr(reference, name)(x.astype(np.float64), axis=-1)
    tol = 2e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(y, ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("c", [1, 3, 8, 10, 16, 17])
def test_outputs_with_gaps_between_rows_keep_the_gaps(c, dtype):
    """An output whose rows lie apart (softmax's out= takes one; the gradient's
    out= must be C-contiguous): nothing is written between them."""
    rng = np.random.default_rng(c)
    n = 130
    x = (rng.standard_normal((n, c)) * 3).astype(dtype)
    for name in ("softmax", "log_softmax"):
        wide = np.full((n, c + 5), 7.0, dtype=dtype)
        y = getattr(fs, name)(x, axis=-1, out=wide[:, :c])
        np.testing.assert_allclose(
            y, getattr(reference, name)(x.astype(np.float64), axis=-1), rtol=1e-5
        )
        assert (wide[:, c:] == 7.0).all(), name
