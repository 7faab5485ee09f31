"""How many OpenMP threads a call uses."""

import numbers
import os

from fastsoftmax import _kernels

# Below this many elements per thread, waking another thread costs more than
# it saves (the measurement is in csrc/fastsoftmax.h, with the other thresholds).
GRAIN = _kernels.GRAIN


def check_n_threads(n_threads):
    """Validate the public ``n_threads`` argument; None means OpenMP's default."""
    if n_threads is None:
        return None
    if isinstance(n_threads, bool) or not isinstance(n_threads, numbers.Integral):
        raise TypeError(f"n_threads must be None or a positive int, got {n_threads!r}")
    if n_threads < 1:
        raise ValueError(f"n_threads must be None or a positive int, got {n_threads}")
    return int(n_threads)


# GNU OpenMP does not survive fork() once it has started its thread pool: the
# child's first parallel region waits forever for threads that were not
# copied. So a child forked after this process ran a parallel kernel runs
# every kernel on one thread (no parallel region at all).
_started_threads = False
_forked_after_threads = False


def _after_fork_in_child():
    global _forked_after_threads
    _forked_after_threads = _started_threads


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def threads_for(n_threads, work):
    """Threads to run ``work`` elements with: never more than the work can use.

    ``n_threads`` has been through :func:`check_n_threads`. None follows
    OpenMP's default, which OMP_NUM_THREADS and threadpoolctl set.
    """
    global _started_threads
    if _forked_after_threads or work < 2 * GRAIN:  # (one thread whatever is wanted)
        return 1
    wanted = _kernels.max_threads() if n_threads is None else n_threads
    n = max(1, min(wanted, work // GRAIN))
    if n > 1:
        _started_threads = True
    return n
