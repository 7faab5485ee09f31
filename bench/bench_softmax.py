"""softmax / log_softmax / logsumexp: fastsoftmax (default and out=), the NumPy
reference and scipy.special, with the copy of the same bytes as the floor;
over the last axis and over axis 0."""

import numpy as np
import pytest
from conftest import Inputs, copy_floor

import fastsoftmax
from fastsoftmax import reference

special = pytest.importorskip("scipy.special")

SHAPES = [(65536, 10), (16384, 100), (4096, 1000), (1024, 32000)]
IMPLS = ["fastsoftmax", "fastsoftmax-out", "reference", "scipy", "copy"]
MODULES = {"fastsoftmax": fastsoftmax, "reference": reference, "scipy": special}


@pytest.mark.parametrize("temperature", ["hot", "cold"])
@pytest.mark.parametrize("axis", [-1, 0])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("op", ["softmax", "log_softmax", "logsumexp"])
@pytest.mark.parametrize("impl", IMPLS)
def bench_softmax_family(benchmark, impl, op, shape, dtype, axis, temperature):
    inputs = Inputs(shape, dtype, cold=temperature == "cold")
    benchmark.group = f"{op} {shape[0]}x{shape[1]} {dtype} axis={axis} {temperature}"
    if impl == "copy":
        benchmark(copy_floor(inputs))
    elif impl == "fastsoftmax-out":
        if op == "logsumexp":
            pytest.skip("logsumexp has no out=")
        out = np.empty(shape, dtype)
        fn = getattr(fastsoftmax, op)
        benchmark(lambda: fn(inputs(), axis=axis, out=out))
    else:
        fn = getattr(MODULES[impl], op)
        benchmark(lambda: fn(inputs(), axis=axis))
