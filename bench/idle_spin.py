"""Does a NumPy BLAS call run slower right after a fastsoftmax call, and the reverse?

After a parallel region, OpenMP worker threads spin for a while before they
sleep (GNU OpenMP: GOMP_SPINCOUNT, OMP_WAIT_POLICY; fastsoftmax sets a short
spin for its own runtime, see fastsoftmax/_runtime.py), and OpenBLAS's
threads do the same after a product. On a machine with few cores that spin
competes with the threads of the next call. This script times the same
matrix product in three situations, interleaved: after a long pause, right
after a fastsoftmax call, and right after a plain NumPy call of similar
length; then the same for a fastsoftmax call after a pause, a matrix product
or a copy, and prints the medians. `fastsoftmax bench --mixed` measures
whole alternating sequences and a busy core.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/idle_spin.py
"""

import statistics
import time

import numpy as np

import fastsoftmax


def main(repeats=60, n=384):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n))
    b = rng.standard_normal((n, n))
    logits = rng.standard_normal((4096, 1000)).astype(np.float32)
    target = rng.integers(0, 1000, 4096)
    other = np.empty_like(logits)

    def timed(fn):
        def run():
            t0 = time.perf_counter()
            fn()
            return time.perf_counter() - t0

        return run

    def fused():
        fastsoftmax.cross_entropy_with_grad(logits, target)

    try:
        from threadpoolctl import threadpool_info

        pools = ", ".join(f"{p['internal_api']} x{p['num_threads']}" for p in threadpool_info())
    except ImportError:
        pools = "threadpoolctl not installed"
    firsts = {
        "after a 20 ms pause": lambda: time.sleep(0.02),
        "right after np.copyto": lambda: np.copyto(other, logits),
    }
    for label, call, before in (
        (f"{n}x{n} float64 matmul", lambda: a @ b, {"right after fastsoftmax": fused}),
        ("fastsoftmax 4096 x 1000 fused", fused, {"right after a matmul": lambda: a @ b}),
    ):
        cases = {**firsts, **before}
        times = {k: [] for k in cases}
        run = timed(call)
        for _ in range(3):
            run()
        for _ in range(repeats):
            for name, first in cases.items():
                first()
                times[name].append(run())
        print(f"{label}, median of {repeats} ({pools})")
        base = statistics.median(times["after a 20 ms pause"])
        for name, t in times.items():
            med = statistics.median(t)
            print(f"  {name:26s} {1e3 * med:7.3f} ms  ({med / base:.2f}x)")


if __name__ == "__main__":
    main()
