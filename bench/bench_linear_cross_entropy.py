"""linear_cross_entropy against its floor and torch, at language-model heads' shapes.

N x d x V = 2048 x 512 x 32000 and 512 x 1024 x 128256, float32:
fastsoftmax's fused ``linear_cross_entropy_with_grad`` (loss and the
gradients of input and weight), the three matrix products alone (x W^T,
G W, G^T x: the floor), and where installed torch's ``F.linear`` +
``F.cross_entropy`` + backward and its ``F.linear_cross_entropy`` (torch
2.13), and ``fastsoftmax.torch``'s with autograd.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE pytest bench/bench_linear_cross_entropy.py
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/bench_linear_cross_entropy.py
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/bench_linear_cross_entropy.py \
        --sweep --plot bench/linear_cross_entropy.png

The second form interleaves the methods (median of rounds) at each shape and
then measures each one's peak memory growth in a process of its own; the
third does the same over the vocabulary's size V at N x d = 2048 x 512 and
plots time and peak memory against V.
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

SHAPES = [(2048, 512, 32000), (512, 1024, 128256)]
SWEEP = [(2048, 512, v) for v in (4000, 8000, 16000, 32000, 64000, 128256)]
# The methods of the sweep and the plot: ours, the floor, torch's two paths.
SWEPT = [
    "fastsoftmax",
    "matrix products",
    "torch linear + cross_entropy",
    "torch linear_cross_entropy (chunked)",
]


def _shape_id(shape):
    return " x ".join(map(str, shape))


def _inputs(shape):
    n, d, v = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, d), dtype=np.float32)
    w = (rng.standard_normal((v, d), dtype=np.float32) / np.sqrt(d)).astype(np.float32)
    t = rng.integers(0, v, n)
    return x, w, t


def calls(shape):
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


@pytest.mark.parametrize("shape", SHAPES, ids=["x".join(map(str, s)) for s in SHAPES])
@pytest.mark.parametrize(
    "name",
    ["fastsoftmax", "matrix products", "torch linear + cross_entropy",
     "torch linear_cross_entropy (chunked)", "fastsoftmax.torch linear_cross_entropy + backward"],
)  # fmt: skip
def bench_linear_cross_entropy(benchmark, name, shape):
    fns = calls(shape)
    if name not in fns:
        pytest.skip(f"{name} is not available")
    benchmark.group = f"linear cross-entropy {_shape_id(shape)} float32"
    fns[name]()
    benchmark.pedantic(fns[name], rounds=3, iterations=1)


def peak_memory(name, shape):
    """MiB of peak RSS growth of one call over its inputs (Linux)."""
    return peak_growth_mib(calls(shape)[name])


def measure(shape, rounds, names=None):
    """name -> (median seconds of interleaved rounds, MiB of peak growth)."""
    fns = calls(shape)
    if names is not None:
        fns = {k: v for k, v in fns.items() if k in names}
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    out = {}
    for name in fns:
        mem = subprocess.run(
            [sys.executable, __file__, "--memory", name, "--shape", "x".join(map(str, shape))],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        out[name] = (statistics.median(times[name]), float(mem))
    return out


def _table(shape, found):
    floor = found["matrix products"][0]
    print(f"\n| N x d x V = {_shape_id(shape)} float32 | time | x products | peak memory growth |")
    print("|---|---|---|---|")
    for name, (sec, mib) in found.items():
        print(f"| {name} | {sec:.3f} s | {sec / floor:.2f} | {mib:.0f} MiB |")


def _plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vs = [shape[2] for shape in results]
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(10, 4))
    for i, name in enumerate(SWEPT):
        if not all(name in found for found in results.values()):
            continue
        style = dict(color=f"C{i}", marker="o", label=name)
        ax_t.plot(vs, [found[name][0] for found in results.values()], **style)
        if name != "matrix products":  # its inputs hold an N x V gradient: not comparable
            ax_m.plot(vs, [found[name][1] for found in results.values()], **style)
    n, d = next(iter(results))[:2]
    for ax, what in ((ax_t, "time, loss and gradients (s)"), (ax_m, "peak memory growth (MiB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("classes V")
        ax.set_ylabel(what)
        ax.grid(True, which="both", alpha=0.3)
    ax_t.legend(fontsize=8)
    ax_m.legend(fontsize=8)
    fig.suptitle(f"linear cross-entropy, N x d = {n} x {d} float32, 2 threads")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"\nwrote {path}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--shape", action="append", help="N x d x V as NxDxV (default: both)")
    parser.add_argument("--sweep", action="store_true", help="over V at 2048 x 512")
    parser.add_argument("--plot", metavar="PNG", help="with --sweep: time and memory over V")
    parser.add_argument("--memory", metavar="METHOD", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shape] if args.shape else None
    if args.memory:
        print(peak_memory(args.memory, shapes[0]))
        return
    if args.sweep:
        results = {shape: measure(shape, args.rounds, SWEPT) for shape in shapes or SWEEP}
        for shape, found in results.items():
            _table(shape, found)
        if args.plot:
            _plot(results, args.plot)
        return
    for shape in shapes or SHAPES:
        _table(shape, measure(shape, args.rounds))


if __name__ == "__main__":
    main()
