"""fastsoftmax's kernels as PyTorch operators on CPU tensors.

``fastsoftmax.torch.cross_entropy``, ``softmax``, ``log_softmax`` and
``logsumexp`` take torch's arguments and return what torch's return, with
autograd and torch.compile support (operators ``torch.ops.fastsoftmax.*``);
``CrossEntropyLoss``, ``Softmax`` and ``LogSoftmax`` are drop-ins for
torch.nn's modules; :func:`patch` routes ``torch.nn.functional.cross_entropy``
itself. CPU tensors share their memory with the kernels; tensors on other
devices go to torch's own operators unchanged.

Importing ``fastsoftmax`` never imports torch; importing this module does.
"""

try:
    import torch  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        "fastsoftmax.torch needs PyTorch: pip install torch (or fastsoftmax[torch])"
    ) from e

from fastsoftmax.torch._buffers import empty_cache
from fastsoftmax.torch._functional import (
    cross_entropy,
    linear_cross_entropy,
    log_softmax,
    logsumexp,
    softmax,
)
from fastsoftmax.torch._modules import CrossEntropyLoss, LinearCrossEntropyLoss, LogSoftmax, Softmax
from fastsoftmax.torch._patch import patch, patched, unpatch

__all__ = [
    "CrossEntropyLoss",
    "LinearCrossEntropyLoss",
    "LogSoftmax",
    "Softmax",
    "cross_entropy",
    "empty_cache",
    "linear_cross_entropy",
    "log_softmax",
    "logsumexp",
    "patch",
    "patched",
    "softmax",
    "unpatch",
]
