"""How many OpenMP threads a call uses."""

import numbers

from fastsoftmax import _kernels

# Below this many elements per thread, waking another thread costs more than
# it saves: a row of 32k exps takes about as long as a thread hand-off.
GRAIN = 32768


def check_n_threads(n_threads):
    """Validate the public ``n_threads`` argument; None means OpenMP's default."""
    if n_threads is None:
        return None
    if isinstance(n_threads, bool) or not isinstance(n_threads, numbers.Integral):
        raise TypeError(f"n_threads must be None or a positive int, got {n_threads!r}")
    if n_threads < 1:
        raise ValueError(f"n_threads must be None or a positive int, got {n_threads}")
    return int(n_threads)


def threads_for(n_threads, work):
    """Threads to run ``work`` elements with: never more than the work can use.

    ``n_threads`` has been through :func:`check_n_threads`. None follows
    OpenMP's default, which OMP_NUM_THREADS and threadpoolctl set.
    """
    wanted = _kernels.max_threads() if n_threads is None else n_threads
    return max(1, min(wanted, work // GRAIN))
