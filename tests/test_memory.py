"""The fused calls allocate nothing of the scores' size beyond what they return.

NumPy reports its data allocations to tracemalloc, so the traced peak of a
call bounds every temporary it makes.
"""

import tracemalloc

import numpy as np
import pytest

import fastsoftmax as fs

N, C = 512, 2000  # 4 MB of float32 scores


def peak_bytes(fn):
    fn()  # first call: imports, caches
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        result = fn()
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    del result
    return peak


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C)).astype(np.float32)
    t = rng.integers(0, C, N)
    return x, t


@pytest.mark.parametrize("kind", ["index", "prob"])
def test_fused_call_allocates_only_the_gradient(data, kind):
    x, t = data
    target = t if kind == "index" else np.full_like(x, 1.0 / C)
    peak = peak_bytes(lambda: fs.cross_entropy_with_grad(x, target, label_smoothing=0.1))
    # The gradient itself, plus per-row vectors (loss, lse: 2 * 8 bytes * N).
    assert peak <= x.nbytes + 64 * N + 4096


@pytest.mark.parametrize("mode", ["out", "inplace", "forward"])
def test_out_inplace_and_forward_allocate_no_rows_of_classes(data, mode):
    x, t = data
    if mode == "out":
        out = np.empty_like(x)
        peak = peak_bytes(lambda: fs.cross_entropy_with_grad(x, t, out=out))
    elif mode == "inplace":
        buf = x.copy()
        peak = peak_bytes(lambda: fs.cross_entropy_with_grad(buf, t, inplace=True))
    else:
        peak = peak_bytes(lambda: fs.cross_entropy(x, t, z_loss=1e-4))
    assert peak <= 64 * N + 4096  # a few float64 vectors of N, nothing of N x C


def test_backward_with_out_allocates_no_rows_of_classes(data):
    x, t = data
    lse = fs.cross_entropy_with_grad(x, t, return_lse=True)[2]
    out = np.empty_like(x)
    peak = peak_bytes(lambda: fs.cross_entropy_backward(x, t, lse, out=out))
    assert peak <= 64 * N + 4096


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@pytest.mark.parametrize("axis", [-1, 0])
def test_softmax_with_out_allocates_nothing_large(data, op, axis):
    x, _ = data
    out = np.empty_like(x)
    peak = peak_bytes(lambda: getattr(fs, op)(x, axis=axis, out=out))
    # Over axis 0 (csrc/columns.h), each of about 32 tasks keeps 3 float64
    # partials a column, and the merge 4 more: a few rows of C, not of N x C.
    assert peak <= (4096 if axis == -1 else 8 * C * (3 * 32 + 4))
