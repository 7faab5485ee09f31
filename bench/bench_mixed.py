"""fastsoftmax inside real programs (the tables of ``fastsoftmax bench --mixed``).

Alternating: each group holds fastsoftmax's fused cross-entropy alone, the
other runtime's call alone (NumPy's BLAS, torch, scikit-learn's OpenMP), and
the two alternating ("pair"): a pair slower than the two alone added is what
their threads cost each other. The trainer's batch pattern (X @ W,
cross-entropy, X.T @ G) is one more group.

Busy core: with one busy process beside it (started and stopped by the
fixture), 1-thread against 2-thread calls of the fused and softmax shapes.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m pytest bench/bench_mixed.py
"""

import time

import numpy as np
import pytest
from conftest import labels, logits

import fastsoftmax
from fastsoftmax import _bench_mixed

SHAPES = [(65536, 10), (16384, 100), (4096, 1000), (1024, 32000)]
OTHERS = ["numpy", "torch", "sklearn"]


def _fused(shape, n_threads=None):
    x = logits(shape, "float32")
    t = labels(*shape)
    out = np.empty_like(x)
    return lambda: fastsoftmax.cross_entropy_with_grad(x, t, out=out, n_threads=n_threads)


def _other(kind, ms):
    """The other runtime's call, about ``ms`` long."""
    if kind == "torch":
        pytest.importorskip("torch")
    if kind == "sklearn":
        pytest.importorskip("sklearn")
    prefix = {"numpy": "NumPy", "torch": "torch", "sklearn": "sklearn"}[kind]
    for name, fn in _bench_mixed._others(ms).items():
        if name.startswith(prefix):
            return name, fn
    pytest.skip(f"{kind} is not installed")


@pytest.mark.parametrize("side", ["fastsoftmax", "other", "pair"])
@pytest.mark.parametrize("other", OTHERS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def bench_alternating(benchmark, shape, other, side):
    fused = _fused(shape)
    fused()
    name, fn = _other(other, _bench_mixed._median_ms(fused, 9))
    benchmark.group = f"alternating {shape[0]}x{shape[1]} with {name}"
    time.sleep(_bench_mixed.QUIET_S)  # the previous group's idle threads asleep
    if side == "fastsoftmax":
        benchmark(fused)
    elif side == "other":
        benchmark(fn)
    else:
        benchmark(lambda: (fused(), fn()))


@pytest.mark.parametrize("side", ["cross-entropy", "products", "step"])
def bench_trainer_batch(benchmark, side):
    xent, products = _bench_mixed.trainer_batch_calls()
    benchmark.group = "SGD batch 256 x 784 x 200"
    fn = {"cross-entropy": xent, "products": products, "step": lambda: (products(), xent())}
    benchmark(fn[side])


@pytest.fixture(scope="module")
def busy():
    with _bench_mixed.busy_core() as proc:
        yield proc


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("op", ["cross_entropy_with_grad", "softmax"])
@pytest.mark.parametrize("shape", SHAPES + [(256, 128256)], ids=lambda s: f"{s[0]}x{s[1]}")
def bench_busy_core(benchmark, busy, shape, op, n_threads):
    if op == "softmax" and shape[1] > 32000:
        pytest.skip("the softmax table stops at 32000 classes")
    call = _bench_mixed._thread_calls(shape, op)
    benchmark.group = f"busy core {op} {shape[0]}x{shape[1]}"
    benchmark(lambda: call(n_threads))
