"""linear_cross_entropy against its floor and torch, at a language-model head's shape.

N x d x V = 2048 x 512 x 32000, float32: fastsoftmax's fused
``linear_cross_entropy_with_grad`` (loss and the gradients of input and
weight), the three matrix products alone (x W^T, G W, G^T x: the floor), and
where installed torch's ``F.linear`` + ``F.cross_entropy`` + backward and
its ``F.linear_cross_entropy`` (torch 2.13), and ``fastsoftmax.torch``'s with
autograd.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE pytest bench/bench_linear_cross_entropy.py
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/bench_linear_cross_entropy.py

The second form interleaves the methods (median of rounds) and then measures
each one's peak memory growth in a process of its own.
"""

import argparse
import statistics
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import peak_growth_mib

import fastsoftmax

SHAPE = (2048, 512, 32000)


def _inputs(shape=SHAPE):
    n, d, v = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, d), dtype=np.float32)
    w = (rng.standard_normal((v, d), dtype=np.float32) / np.sqrt(d)).astype(np.float32)
    t = rng.integers(0, v, n)
    return x, w, t


def calls(shape=SHAPE):
    """name -> a call computing the loss and the gradients (or the floor)."""
    x, w, t = _inputs(shape)
    g = np.random.default_rng(1).standard_normal((shape[0], shape[2]), dtype=np.float32)
    out = {
        "fastsoftmax": lambda: fastsoftmax.linear_cross_entropy_with_grad(x, w, t),
        "matrix products": lambda: (x @ w.T, g @ w, g.T @ x),
    }
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return out
    xt, wt, tt = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(t)

    def torch_plain():
        a, b = xt.detach().requires_grad_(), wt.detach().requires_grad_()
        F.cross_entropy(F.linear(a, b), tt).backward()
        return a.grad, b.grad

    out["torch linear + cross_entropy"] = torch_plain

    import fastsoftmax.torch as fst

    def ours_torch():
        a, b = xt.detach().requires_grad_(), wt.detach().requires_grad_()
        fst.linear_cross_entropy(a, b, tt).backward()
        return a.grad, b.grad

    out["fastsoftmax.torch linear_cross_entropy + backward"] = ours_torch
    if hasattr(F, "linear_cross_entropy") and hasattr(torch.nn, "LinearCrossEntropyOptions"):

        def torch_chunked():
            a, b = xt.detach().requires_grad_(), wt.detach().requires_grad_()
            options = torch.nn.LinearCrossEntropyOptions()
            F.linear_cross_entropy(a, b, tt, options=options).backward()
            return a.grad, b.grad

        out["torch linear_cross_entropy (chunked)"] = torch_chunked
    return out


@pytest.mark.parametrize(
    "name",
    ["fastsoftmax", "matrix products", "torch linear + cross_entropy",
     "torch linear_cross_entropy (chunked)", "fastsoftmax.torch linear_cross_entropy + backward"],
)  # fmt: skip
def bench_linear_cross_entropy(benchmark, name):
    fns = calls()
    if name not in fns:
        pytest.skip(f"{name} is not available")
    benchmark.group = "linear cross-entropy 2048 x 512 x 32000 float32"
    fns[name]()
    benchmark.pedantic(fns[name], rounds=5, iterations=1)


def peak_memory(name):
    """MiB of peak RSS growth of one call over its inputs (Linux)."""
    return peak_growth_mib(calls()[name])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--memory", metavar="METHOD", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory:
        print(peak_memory(args.memory))
        return
    fns = calls()
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(args.rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    print(f"| N x d x V = {' x '.join(map(str, SHAPE))} float32 | time | peak memory growth |")
    print("|---|---|---|")
    for name in fns:
        mem = subprocess.run(
            [sys.executable, __file__, "--memory", name], capture_output=True, text=True, check=True
        ).stdout.strip()
        print(f"| {name} | {statistics.median(times[name]):.3f} s | {float(mem):.0f} MiB |")


if __name__ == "__main__":
    main()
