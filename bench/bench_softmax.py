"""softmax / log_softmax / logsumexp over the last axis: fastsoftmax, the NumPy
reference and scipy.special, with the copy of the same bytes as the floor."""

import numpy as np
import pytest
from conftest import logits

import fastsoftmax
from fastsoftmax import reference

special = pytest.importorskip("scipy.special")

SHAPES = [(65536, 10), (16384, 100), (4096, 1000), (1024, 32000)]
IMPLS = {
    "fastsoftmax": fastsoftmax,
    "reference": reference,
    "scipy": special,
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("op", ["softmax", "log_softmax", "logsumexp"])
@pytest.mark.parametrize("impl", list(IMPLS) + ["copy"])
def bench_softmax_family(benchmark, impl, op, shape, dtype):
    x = logits(shape, dtype)
    benchmark.group = f"{op} {shape[0]}x{shape[1]} {dtype}"
    if impl == "copy":
        out = np.empty_like(x)
        benchmark(np.copyto, out, x)
    else:
        benchmark(getattr(IMPLS[impl], op), x, axis=-1)
