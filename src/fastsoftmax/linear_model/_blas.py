"""scipy's own BLAS, kept to one thread while L-BFGS-B runs."""

import contextlib
import functools
import os


@functools.lru_cache(maxsize=1)
def _scipy_own_blas():
    """threadpoolctl's handle on the BLAS libraries that scipy ships apart from NumPy's, or None.

    Wheels of NumPy and scipy each bundle an OpenBLAS. When both keep
    threads, the idle threads of one spin while the other computes; L-BFGS-B
    (scipy's BLAS, on vectors the size of the coefficients) alternating with
    the objective's products (NumPy's BLAS) then runs many times slower on a
    machine with few cores. scipy's BLAS gains nothing from threads here.
    """
    try:
        import scipy
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - scikit-learn requires threadpoolctl
        return None
    root = os.path.realpath(os.path.dirname(scipy.__file__))
    homes = tuple(os.path.join(d, "") for d in (root, root + ".libs"))
    blas_libs = ThreadpoolController().select(user_api="blas")
    own = [
        c.filepath
        for c in blas_libs.lib_controllers
        if os.path.realpath(c.filepath).startswith(homes)
    ]
    return blas_libs.select(filepath=own) if own else None


def one_scipy_blas_thread():
    own = _scipy_own_blas()
    return contextlib.nullcontext() if own is None else own.limit(limits=1)
