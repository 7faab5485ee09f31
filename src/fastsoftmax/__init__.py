"""fastsoftmax: fused softmax and cross-entropy kernels for NumPy, in C with OpenMP."""

__version__ = "0.1.0"

# First: the kernels load under fastsoftmax's OpenMP wait policy (_runtime.py).
from fastsoftmax import _runtime  # noqa: F401
from fastsoftmax._config import build_info, show_config
from fastsoftmax._kernels import openmp_enabled
from fastsoftmax._linear_cross_entropy import (
    linear_cross_entropy,
    linear_cross_entropy_with_grad,
    linear_logsumexp,
)
from fastsoftmax._special import log_softmax, logsumexp, softmax
from fastsoftmax._xent import cross_entropy, cross_entropy_backward, cross_entropy_with_grad

__all__ = [
    "SoftmaxRegression",
    "__version__",
    "build_info",
    "cross_entropy",
    "cross_entropy_backward",
    "cross_entropy_with_grad",
    "linear_cross_entropy",
    "linear_cross_entropy_with_grad",
    "linear_logsumexp",
    "log_softmax",
    "logsumexp",
    "openmp_enabled",
    "show_config",
    "softmax",
]

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # what the lazy names below are, for type checkers
    from fastsoftmax import datasets  # noqa: F401
    from fastsoftmax.linear_model import SoftmaxRegression

# The estimator needs scikit-learn and scipy, and ``datasets`` scikit-learn:
# they load on first use, so that ``import fastsoftmax`` and the kernels
# import nothing but NumPy.
_LAZY = {
    "SoftmaxRegression": ("fastsoftmax.linear_model", "SoftmaxRegression"),
    "datasets": ("fastsoftmax.datasets", None),
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        module_name, attr = _LAZY[name]
        module = importlib.import_module(module_name)
        value = module if attr is None else getattr(module, attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fastsoftmax' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
