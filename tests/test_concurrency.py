"""Threads and processes: the GIL, concurrent callers, n_threads, fork.

- The GIL is released while a kernel runs: another Python thread keeps
  making progress during a long call.
- Many Python threads calling at once get exactly what serial calls give.
- Results never depend on n_threads (bit for bit).
- A child forked by multiprocessing can call the kernels without hanging
  (each scenario runs in a fresh interpreter, under a timeout).
"""

import os
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import fastsoftmax as fs
from fastsoftmax import _threads

# ------------------------------------------------------------ the GIL


def _long_calls():
    """Calls of 10 ms or more on one thread, one per kernel family."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1500, 4000))
    # the cross-entropy's rows: softcapped float32 rows run at vector speed,
    # so they need six times the elements of x to last as long
    x32 = rng.standard_normal((3000, 4000), dtype=np.float32)
    t = rng.integers(0, 4000, 3000)
    q = rng.random((3000, 4000), dtype=np.float32)
    lse = fs.cross_entropy_with_grad(x32, t, reduction="none", softcap=10.0, return_lse=True)[2]
    one = dict(n_threads=1)
    return {
        "softmax": lambda: fs.softmax(x, axis=1, **one),
        "softmax-axis0": lambda: fs.softmax(x, axis=0, **one),
        "log_softmax": lambda: fs.log_softmax(x, axis=1, **one),
        "logsumexp": lambda: fs.logsumexp(x, axis=1, **one),
        "cross_entropy": lambda: fs.cross_entropy(x32, t, softcap=10.0, **one),
        "cross_entropy_with_grad": lambda: fs.cross_entropy_with_grad(x32, t, softcap=10.0, **one),
        "probabilities": lambda: fs.cross_entropy_with_grad(x32, q, softcap=10.0, **one),
        "cross_entropy_backward": lambda: fs.cross_entropy_backward(
            x32, t, lse, reduction="none", softcap=10.0, **one
        ),
    }


LONG_CALLS = None


def long_call(name):
    global LONG_CALLS
    if LONG_CALLS is None:
        LONG_CALLS = _long_calls()
    return LONG_CALLS[name]


@pytest.mark.parametrize(
    "name",
    [
        "softmax",
        "softmax-axis0",
        "log_softmax",
        "logsumexp",
        "cross_entropy",
        "cross_entropy_with_grad",
        "probabilities",
        "cross_entropy_backward",
    ],
)
def test_gil_released_during_kernel(name):
    """This thread counts while another runs a long call: if the call held the GIL, the
    count would stall for the whole kernel."""
    fn = long_call(name)
    fn()  # warm up: page in the arrays, start nothing lazily during the measurement
    spans = []
    done = threading.Event()

    def worker():
        for _ in range(3):
            t0 = time.perf_counter()
            fn()
            spans.append((t0, time.perf_counter()))
        done.set()

    ticks = []
    thread = threading.Thread(target=worker)
    thread.start()
    while not done.is_set():
        ticks.append(time.perf_counter())
    thread.join()
    ticks = np.array(ticks)
    fractions = []
    for t0, t1 in spans:
        inside = ticks[(ticks > t0) & (ticks < t1)]
        gaps = np.diff(np.concatenate([[t0], inside, [t1]]))
        fractions.append(gaps.max() / (t1 - t0))
    durations = [t1 - t0 for t0, t1 in spans]
    assert min(durations) > 0.005, f"calls too short to tell: {durations}"
    # Released: the counting thread stalls only while the call runs Python code.
    assert min(fractions) < 0.5, (
        f"the counting thread stalled for {fractions} of each call: GIL held?"
    )


# ------------------------------------------- many Python threads at once


def _jobs():
    """(name, fn, serial result): one call each, arguments shared where read-only."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 700)).astype(np.float32)
    x[3, 5] = np.nan
    x[7, :] = -np.inf
    x64 = rng.standard_normal((200, 12, 9))
    t = rng.integers(0, 700, 300)
    t[::17] = -100
    t3 = rng.integers(0, 12, (200, 9))
    w = rng.random(700) + 0.5
    q = rng.random((300, 700)).astype(np.float32)
    small = rng.standard_normal((4000, 10))
    ts = rng.integers(0, 10, 4000)
    lse = fs.cross_entropy_with_grad(x, t, w, reduction="none", return_lse=True)[2]
    kw = dict(label_smoothing=0.1, z_loss=1e-3)
    x16 = x.astype(np.float16)  # 2-byte rows: each call's own scratch, a row per thread
    calls = {
        "softmax-float16": lambda n: fs.softmax(x16, axis=1, n_threads=n),
        "xent-grad-float16": lambda n: fs.cross_entropy_with_grad(x16, t, w, n_threads=n, **kw),
        "xent-small-float16": lambda n: fs.cross_entropy_with_grad(
            small.astype(np.float16), ts, n_threads=n
        ),
        "softmax": lambda n: fs.softmax(x, axis=1, n_threads=n),
        "softmax-3d": lambda n: fs.softmax(x64, axis=1, n_threads=n),
        "log_softmax-axis0": lambda n: fs.log_softmax(x, axis=0, n_threads=n),
        "logsumexp": lambda n: fs.logsumexp(x64, axis=(0, 2), n_threads=n),
        "logsumexp-small": lambda n: fs.logsumexp(small, axis=1, n_threads=n),
        "xent": lambda n: fs.cross_entropy(x, t, w, reduction="none", n_threads=n, **kw),
        "xent-grad": lambda n: fs.cross_entropy_with_grad(x, t, w, n_threads=n, **kw),
        "xent-small": lambda n: fs.cross_entropy_with_grad(small, ts, n_threads=n),
        "xent-3d": lambda n: fs.cross_entropy_with_grad(x64, t3, softcap=3.0, n_threads=n),
        "xent-prob": lambda n: fs.cross_entropy_with_grad(x, q, reduction="sum", n_threads=n),
        "xent-inplace": lambda n: fs.cross_entropy_with_grad(
            x.copy(), t, inplace=True, n_threads=n
        )[1],
        "xent-out": lambda n: fs.cross_entropy_with_grad(x, t, out=np.empty_like(x), n_threads=n)[
            1
        ],
        "backward": lambda n: fs.cross_entropy_backward(
            x, t, lse, w, reduction="none", n_threads=n
        ),
    }
    return [(name, fn, fn(1)) for name, fn in calls.items()]


def same(a, b):
    if isinstance(a, tuple):
        return len(a) == len(b) and all(same(u, v) for u, v in zip(a, b))
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=True)


@pytest.mark.parametrize(
    "n_threads", [1, None, 2], ids=["serial-kernels", "default", "two-threads-each"]
)
def test_many_python_threads(n_threads):
    jobs = _jobs()
    n_callers, rounds = 8, 4
    barrier = threading.Barrier(n_callers)
    failures, errors = [], []

    def caller(seed):
        order = np.random.default_rng(seed)
        try:
            barrier.wait()
            for _ in range(rounds):
                for i in order.permutation(len(jobs)):
                    name, fn, expected = jobs[i]
                    if not same(fn(n_threads), expected):
                        failures.append((seed, name))
        except Exception as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=caller, args=(seed,)) for seed in range(n_callers)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=300)
    assert not any(th.is_alive() for th in threads), "a caller did not finish"
    assert not errors, errors
    assert not failures, f"results differ from serial calls: {sorted(set(failures))}"


def test_concurrent_calls_leave_shared_inputs_alone():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((500, 300))
    t = rng.integers(0, 300, 500)
    x.setflags(write=False)
    keep = x.copy()
    outs = [np.empty_like(x) for _ in range(6)]

    def run(i):
        for _ in range(5):
            fs.cross_entropy_with_grad(x, t, out=outs[i], n_threads=2)
            fs.softmax(x, axis=1, out=outs[i], n_threads=2)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(outs))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    np.testing.assert_array_equal(x, keep)
    for out in outs:
        np.testing.assert_array_equal(out, outs[0])


# ----------------------------------------------------------- n_threads


def _threaded_cases():
    rng = np.random.default_rng(3)
    big = rng.standard_normal((2048, 160))  # 327,680 elements: up to 10 threads
    big[5, 7] = np.nan
    big[9, :] = -np.inf
    few = rng.standard_normal((40000, 12)).astype(np.float32)  # tiles across rows
    kdim = rng.standard_normal((64, 50, 120))  # class axis not last
    fort = np.asfortranarray(rng.standard_normal((1500, 300)).astype(np.float32))
    strided = rng.standard_normal((4000, 400))[::2, ::2]
    t_big = rng.integers(0, 160, 2048)
    t_big[::13] = -100
    t_few = rng.integers(0, 12, 40000).astype(np.int32)
    t_kdim = rng.integers(0, 50, (64, 120)).astype(np.uint8)
    t_fort = rng.integers(0, 300, 1500)
    t_str = rng.integers(0, 200, 2000)
    q = rng.random(kdim.shape)
    w = rng.random(160) + 0.1
    opts = dict(label_smoothing=0.1, z_loss=1e-3)
    lse_big = fs.cross_entropy_with_grad(big, t_big, w, reduction="none", return_lse=True)[2]
    lse_q = fs.cross_entropy_with_grad(kdim, q, reduction="none", return_lse=True)[2]
    return {
        "softmax-few": lambda n: fs.softmax(few, axis=1, n_threads=n),
        "softmax-kdim": lambda n: fs.softmax(kdim, axis=1, n_threads=n),
        "log_softmax-fortran": lambda n: fs.log_softmax(fort, axis=1, n_threads=n),
        "log_softmax-strided": lambda n: fs.log_softmax(strided, axis=0, n_threads=n),
        "logsumexp-few": lambda n: fs.logsumexp(few, axis=1, n_threads=n),
        "logsumexp-kdim": lambda n: fs.logsumexp(kdim, axis=(0, 2), keepdims=True, n_threads=n),
        "xent-big": lambda n: fs.cross_entropy(
            big, t_big, w, reduction="none", n_threads=n, **opts
        ),
        "xent-big-mean": lambda n: fs.cross_entropy(big, t_big, w, n_threads=n, **opts),
        "xent-grad-big": lambda n: fs.cross_entropy_with_grad(
            big, t_big, w, n_threads=n, return_lse=True, **opts
        ),
        "xent-grad-few": lambda n: fs.cross_entropy_with_grad(
            few, t_few, reduction="sum", n_threads=n
        ),
        "xent-grad-kdim": lambda n: fs.cross_entropy_with_grad(
            kdim, t_kdim, softcap=4.0, n_threads=n, **opts
        ),
        "xent-grad-fortran": lambda n: fs.cross_entropy_with_grad(fort, t_fort, n_threads=n),
        "xent-grad-strided": lambda n: fs.cross_entropy_with_grad(strided, t_str, n_threads=n),
        "xent-prob": lambda n: fs.cross_entropy_with_grad(
            kdim, q, reduction="none", n_threads=n, **opts
        ),
        "xent-inplace": lambda n: fs.cross_entropy_with_grad(
            big.copy(), t_big, inplace=True, n_threads=n
        )[1],
        "backward-index": lambda n: fs.cross_entropy_backward(
            big, t_big, lse_big, w, n_threads=n, **opts
        ),
        "backward-prob": lambda n: fs.cross_entropy_backward(
            kdim, q, lse_q, reduction="none", n_threads=n
        ),
    }


THREADED = None


@pytest.mark.parametrize("name", list(_threaded_cases()))
def test_results_independent_of_n_threads(name):
    global THREADED
    if THREADED is None:
        THREADED = _threaded_cases()
    fn = THREADED[name]
    one = fn(1)
    for n in (2, 3, 4, 7, None):
        assert same(fn(n), one), f"n_threads={n} differs from n_threads=1"


def test_cases_are_big_enough_to_split():
    """Otherwise the test above would run one thread whatever n_threads says."""
    assert _threads.threads_for(4, 2048 * 160) == 4
    assert _threads.threads_for(4, 40000 * 12) == 4
    assert _threads.threads_for(2, 1000 * 300) == 2


# ------------------------------------------------------------------ fork

FORK_SCRIPT = textwrap.dedent(
    """
    import multiprocessing as mp
    import sys

    import numpy as np

    import fastsoftmax as fs

    parent_threads, child_threads, timeout = {parent!r}, {child!r}, {timeout!r}


    def work(n_threads):
        x = np.random.default_rng(0).standard_normal((512, 1000))
        t = np.arange(512) % 1000
        y = fs.softmax(x, axis=1, n_threads=n_threads)
        loss, grad = fs.cross_entropy_with_grad(x, t, n_threads=n_threads)
        return float(y.sum()), float(loss), float(np.abs(grad).sum())


    def child(conn):
        conn.send(work(child_threads))
        conn.close()


    if __name__ == "__main__":
        expected = work(parent_threads)  # the parent runs its kernels first
        ctx = mp.get_context("fork")
        parent_end, child_end = ctx.Pipe(duplex=False)
        p = ctx.Process(target=child, args=(child_end,))
        p.start()
        p.join(timeout)
        if p.is_alive():
            p.kill()
            p.join()
            print("HANG")
            sys.exit(3)
        got = parent_end.recv() if parent_end.poll(1) else None
        print("OK" if p.exitcode == 0 and got is not None and np.allclose(got, expected)
              else f"FAILED exitcode={{p.exitcode}} got={{got}} expected={{expected}}")
    """
)


def run_fork_scenario(parent, child, timeout=20):
    """Run FORK_SCRIPT in a fresh interpreter; its output ('OK', 'HANG' or 'FAILED ...')."""
    if not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")
    script = FORK_SCRIPT.format(parent=parent, child=child, timeout=timeout)
    root = os.path.dirname(os.path.dirname(os.path.abspath(fs.__file__)))
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(
            [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        ),
    )
    env.pop("OMP_NUM_THREADS", None)
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout + 60,
        cwd=root,  # the child imports the package under test, not a checkout's source
    )
    out = proc.stdout.strip().splitlines()
    assert out, f"no output; stderr:\n{proc.stderr}"
    return out[-1]


def needs_threads():
    if not fs.openmp_enabled():
        pytest.skip("built without OpenMP: no thread pool to inherit")


@pytest.mark.parametrize("child", [1, 2, None], ids=["child-1", "child-2", "child-default"])
def test_fork_after_serial_parent(child):
    """The parent never started an OpenMP team: the child may use any number of threads."""
    assert run_fork_scenario(parent=1, child=child) == "OK"


def test_fork_after_parallel_parent_child_serial():
    """The parent ran parallel kernels; the child calls them on one thread."""
    needs_threads()
    assert run_fork_scenario(parent=2, child=1) == "OK"


@pytest.mark.parametrize("child", [2, None], ids=["child-2", "child-default"])
def test_fork_after_parallel_parent(child):
    needs_threads()
    if fs.build_info()["default_threads"] < 2 and child is None:
        pytest.skip("one thread by default: no parallel region in the child")
    assert run_fork_scenario(parent=2, child=child) == "OK"
