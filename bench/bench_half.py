"""bfloat16 and float16: the fused cross-entropy and softmax on 2-byte logits.

Cold inputs (conftest.Inputs: a rotation of copies larger than the last-level
cache), results written with ``out=``: fastsoftmax on bfloat16 and float16,
fastsoftmax's own float32 path on the same shape, torch's bfloat16
``cross_entropy`` + backward and ``softmax`` (when installed, on the same
bytes), and the floor: a copy of the same 2-byte data.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m pytest bench/bench_half.py
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/bench_half.py

The second form interleaves every method round by round, prints the README's
table (median of rounds), then the accuracy of each 2-byte output against
float64: how many elements are 0, 1 and 2 ulps from the correctly rounded value.
"""

import argparse

import numpy as np
import pytest
from conftest import Inputs, copy_floor, interleaved, labels

import fastsoftmax
from fastsoftmax import reference

ml_dtypes = pytest.importorskip("ml_dtypes") if __name__ != "__main__" else __import__("ml_dtypes")

BF16 = np.dtype(ml_dtypes.bfloat16)
SHAPES = [(65536, 10), (16384, 100), (4096, 1000), (1024, 32000), (256, 128256)]
DTYPES = {"bfloat16": BF16, "float16": np.dtype(np.float16), "float32": np.dtype(np.float32)}


def _shape_id(shape):
    return f"{shape[0]}x{shape[1]}"


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def calls(shape, threads=2):
    """name -> a call at ``shape`` on cold inputs."""
    t = labels(shape[0], shape[1])
    found = {}
    inputs = {name: Inputs(shape, dtype, cold=True) for name, dtype in DTYPES.items()}
    outs = {name: np.empty(shape, dtype) for name, dtype in DTYPES.items()}
    found["copy (2 bytes)"] = copy_floor(inputs["bfloat16"])
    for name in DTYPES:
        x, out = inputs[name], outs[name]
        found[f"xent {name}"] = lambda x=x, out=out: fastsoftmax.cross_entropy_with_grad(
            x(), t, out=out, n_threads=threads
        )
    xb, ob = inputs["bfloat16"], outs["bfloat16"]
    found["softmax bfloat16"] = lambda: fastsoftmax.softmax(xb(), axis=1, out=ob, n_threads=threads)
    torch = _torch()
    if torch is not None:
        torch.set_num_threads(threads)
        tt = torch.from_numpy(t)
        F = torch.nn.functional

        def as_tensor(a):
            return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)

        def torch_xent():
            x = as_tensor(xb()).requires_grad_()
            return torch.autograd.grad(F.cross_entropy(x, tt), x)

        found["torch xent bfloat16"] = torch_xent
        found["torch softmax bfloat16"] = lambda: torch.softmax(as_tensor(xb()), 1)
    return found


@pytest.mark.parametrize("shape", SHAPES, ids=_shape_id)
@pytest.mark.parametrize(
    "method",
    [
        "copy (2 bytes)",
        "xent bfloat16",
        "xent float16",
        "xent float32",
        "softmax bfloat16",
        "torch xent bfloat16",
        "torch softmax bfloat16",
    ],
)
def bench_half(benchmark, method, shape):
    found = calls(shape)
    if method not in found:
        pytest.skip("torch is not installed")
    benchmark.group = f"2-byte {_shape_id(shape)} cold"
    fn = found[method]
    fn()
    benchmark(fn)


# ----------------------------------------------------------- interleaved table


def table(rounds, threads):
    print(
        f"{threads} thread(s), ms (x the 2-byte copy). fastsoftmax writes with out=; "
        "torch's bfloat16 is F.cross_entropy + backward."
    )
    print(
        "| N x C | 2-byte copy | bf16 xent | f16 xent | float32 xent | bf16 softmax "
        "| torch bf16 xent | torch / ours | torch bf16 softmax |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for shape in SHAPES:
        per_round = 20 if shape[0] * shape[1] < 2 * 10**6 else 5
        t = interleaved(calls(shape, threads), rounds, per_round)
        floor = t["copy (2 bytes)"]

        def cell(name, t=t, floor=floor):
            return f"{t[name]:.2f} ({t[name] / floor:.1f})" if name in t else "-"

        ratio = (
            f"{t['torch xent bfloat16'] / t['xent bfloat16']:.1f}"
            if "torch xent bfloat16" in t
            else "-"
        )
        print(
            f"| {_shape_id(shape)} | {floor:.3f} | {cell('xent bfloat16')} | "
            f"{cell('xent float16')} | {cell('xent float32')} | {cell('softmax bfloat16')} | "
            f"{cell('torch xent bfloat16')} | {ratio} | {cell('torch softmax bfloat16')} |"
        )


def _ulps(actual, exact64):
    expected = exact64.astype(actual.dtype)
    i, j = (a.view(np.uint16).astype(np.int64) for a in (actual, expected))
    i, j = (np.where(v & 0x8000, -(v & 0x7FFF), v) for v in (i, j))
    d = np.abs(i - j)
    d[(actual.astype(np.float32) == 0) & (expected.astype(np.float32) == 0)] = 0
    return d


def accuracy():
    print("| output | dtype | 0 ulp | 1 ulp | 2 ulp or more | loss relative error |")
    print("|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for name, dtype in (("bfloat16", BF16), ("float16", np.dtype(np.float16))):
        x = (4 * rng.standard_normal((512, 8000))).astype(dtype)
        t = rng.integers(0, 8000, 512)
        x64 = x.astype(np.float64)
        ref_loss, ref_grad, _ = reference.cross_entropy_with_grad(x64, t)
        loss, grad = fastsoftmax.cross_entropy_with_grad(x, t)
        outputs = [
            ("softmax", fastsoftmax.softmax(x, axis=1), reference.softmax(x64, 1)),
            ("log_softmax", fastsoftmax.log_softmax(x, axis=1), reference.log_softmax(x64, 1)),
            ("xent gradient", grad, ref_grad),
        ]
        err = abs(float(loss) - float(ref_loss)) / abs(float(ref_loss))
        for what, got, exact in outputs:
            d = _ulps(got, exact)
            n = d.size
            print(
                f"| {what} | {name} | {np.mean(d == 0):.5%} | {np.mean(d == 1):.5%} | "
                f"{int((d >= 2).sum())} of {n} | {err:.1e} |"
            )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    args = parser.parse_args(argv)
    torch = _torch()
    print(f"torch {torch.__version__ if torch else 'not installed'}")
    for threads in args.threads:
        table(args.rounds, threads)
        print()
    accuracy()


if __name__ == "__main__":
    main()
