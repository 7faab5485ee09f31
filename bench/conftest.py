"""Shared inputs for the benchmarks: seeded arrays cached per (shape, dtype)."""

import functools

import numpy as np
import pytest


@functools.lru_cache(maxsize=32)
def logits(shape, dtype):
    rng = np.random.default_rng(0)
    return (3 * rng.standard_normal(shape)).astype(dtype)


@functools.lru_cache(maxsize=32)
def labels(n, n_classes):
    return np.random.default_rng(1).integers(0, n_classes, size=n)


@pytest.fixture(scope="session", autouse=True)
def _report_threads():
    """Print which BLAS and OpenMP runtimes and thread counts the run had."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        yield
        return
    for pool in threadpool_info():
        print(f"\n{pool['user_api']}: {pool['internal_api']} {pool.get('version')} "
              f"threads={pool['num_threads']} {pool.get('architecture', '')}")
    yield
