"""fastsoftmax: fused softmax and cross-entropy kernels for NumPy, in C with OpenMP."""

__version__ = "0.1.0"

from fastsoftmax._config import build_info, show_config
from fastsoftmax._kernels import openmp_enabled
from fastsoftmax._special import log_softmax, logsumexp, softmax
from fastsoftmax._xent import cross_entropy, cross_entropy_backward, cross_entropy_with_grad

__all__ = [
    "__version__",
    "build_info",
    "cross_entropy",
    "cross_entropy_backward",
    "cross_entropy_with_grad",
    "log_softmax",
    "logsumexp",
    "openmp_enabled",
    "show_config",
    "softmax",
]
