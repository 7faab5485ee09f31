"""Does a NumPy BLAS call run slower right after a fastsoftmax call?

After a parallel region, OpenMP worker threads spin for a while before they
sleep (GNU OpenMP: GOMP_SPINCOUNT, OMP_WAIT_POLICY). On a machine with few
cores that spin competes with the BLAS threads of the next matrix product.
This script times the same matrix product in three situations, interleaved:
after a long pause, right after a fastsoftmax call, and right after a plain
NumPy call of similar length, and prints the medians.

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

    def matmul():
        t0 = time.perf_counter()
        a @ b
        return time.perf_counter() - t0

    cases = {
        "after a 20 ms pause": lambda: time.sleep(0.02),
        "right after fastsoftmax": lambda: fastsoftmax.cross_entropy_with_grad(logits, target),
        "right after np.copyto": lambda: np.copyto(other, logits),
    }
    times = {k: [] for k in cases}
    for _ in range(3):
        matmul()
    for _ in range(repeats):
        for name, before in cases.items():
            before()
            times[name].append(matmul())
    try:
        from threadpoolctl import threadpool_info

        pools = ", ".join(f"{p['internal_api']} x{p['num_threads']}" for p in threadpool_info())
    except ImportError:
        pools = "threadpoolctl not installed"
    print(f"{n}x{n} float64 matmul, median of {repeats} ({pools})")
    base = statistics.median(times["after a 20 ms pause"])
    for name, t in times.items():
        med = statistics.median(t)
        print(f"  {name:26s} {1e3 * med:7.3f} ms  ({med / base:.2f}x)")


if __name__ == "__main__":
    main()
