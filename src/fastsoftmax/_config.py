"""What this build of fastsoftmax is: version, OpenMP, threads, compiler, SIMD."""

import platform
from typing import Any

import numpy as np

from fastsoftmax import _runtime

_kernels = _runtime.kernels  # loaded under the wait policy


def build_info() -> dict[str, Any]:
    """Facts about this build and the machine it runs on.

    Returns
    -------
    info : dict
        ``version``; ``openmp`` (bool, compiled with OpenMP); ``default_threads``
        (the team size a call with ``n_threads=None`` uses: ``OMP_NUM_THREADS``
        or a threadpoolctl limit, else the CPU count); ``openmp_wait_policy``
        (how long idle threads spin before they sleep, and who chose it);
        ``openmp_library`` (the OpenMP runtime file loaded, where the platform
        tells); ``compiler``; ``simd`` (the instruction set the kernels were
        compiled for); ``two_byte`` (how float16 and bfloat16 are computed);
        ``machine``, ``python`` and ``numpy`` versions; the versions of
        ``scipy``, ``scikit-learn``, ``threadpoolctl``, ``torch`` and
        ``ml_dtypes`` (NumPy's bfloat16), or ``'not installed'``.
    """
    from fastsoftmax import __version__

    return {
        "version": __version__,
        "openmp": _kernels.openmp_enabled(),
        "default_threads": _kernels.max_threads(),
        "openmp_wait_policy": _runtime.wait_policy,
        "openmp_library": _runtime.library,
        "compiler": _kernels.compiler(),
        "simd": _kernels.simd(),
        "two_byte": "float16, bfloat16: computed in float32, converted by " + _kernels.half_simd(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        **{name: _version(name) for name in OPTIONAL},
    }


# Libraries fastsoftmax works with when they are installed; their versions are
# read from the installed metadata, without importing them.
OPTIONAL = ("scipy", "scikit-learn", "threadpoolctl", "torch", "ml_dtypes")


def _version(name):
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def show_config() -> None:
    """Print :func:`build_info`, one ``key: value`` a line."""
    info = build_info()
    width = max(len(k) for k in info)
    for key, value in info.items():
        print(f"{key:<{width}} : {value}")
