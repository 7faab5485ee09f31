"""patch() and unpatch(): torch.nn.functional.cross_entropy routed to fastsoftmax.

For code a user does not own: ``torch.nn.CrossEntropyLoss`` calls
``torch.nn.functional.cross_entropy`` at each forward, so it follows too.
Code that imported the function itself (``from torch.nn.functional import
cross_entropy``) before the patch keeps torch's.
"""

import torch.nn.functional as F
from torch.nn import _reduction

from fastsoftmax.torch import _functional

__all__ = ["patch", "unpatch"]

_torch_cross_entropy = _functional.torch_cross_entropy


def _routed_cross_entropy(
    input,
    target,
    weight=None,
    size_average=None,
    ignore_index=-100,
    reduce=None,
    reduction="mean",
    label_smoothing=0.0,
):
    # torch's own signature and legacy arguments; fastsoftmax.torch's
    # cross_entropy sends what is not a CPU tensor back to torch's.
    if size_average is not None or reduce is not None:
        reduction = _reduction.legacy_get_string(size_average, reduce)
    return _functional.cross_entropy(
        input,
        target,
        weight,
        ignore_index=ignore_index,
        reduction=reduction,
        label_smoothing=label_smoothing,
    )


_routed_cross_entropy.__doc__ = _torch_cross_entropy.__doc__


class _Patched:
    """What patch() returns: ``with fastsoftmax.torch.patch():`` unpatches on exit
    (unless it was patched before)."""

    def __init__(self, was_patched):
        self._was_patched = was_patched

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if not self._was_patched:
            unpatch()
        return False


def patch() -> "_Patched":
    """Route ``torch.nn.functional.cross_entropy`` (and with it
    ``torch.nn.CrossEntropyLoss``) of CPU tensors to fastsoftmax.

    Tensors on other devices still reach torch's own.

    Returns
    -------
    context manager
        ``with fastsoftmax.torch.patch(): ...`` restores torch's on exit
        (unless it was patched before); called alone, the patch lasts until
        :func:`unpatch`.
    """
    was_patched = patched()
    F.cross_entropy = _routed_cross_entropy
    return _Patched(was_patched)


def unpatch() -> None:
    """Restore torch's own ``torch.nn.functional.cross_entropy``."""
    F.cross_entropy = _torch_cross_entropy


def patched() -> bool:
    """Tell whether ``torch.nn.functional.cross_entropy`` is routed to fastsoftmax.

    Returns
    -------
    bool
        True between :func:`patch` and :func:`unpatch`.
    """
    return F.cross_entropy is _routed_cross_entropy
