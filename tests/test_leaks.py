"""Leaks: 100,000 calls, successful and raising, on small inputs.

After a warm-up, neither the resident memory, nor the memory tracemalloc
sees, nor the reference counts of the arguments grow. The calls cover every
public function, the NumPy fallbacks, out=, inplace=, return_lse and every
kind of error.
"""

import gc
import os
import sys
import tracemalloc

import numpy as np
import pytest

import fastsoftmax as fs

N_CALLS = 100_000
# tools/sanitize.sh preloads a sanitizer runtime, whose allocator keeps freed memory
UNDER_SANITIZER = "san" in os.environ.get("LD_PRELOAD", "")


def recipes():
    """[(name, call, exception or None, the argument objects to watch)]."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 5))
    x32 = x.astype(np.float32)
    x3 = rng.standard_normal((3, 4, 5))
    xf = np.asfortranarray(rng.standard_normal((6, 7)))[::2]
    xi = rng.integers(-3, 3, (4, 5))
    medium = rng.standard_normal((300, 250))  # several threads with n_threads=2
    t = rng.integers(0, 5, 8)
    t3 = rng.integers(0, 4, (3, 5))
    tf = rng.integers(0, 7, 3)
    tm = rng.integers(0, 250, 300)
    q = rng.random((8, 5))
    w = rng.random(5) + 0.5
    g = rng.standard_normal(8)
    b = rng.random(5)
    out = np.empty_like(x)
    out3 = np.empty_like(x3)
    scratch = x.copy()
    lse = fs.cross_entropy_with_grad(x, t, reduction="none", return_lse=True)[2]
    read_only = x.copy()
    read_only.setflags(write=False)
    t_bad = t.copy()
    t_bad[3] = 9
    w_bad = np.ones(4)
    out_bad = np.empty((5, 8))
    out_f32 = np.empty((8, 5), dtype=np.float32)
    x_obj = x.astype(object)
    q_bad = rng.random((8, 6))
    lse_bad = np.zeros(7)
    smoothing = 0.1  # a float object whose count is watched too
    return [
        # successful calls
        ("softmax", lambda: fs.softmax(x32, axis=1), None, [x32]),
        ("softmax-axes-out", lambda: fs.softmax(x3, axis=(0, 2), out=out3), None, [x3, out3]),
        ("log_softmax-int", lambda: fs.log_softmax(xi, axis=0), None, [xi]),
        ("log_softmax-fortran", lambda: fs.log_softmax(xf), None, [xf]),
        (
            "logsumexp-sign",
            lambda: fs.logsumexp(x, axis=1, keepdims=True, return_sign=True),
            None,
            [x],
        ),
        ("logsumexp-b", lambda: fs.logsumexp(x, axis=1, b=b), None, [x, b]),
        (
            "xent",
            lambda: fs.cross_entropy(x, t, w, 2, "mean", smoothing),
            None,
            [x, t, w, smoothing],
        ),
        (
            "xent-grad-none",
            lambda: fs.cross_entropy_with_grad(
                x32, t, reduction="none", grad_output=g, return_lse=True
            ),
            None,
            [x32, t, g],
        ),
        (
            "xent-inplace",
            lambda: fs.cross_entropy_with_grad(scratch, t, inplace=True),
            None,
            [scratch, t],
        ),
        ("xent-prob-out", lambda: fs.cross_entropy_with_grad(x, q, out=out), None, [x, q, out]),
        ("xent-kdim", lambda: fs.cross_entropy(x3, t3, softcap=3.0, z_loss=1e-3), None, [x3, t3]),
        (
            "xent-strided",
            lambda: fs.cross_entropy_with_grad(xf, tf, label_smoothing=0.2),
            None,
            [xf, tf],
        ),
        (
            "backward",
            lambda: fs.cross_entropy_backward(x, t, lse, w, reduction="none", grad_output=g),
            None,
            [x, t, lse, w, g],
        ),
        (
            "threads",
            lambda: fs.cross_entropy_with_grad(medium, tm, n_threads=2),
            None,
            [medium, tm],
        ),
        # calls that raise
        ("bad-label", lambda: fs.cross_entropy(x, t_bad), IndexError, [x, t_bad]),
        ("bad-weight", lambda: fs.cross_entropy(x, t, w_bad), ValueError, [x, t, w_bad]),
        (
            "bad-out",
            lambda: fs.cross_entropy_with_grad(x, t, out=out_bad),
            ValueError,
            [x, t, out_bad],
        ),
        (
            "bad-inplace",
            lambda: fs.cross_entropy_with_grad(read_only, t, inplace=True),
            ValueError,
            [read_only, t],
        ),
        ("bad-dtype", lambda: fs.cross_entropy(x_obj, t), TypeError, [x_obj, t]),
        ("bad-target", lambda: fs.cross_entropy(x, q_bad), ValueError, [x, q_bad]),
        ("bad-lse", lambda: fs.cross_entropy_backward(x, t, lse_bad), ValueError, [x, t, lse_bad]),
        ("bad-smoothing", lambda: fs.cross_entropy(x, t, label_smoothing=2.0), ValueError, [x, t]),
        (
            "bad-grad-output",
            lambda: fs.cross_entropy_with_grad(x, t, reduction="none", grad_output=lse_bad),
            ValueError,
            [x, t, lse_bad],
        ),
        ("bad-axis", lambda: fs.softmax(x, axis=5), ValueError, [x]),
        ("bad-threads", lambda: fs.log_softmax(x, n_threads=0), ValueError, [x]),
        ("bad-special-out", lambda: fs.softmax(x, axis=1, out=out_f32), TypeError, [x, out_f32]),
        ("bad-string", lambda: fs.logsumexp(np.array(["a", "b"])), ValueError, []),
    ]


# Calls made of each recipe, relative to the others: a call on two OpenMP threads
# waits for a second core, which a loaded machine may not give it for a while.
SHARE = {"threads": 0.05}


def run(calls, n_calls):
    """About n_calls calls, going round the recipes; each raises what it should."""
    per = n_calls / sum(SHARE.get(name, 1.0) for name, _, _, _ in calls)
    done = 0
    for name, fn, exc, _ in calls:
        count = max(1, round(per * SHARE.get(name, 1.0)))
        done += count
        if exc is None:
            for _ in range(count):
                fn()
        else:
            for _ in range(count):
                try:
                    fn()
                except exc:
                    pass
                else:
                    raise AssertionError("the call did not raise")
    return done


def rss_bytes():
    try:
        import psutil

        return psutil.Process().memory_info().rss
    except ImportError:
        pass
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        pytest.skip("no way to read the resident memory here")


def refcounts(calls):
    return {
        (name, i): sys.getrefcount(obj) for name, _, _, objs in calls for i, obj in enumerate(objs)
    }


def test_recipes_behave():
    """Each recipe succeeds or raises as labelled (once, so that failures read well)."""
    for _name, fn, exc, _ in recipes():
        if exc is None:
            fn()
        else:
            with pytest.raises(exc):
                fn()


def test_no_growth_over_100k_calls():
    calls = recipes()
    run(calls, 10_000)  # warm-up: caches, arenas and lazily created objects settle
    gc.collect()
    counts = refcounts(calls)
    dtype_counts = [sys.getrefcount(np.dtype(d)) for d in (np.float32, np.float64, np.int64)]
    rss0 = rss_bytes()
    n = run(calls, N_CALLS)
    gc.collect()
    growth = rss_bytes() - rss0
    assert n >= N_CALLS - len(calls)  # every recipe is called, 100,000 calls in all
    assert refcounts(calls) == counts, "an argument's reference count changed"
    after = [sys.getrefcount(np.dtype(d)) for d in (np.float32, np.float64, np.int64)]
    assert all(abs(a - b) < 50 for a, b in zip(after, dtype_counts)), (dtype_counts, after)
    if not UNDER_SANITIZER:  # ASan's quarantine holds freed memory for a while
        # 2 MiB over 100,000 calls: less than 21 bytes a call, well below any object.
        assert growth < 2 * 2**20, f"resident memory grew by {growth / 2**20:.1f} MiB"


@pytest.mark.parametrize("kind", ["successful", "raising"])
def test_no_traced_allocation_left(kind):
    """tracemalloc sees Python objects and NumPy's buffers: nothing is left over."""
    calls = [c for c in recipes() if (c[2] is None) == (kind == "successful")]
    run(calls, 2_000)
    gc.collect()
    tracemalloc.start()
    try:
        run(calls, 2_000)
        gc.collect()
        before, _ = tracemalloc.get_traced_memory()
        run(calls, 20_000)
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert after - before < 64 * 1024, f"{after - before} bytes left after 20,000 calls"


def test_refcounts_of_results_and_exceptions():
    """What is returned is owned by the caller alone; an exception keeps no array alive."""
    x = np.random.default_rng(1).standard_normal((4, 3))
    t = np.array([0, 1, 2, 0])
    loss, grad, lse = fs.cross_entropy_with_grad(x, t, reduction="none", return_lse=True)
    y = fs.softmax(x, axis=1)
    m = fs.logsumexp(x, axis=1)
    # Each is held by its name and by getrefcount's argument, nothing else.
    assert (
        sys.getrefcount(loss),
        sys.getrefcount(grad),
        sys.getrefcount(lse),
        sys.getrefcount(y),
        sys.getrefcount(m),
    ) == (2, 2, 2, 2, 2)
    before = sys.getrefcount(x)
    try:
        fs.cross_entropy(x, np.array([0, 1, 7, 0]))
    except IndexError as exc:
        error = exc
    del error
    gc.collect()
    assert sys.getrefcount(x) == before
