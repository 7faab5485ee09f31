"""Fused cross-entropy forward + backward (mean loss and d loss / d logits).

Every group (one shape, dtype and temperature) holds fastsoftmax (default,
out=, inplace=True), the NumPy reference, the copy floor, and, when
installed, PyTorch (1 and 2 threads) and scikit-learn's HalfMultinomialLoss.
"""

import numpy as np
import pytest
from conftest import Inputs, copy_floor, labels

import fastsoftmax
from fastsoftmax import reference

SHAPES = [(65536, 10), (16384, 100), (4096, 1000), (1024, 32000), (256, 128256)]
IMPLS = [
    "fastsoftmax",
    "fastsoftmax-out",
    "fastsoftmax-inplace",
    "reference",
    "torch-1",
    "torch-2",
    "sklearn",
    "copy",
]


def _torch_step(torch, n_threads):
    import torch.nn.functional as F

    def step(x, t):
        torch.set_num_threads(n_threads)
        x = torch.from_numpy(x).requires_grad_(True)
        loss = F.cross_entropy(x, t)
        loss.backward()
        return loss, x.grad

    return step


def _sklearn_step(n_classes, dtype):
    from sklearn._loss.loss import HalfMultinomialLoss

    loss = HalfMultinomialLoss(n_classes=n_classes)

    def step(x, y):
        per_sample, grad = loss.loss_gradient(y_true=y, raw_prediction=x, n_threads=2)
        return per_sample.mean(), grad

    return step


@pytest.mark.parametrize("temperature", ["hot", "cold"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("impl", IMPLS)
def bench_xent_fwd_bwd(benchmark, impl, shape, dtype, temperature):
    inputs = Inputs(shape, dtype, cold=temperature == "cold")
    t = labels(shape[0], shape[1])
    benchmark.group = f"xent fwd+bwd {shape[0]}x{shape[1]} {dtype} {temperature}"
    if impl == "fastsoftmax":
        benchmark(lambda: fastsoftmax.cross_entropy_with_grad(inputs(), t))
    elif impl == "fastsoftmax-out":
        out = np.empty(shape, dtype)
        benchmark(lambda: fastsoftmax.cross_entropy_with_grad(inputs(), t, out=out))
    elif impl == "fastsoftmax-inplace":
        # The gradient overwrites the scores: later calls see gradients as scores,
        # which costs the same.
        benchmark(lambda: fastsoftmax.cross_entropy_with_grad(inputs(), t, inplace=True))
    elif impl == "reference":
        if shape[0] * shape[1] > 4_200_000:
            pytest.skip("the reference takes seconds at this size")
        benchmark(lambda: reference.cross_entropy_with_grad(inputs(), t))
    elif impl.startswith("torch"):
        torch = pytest.importorskip("torch")
        step = _torch_step(torch, int(impl[-1]))
        tt = torch.from_numpy(t)
        benchmark(lambda: step(inputs(), tt))
    elif impl == "sklearn":
        pytest.importorskip("sklearn")
        step = _sklearn_step(shape[1], dtype)
        y = t.astype(dtype)
        benchmark(lambda: step(inputs(), y))
    else:
        benchmark(copy_floor(inputs))


OPTIONS = {
    "plain": {},
    "weight": {"weight": "w"},
    "label_smoothing": {"label_smoothing": 0.1},
    "z_loss": {"z_loss": 1e-4},
    "softcap": {"softcap": 30.0},
    "softcap+smoothing": {"softcap": 30.0, "label_smoothing": 0.1},
    "copy": None,
}


@pytest.mark.parametrize("shape", [(16384, 100), (1024, 32000)], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("option", list(OPTIONS))
def bench_xent_options(benchmark, option, shape):
    """What each option costs: float32, cold, out=, against the copy of the same bytes."""
    inputs = Inputs(shape, "float32", cold=True)
    t = labels(shape[0], shape[1])
    benchmark.group = f"xent options {shape[0]}x{shape[1]} float32 cold out="
    if OPTIONS[option] is None:
        benchmark(copy_floor(inputs))
        return
    kwargs = dict(OPTIONS[option])
    if kwargs.get("weight") == "w":
        kwargs["weight"] = np.linspace(0.5, 1.5, shape[1])
    out = np.empty(shape, np.float32)
    benchmark(lambda: fastsoftmax.cross_entropy_with_grad(inputs(), t, out=out, **kwargs))
