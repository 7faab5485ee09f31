"""fastsoftmax inside real programs: ``fastsoftmax bench --mixed``.

Two measurements, each printed as ratios taken in the same run:

* Alternating. In one process, fastsoftmax calls alternate with calls of
  another runtime: NumPy's BLAS, PyTorch's CPU ops and scikit-learn's
  OpenMP code (each when installed), and the SGD trainer's batch pattern
  (matrix product, cross-entropy, matrix product). Each side is timed alone
  (back to back) and alternating; a ratio above 1 is what the other side's
  threads cost it.
* Busy core. With one other CPU-bound process running (a busy loop this
  module starts and stops), 2-thread calls against 1-thread calls in the
  same minute, and the same on the idle machine.

The measurements use hot inputs: what they are about is threads, not memory.
"""

import contextlib
import statistics
import subprocess
import sys
import time

import numpy as np

FUSED_SHAPES = ((65536, 10), (16384, 100), (4096, 1000), (1024, 32000), (256, 128256))
SOFTMAX_SHAPES = ((65536, 10), (16384, 100), (4096, 1000), (1024, 32000))
QUIET_S = 0.3


def _times(fn, rounds):
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def _median_ms(fn, rounds):
    fn()  # warm up: first-call costs (thread pools, page faults) are not timed
    return 1e3 * statistics.median(_times(fn, rounds))


def alternate(first, second, rounds=40, blocks=4):
    """Median ms of each callable alone (back to back) and alternating.

    The rounds come in ``blocks``, each timing both alone and then the two
    alternating, so that a slow minute on a shared machine falls on all
    four figures alike. Returns ``(first_alone, first_alternating,
    second_alone, second_alternating)``.
    """
    for fn in (first, second):  # warm up: threads started, pages touched
        fn()
        fn()
    times = {key: [] for key in ("a", "a2", "b", "b2")}
    per = max(1, rounds // blocks)
    for _ in range(blocks):
        # Each alone after a pause, so that the other's idle threads are
        # asleep (OpenBLAS's keep spinning for about 0.1 s after a product).
        for key, fn in (("a", first), ("b", second)):
            time.sleep(QUIET_S)
            times[key] += _times(fn, per)
        for _ in range(per):
            t0 = time.perf_counter()
            first()
            t1 = time.perf_counter()
            second()
            times["a2"].append(t1 - t0)
            times["b2"].append(time.perf_counter() - t1)
    return tuple(1e3 * statistics.median(times[k]) for k in ("a", "a2", "b", "b2"))


def _sized(ms, make, size, grow, largest, rounds=5):
    """The first size from ``size`` on (``grow(size)`` each step, up to
    ``largest``) whose call ``make(size)`` takes at least ``ms``: (size, call)."""
    while True:
        call = make(size)
        if size >= largest or _median_ms(call, rounds) >= ms:
            return size, call
        size = grow(size)


def _square_matmul_like(ms, dtype=np.float64):
    """A @ B on n x n matrices, n chosen so that one product takes about ``ms``."""
    rng = np.random.default_rng(2)

    def make(n):
        a, b = (rng.standard_normal((n, n)).astype(dtype) for _ in range(2))
        return lambda: a @ b

    return _sized(ms, make, 64, lambda n: int(n * 1.25), 4096)


def _others(ms):
    """The other runtimes' calls, each about ``ms`` long: name -> callable."""
    others = {}
    n, mm = _square_matmul_like(ms)
    others[f"NumPy A @ B {n} x {n} float64"] = mm
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:

        def torch_mm(n):
            ta, tb = torch.randn(n, n), torch.randn(n, n)
            return lambda: torch.mm(ta, tb)

        n, call = _sized(ms, torch_mm, 64, lambda n: int(n * 1.25), 4096)
        others[f"torch.mm {n} x {n} float32"] = call
    try:
        from sklearn.metrics import pairwise_distances_argmin
    except ImportError:
        pairwise_distances_argmin = None
    if pairwise_distances_argmin is not None:
        rng = np.random.default_rng(3)

        def argmin(m):
            xa, ya = rng.standard_normal((m, 64)), rng.standard_normal((256, 64))
            return lambda: pairwise_distances_argmin(xa, ya)

        m, call = _sized(ms, argmin, 256, lambda m: 2 * m, 1 << 16, rounds=3)
        others[f"sklearn pairwise_distances_argmin {m} x 256"] = call
    return others


def alternating_rows(n_threads=None, rounds=40, shapes=FUSED_SHAPES):
    """One row per (shape, other runtime): the four medians of :func:`alternate`."""
    import fastsoftmax

    rows = []
    for shape in shapes:
        x = (3 * np.random.default_rng(0).standard_normal(shape)).astype(np.float32)
        t = np.random.default_rng(1).integers(0, shape[1], shape[0])
        out = np.empty_like(x)

        def fused(x=x, t=t, out=out):
            fastsoftmax.cross_entropy_with_grad(x, t, out=out, n_threads=n_threads)

        fused()
        ms = _median_ms(fused, 9)
        for name, other in _others(ms).items():
            rows.append((f"{shape[0]} x {shape[1]}", name, *alternate(fused, other, rounds)))
    rows.append(("256 x 200 batch", *trainer_batch(n_threads, rounds)))
    return rows


def trainer_batch_calls(n_threads=None):
    """The SGD trainer's batch pattern on a 256 x 784 batch and 200 classes:
    (fastsoftmax's cross-entropy of the scores, the two products X @ W and
    X.T @ G), each writing into buffers of its own."""
    import fastsoftmax

    rng = np.random.default_rng(4)
    X = rng.standard_normal((256, 784)).astype(np.float32)
    W = rng.standard_normal((784, 200)).astype(np.float32) * 0.05
    y = rng.integers(0, 200, 256)
    scores = X @ W
    grad = np.empty_like(scores)
    out_w = np.empty_like(W)

    def xent():
        fastsoftmax.cross_entropy_with_grad(scores, y, out=grad, n_threads=n_threads)

    def products():
        np.matmul(X, W, out=scores)
        np.matmul(X.T, grad, out=out_w)

    return xent, products


def trainer_batch(n_threads=None, rounds=40):
    """The trainer's batch pattern alternating: the name of the other side and
    the four medians of :func:`alternate` (the cross-entropy, the products)."""
    xent, products = trainer_batch_calls(n_threads)
    return ("NumPy 256 x 784 x 200 products", *alternate(xent, products, rounds))


@contextlib.contextmanager
def busy_core():
    """One other CPU-bound process for the duration of the block."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # started and spinning
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _thread_calls(shape, op):
    import fastsoftmax

    x = (3 * np.random.default_rng(0).standard_normal(shape)).astype(np.float32)
    out = np.empty_like(x)
    if op == "cross_entropy_with_grad":
        t = np.random.default_rng(1).integers(0, shape[1], shape[0])
        return lambda n: fastsoftmax.cross_entropy_with_grad(x, t, out=out, n_threads=n)
    fn = getattr(fastsoftmax, op)
    return lambda n: fn(x, axis=-1, out=out, n_threads=n)


def thread_rows(rounds=30, busy=True, fused=FUSED_SHAPES, softmax=SOFTMAX_SHAPES):
    """1-thread and 2-thread medians, interleaved call by call, per shape and op."""
    cases = [(s, "cross_entropy_with_grad") for s in fused]
    cases += [(s, "softmax") for s in softmax]
    rows = []
    with busy_core() if busy else contextlib.nullcontext():
        for shape, op in cases:
            call = _thread_calls(shape, op)
            call(1)
            call(2)
            t1, t2 = [], []
            for _ in range(rounds):
                for n, acc in ((1, t1), (2, t2)):
                    t0 = time.perf_counter()
                    call(n)
                    acc.append(time.perf_counter() - t0)
            rows.append(
                (
                    op,
                    f"{shape[0]} x {shape[1]}",
                    1e3 * statistics.median(t1),
                    1e3 * statistics.median(t2),
                )
            )
    return rows


def runtimes():
    """The thread pools loaded in this process, as threadpoolctl sees them."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    return ", ".join(
        f"{p['internal_api']} ({p['filepath'].rsplit('/', 1)[-1]}) x{p['num_threads']}"
        for p in threadpool_info()
    )


def print_report(n_threads=None, rounds=40, file=None, fused=FUSED_SHAPES, softmax=SOFTMAX_SHAPES):
    """Print the alternating and busy-core tables (a few minutes)."""
    import fastsoftmax

    info = fastsoftmax.build_info()
    print(f"fastsoftmax {info['version']}, {info['simd']}; runtimes: {runtimes()}", file=file)
    print("\nAlternating in one process (hot, medians; x = alternating / alone):", file=file)
    print(
        "| fastsoftmax call | other call | fastsoftmax alone -> alternating "
        "| other alone -> alternating |",
        file=file,
    )
    print("|---|---|---|---|", file=file)
    for shape, name, a0, a1, b0, b1 in alternating_rows(n_threads, rounds, fused):
        print(
            f"| {shape} | {name} | {a0:.3f} -> {a1:.3f} ms (x{a1 / a0:.2f}) "
            f"| {b0:.3f} -> {b1:.3f} ms (x{b1 / b0:.2f}) |",
            file=file,
        )
    for busy in (True, False):
        label = "one busy process beside it" if busy else "idle machine"
        print(f"\n2 threads against 1, {label} (hot, medians):", file=file)
        print("| op | N x C | 1 thread | 2 threads | 2 / 1 |", file=file)
        print("|---|---|---|---|---|", file=file)
        for op, shape, t1, t2 in thread_rows(max(3, rounds // 2), busy, fused, softmax):
            print(f"| {op} | {shape} | {t1:.3f} ms | {t2:.3f} ms | {t2 / t1:.2f} |", file=file)
