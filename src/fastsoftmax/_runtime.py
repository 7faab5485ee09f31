"""Loads the compiled kernels with fastsoftmax's OpenMP wait policy.

After a parallel region, GNU OpenMP's idle threads spin before they sleep:
300,000 rounds by default, milliseconds. Between calls that is time taken
from whatever runs next. On two cores it made a NumPy matrix product
alternating with fastsoftmax up to 5 times slower, and fastsoftmax up to 7
times; and beside one busy process a 2-thread call was 1.7 to 7 times slower
than a 1-thread call, because the scheduler does not let a thread that has
spun its share preempt the other process when there is work again (a
sleeping thread, woken, runs at once).

So fastsoftmax's runtime spins SPIN_COUNT rounds (tens of microseconds):
long enough for back-to-back calls to find their threads awake, short
enough that they sleep before the next matrix product (the README has the
measurements). libgomp reads GOMP_SPINCOUNT once, when it is loaded, so the
variable is set only while the extension (and with it a libgomp not yet in
the process) loads, and restored at once: a libgomp already loaded by
another package, and any loaded later, keep their own settings. A policy
the user set (GOMP_SPINCOUNT or OMP_WAIT_POLICY) is left alone.

Wheels carry a libgomp of their own, so there the policy is always
fastsoftmax's alone. A build from source links the system's libgomp, which
other packages may load too (PyTorch's CPU wheel does): imported first,
fastsoftmax sets the spin count of that shared runtime; imported after
them, it keeps theirs (build_info() says which).
"""

import importlib
import os

# Rounds of libgomp's spin loop: measured on 2 cores with bench --mixed (see the README).
SPIN_COUNT = 3000
USER_VARIABLES = ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")

# What load() did, for show_config(): the policy of fastsoftmax's runtime,
# and the file of the libgomp it uses (where the process's maps tell).
wait_policy = "not loaded"
library = "unknown"


def load():
    """Import ``fastsoftmax._kernels`` under the wait policy; returns the module."""
    global wait_policy, library
    before = _loaded_libgomps()
    user = [name for name in USER_VARIABLES if name in os.environ]
    if not user:
        os.environ["GOMP_SPINCOUNT"] = str(SPIN_COUNT)
    try:
        kernels = importlib.import_module("fastsoftmax._kernels")
    finally:
        if not user:
            del os.environ["GOMP_SPINCOUNT"]
    after = _loaded_libgomps()
    if not kernels.openmp_enabled():
        library = "none"
    elif after:  # the libgomp the import loaded, else the one already there
        library = ", ".join(sorted((after - (before or set())) or after))
    if user:
        wait_policy = "as set by " + ", ".join(f"{n}={os.environ[n]}" for n in user)
    elif not kernels.openmp_enabled():
        wait_policy = "none: a serial build"
    elif before and after is not None and after <= before:
        wait_policy = "that of the libgomp another package loaded first"
    else:
        wait_policy = f"GOMP_SPINCOUNT={SPIN_COUNT} (fastsoftmax's default)"
    return kernels


def _loaded_libgomps():
    """Paths of the libgomp copies in this process (None where it cannot tell)."""
    try:
        with open("/proc/self/maps") as maps:
            return {line.split()[-1] for line in maps if "libgomp" in line}
    except OSError:
        return None


kernels = load()
