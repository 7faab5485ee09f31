"""Fused cross-entropy forward + backward (mean loss, d loss / d logits):
fastsoftmax against the NumPy reference, torch when installed, and the copy floor."""

import numpy as np
import pytest
from conftest import labels, logits

import fastsoftmax
from fastsoftmax import reference

SHAPES = [(65536, 10), (16384, 100), (4096, 1000), (1024, 32000), (256, 128256)]


def _torch_step(torch):
    import torch.nn.functional as F

    def step(x, t):
        x = x.detach().requires_grad_(True)
        loss = F.cross_entropy(x, t)
        loss.backward()
        return loss, x.grad

    return step


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("impl", ["fastsoftmax", "fastsoftmax-inplace", "reference", "torch",
                                  "copy"])
def bench_xent_fwd_bwd(benchmark, impl, shape, dtype):
    x, t = logits(shape, dtype), labels(shape[0], shape[1])
    benchmark.group = f"xent fwd+bwd {shape[0]}x{shape[1]} {dtype}"
    if impl == "fastsoftmax":
        benchmark(fastsoftmax.cross_entropy_with_grad, x, t)
    elif impl == "fastsoftmax-inplace":
        buf = x.copy()
        benchmark(fastsoftmax.cross_entropy_with_grad, buf, t, inplace=True)
    elif impl == "reference":
        if shape[1] >= 32000:
            pytest.skip("the reference is too slow to time at this size")
        benchmark(reference.cross_entropy_with_grad, x, t)
    elif impl == "torch":
        torch = pytest.importorskip("torch")
        torch.set_num_threads(fastsoftmax.build_info()["default_threads"])
        benchmark(_torch_step(torch), torch.from_numpy(x), torch.from_numpy(t))
    else:
        out = np.empty_like(x)
        benchmark(np.copyto, out, x)
