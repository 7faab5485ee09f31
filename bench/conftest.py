"""Shared inputs and timing helpers for the benchmarks.

Hot inputs are one seeded array per (shape, dtype), reused call after call
(it stays in cache when it fits). Cold inputs rotate through enough copies to
exceed the last-level cache, so every call reads its scores from DRAM, as in
training where the logits were just written by a matrix product elsewhere.
"""

import functools
import itertools
import os
import statistics
import time

import numpy as np
import pytest

# Bytes the rotating buffers must exceed: twice a 32 MiB last-level cache.
COLD_BYTES = int(os.environ.get("FASTSOFTMAX_BENCH_COLD_BYTES", 64 * 2**20))


@functools.lru_cache(maxsize=16)
def logits(shape, dtype):
    rng = np.random.default_rng(0)
    return (3 * rng.standard_normal(shape)).astype(dtype)


@functools.lru_cache(maxsize=16)
def labels(n, n_classes):
    return np.random.default_rng(1).integers(0, n_classes, size=n)


class Inputs:
    """Either the same array every call (hot) or a rotation of copies (cold)."""

    def __init__(self, shape, dtype, cold):
        base = logits(shape, dtype)
        copies = max(1, -(-COLD_BYTES // base.nbytes)) if cold else 1
        self.arrays = [base.copy() for _ in range(copies)]
        self._next = itertools.cycle(self.arrays).__next__

    def __call__(self):
        return self._next()


def copy_floor(inputs):
    """np.copyto of the same bytes into a buffer as cold as the inputs."""
    outs = [a.copy() for a in inputs.arrays]  # touched: no page faults while timed
    pairs = itertools.cycle(zip(inputs.arrays, outs)).__next__

    def run():
        src, dst = pairs()
        np.copyto(dst, src)

    return run


def _status_mib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def peak_growth_mib(fn):
    """MiB of peak RSS growth of ``fn()`` over what the process holds now
    (Linux): the peak (VmHWM) is reset to the current RSS, then read after."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    before = _status_mib("VmRSS")
    fn()
    return _status_mib("VmHWM") - before


@pytest.fixture(scope="session", autouse=True)
def _report_threads():
    """Print which BLAS and OpenMP runtimes and thread counts the run had."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        yield
        return
    for pool in threadpool_info():
        print(
            f"\n{pool['user_api']}: {pool['internal_api']} {pool.get('version')} "
            f"threads={pool['num_threads']} {pool.get('architecture', '')}"
        )
    yield


def interleaved(calls, rounds, per_round):
    """Median ms of each of ``calls`` (name -> function) over ``rounds``, the
    calls alternating round by round (each round: the median of ``per_round``
    calls), so that every one sees the same state of a noisy machine."""
    for fn in calls.values():
        for _ in range(2):
            fn()
    times = {name: [] for name in calls}
    for _ in range(rounds):
        for name, fn in calls.items():
            samples = []
            for _ in range(per_round):
                t0 = time.perf_counter()
                fn()
                samples.append(time.perf_counter() - t0)
            times[name].append(statistics.median(samples))
    return {name: 1e3 * statistics.median(v) for name, v in times.items()}
