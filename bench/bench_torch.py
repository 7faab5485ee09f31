"""fastsoftmax.torch against torch's own, on CPU tensors, in one process.

The loss alone: forward + backward of ``cross_entropy`` on float32 logits
that require grad (a fresh gradient each call, as in training), beside a
copy of the same bytes (the floor). A training step: an LM head (features
of width 512 -> ``nn.Linear(512, 32000)`` -> loss, 1024 tokens) and an MNIST
MLP (784 -> 256 -> 10, batch 256), SGD, eager and torch.compile'd, with
``nn.CrossEntropyLoss`` against ``fastsoftmax.torch.CrossEntropyLoss``;
a step's floor is the same step with a loss that costs nothing.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m pytest bench/bench_torch.py
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/bench_torch.py

The second form interleaves the sides round by round and prints the tables
of the README (median of rounds, ratios within a round; the loss again with
one other CPU-bound process running), then the peak
memory of the loss alone, each method in a process of its own, and checks
that the two losses agree step by step over 20 steps.
"""

import argparse
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch") if __name__ != "__main__" else __import__("torch")

from conftest import interleaved, peak_growth_mib  # noqa: E402

import fastsoftmax.torch as fst  # noqa: E402
from fastsoftmax import _bench_mixed  # noqa: E402

LOSS_SHAPES = [(1, 10), (65536, 10), (4096, 1000), (4096, 32000), (256, 128256)]
STEPS = ["lm-head", "mlp"]


def _shape_id(shape):
    return f"{shape[0]}x{shape[1]}"


def loss_calls(shape):
    """name -> a call of forward + backward (or the copy floor) at ``shape``."""
    g = torch.Generator().manual_seed(0)
    x = (3 * torch.randn(shape, generator=g)).requires_grad_()
    t = torch.randint(0, shape[1], (shape[0],), generator=g)
    dst = torch.empty(shape)
    src = x.detach()
    F = torch.nn.functional
    return {
        "copy": lambda: dst.copy_(src),
        "torch": lambda: torch.autograd.grad(F.cross_entropy(x, t), x),
        "fastsoftmax": lambda: torch.autograd.grad(fst.cross_entropy(x, t), x),
    }


def _lm_head():
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(1024, 512, generator=g)
    target = torch.randint(0, 32000, (1024,), generator=g)
    return torch.nn.Linear(512, 32000), feats, target


def _mlp():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(256, 784, generator=g)
    target = torch.randint(0, 10, (256,), generator=g)
    model = torch.nn.Sequential(
        torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10)
    )
    return model, x, target


def training_step(kind, loss_cls, compiled):
    """A step function (returns the loss) of a fresh model, the same one for
    every loss class (the same seed)."""
    torch.manual_seed(0)
    model, x, target = _lm_head() if kind == "lm-head" else _mlp()
    loss_fn = loss_cls()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)

    def forward(inp, tgt):
        return loss_fn(model(inp), tgt)

    if compiled:
        forward = torch.compile(forward, fullgraph=True)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = forward(x, target)
        loss.backward()
        opt.step()
        return loss.detach()

    return step


def step_calls(kind, compiled):
    calls = {
        "torch": training_step(kind, torch.nn.CrossEntropyLoss, compiled),
        "fastsoftmax": training_step(kind, fst.CrossEntropyLoss, compiled),
    }
    if not compiled:
        calls["floor"] = training_step(kind, _NoLoss, False)
    return calls


class _NoLoss(torch.nn.Module):
    """The floor of a step: a loss that costs nothing (a constant, and a
    gradient computed once), so the step is the model's own work alone."""

    def forward(self, logits, target):
        if not hasattr(self, "grad"):
            with torch.enable_grad():
                z = logits.detach().requires_grad_()
                (self.grad,) = torch.autograd.grad(torch.nn.functional.cross_entropy(z, target), z)
        return _Constant.apply(logits, self.grad)


class _Constant(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, grad):
        ctx.grad = grad
        return logits.new_zeros(())

    @staticmethod
    def backward(ctx, g):
        return ctx.grad, None


# ------------------------------------------------------------- pytest-benchmark


@pytest.mark.parametrize("side", ["copy", "torch", "fastsoftmax"])
@pytest.mark.parametrize("shape", LOSS_SHAPES, ids=_shape_id)
def bench_loss(benchmark, shape, side):
    benchmark.group = f"cross_entropy forward + backward {_shape_id(shape)} float32"
    fn = loss_calls(shape)[side]
    fn()
    benchmark(fn)


@pytest.mark.parametrize("side", ["floor", "torch", "fastsoftmax"])
@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("kind", STEPS)
def bench_training_step(benchmark, kind, compiled, side):
    calls = step_calls(kind, compiled)
    if side not in calls:
        pytest.skip(f"no {side} for this step")
    benchmark.group = f"training step {kind} {'compiled' if compiled else 'eager'}"
    fn = calls[side]
    for _ in range(3):  # compile, warm up
        fn()
    benchmark(fn)


# ----------------------------------------------------------- interleaved tables


def _fmt(ms):
    return f"{ms * 1e3:.1f} us" if ms < 0.1 else f"{ms:.2f} ms"


def loss_table(rounds):
    print("| N x C (float32) | copy | torch fwd+bwd | fastsoftmax fwd+bwd | torch / fastsoftmax |")
    print("|---|---|---|---|---|")
    for shape in LOSS_SHAPES:
        per_round = 200 if shape[0] * shape[1] < 10**5 else 5
        t = interleaved(loss_calls(shape), rounds, per_round)
        print(
            f"| {_shape_id(shape)} | {_fmt(t['copy'])} | {_fmt(t['torch'])} | "
            f"{_fmt(t['fastsoftmax'])} | {t['torch'] / t['fastsoftmax']:.2f} |"
        )


def step_table(rounds):
    print("| training step | without a loss | nn.CrossEntropyLoss | fastsoftmax.torch | ratio |")
    print("|---|---|---|---|---|")
    for kind in STEPS:
        for compiled in (False, True):
            calls = step_calls(kind, compiled)
            per_round = 3 if kind == "lm-head" else 50
            t = interleaved(calls, rounds, per_round)
            floor = _fmt(t["floor"]) if "floor" in t else "-"
            print(
                f"| {kind} {'compiled' if compiled else 'eager'} | {floor} | {_fmt(t['torch'])} "
                f"| {_fmt(t['fastsoftmax'])} | {t['torch'] / t['fastsoftmax']:.2f} |"
            )


def same_losses(n_steps=20):
    """The two losses, step by step, for each training step: assert_close."""
    for kind in STEPS:
        for compiled in (False, True):
            ours = training_step(kind, fst.CrossEntropyLoss, compiled)
            theirs = training_step(kind, torch.nn.CrossEntropyLoss, compiled)
            a = torch.stack([ours() for _ in range(n_steps)])
            b = torch.stack([theirs() for _ in range(n_steps)])
            torch.testing.assert_close(a, b)
            print(f"{kind} {'compiled' if compiled else 'eager'}: {n_steps} steps, same losses")


def peak_memory(method, shape):
    """MiB of peak RSS growth of the first forward + backward over the inputs
    (Linux): the peak (VmHWM) is reset once the inputs exist, then read after
    the call. Later calls of fastsoftmax's reuse the gradient buffer it kept."""
    return peak_growth_mib(loss_calls(shape)[method])


def memory_table():
    print("| N x C (float32) | logits | torch peak growth | fastsoftmax peak growth |")
    print("|---|---|---|---|")
    for shape in [(4096, 32000), (256, 128256)]:
        row = []
        for method in ("torch", "fastsoftmax"):
            out = subprocess.run(
                [sys.executable, __file__, "--memory", method, _shape_id(shape)],
                capture_output=True,
                text=True,
                check=True,
            )
            row.append(float(out.stdout.strip()))
        mib = shape[0] * shape[1] * 4 / 2**20
        print(f"| {_shape_id(shape)} | {mib:.0f} MiB | {row[0]:.0f} MiB | {row[1]:.0f} MiB |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--memory", nargs=2, metavar=("METHOD", "SHAPE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory:
        method, shape = args.memory
        print(peak_memory(method, tuple(int(n) for n in shape.split("x"))))
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    loss_table(args.rounds)
    print("\nWith one other CPU-bound process running:\n")
    with _bench_mixed.busy_core():
        loss_table(args.rounds)
    print()
    step_table(args.rounds)
    print()
    memory_table()
    print()
    same_losses()


if __name__ == "__main__":
    main()
