"""CrossEntropyLoss, Softmax and LogSoftmax: torch.nn's modules on fastsoftmax.

Each is a subclass of torch's own module, so ``isinstance`` checks, the
state_dict (the ``weight`` buffer), ``repr`` and pickling stay as they are;
only ``forward`` changes.
"""

import torch

from fastsoftmax.torch import _functional

__all__ = ["CrossEntropyLoss", "LogSoftmax", "Softmax"]


class CrossEntropyLoss(torch.nn.CrossEntropyLoss):
    """``torch.nn.CrossEntropyLoss`` computed by :func:`fastsoftmax.torch.cross_entropy`.

    Takes torch's arguments in torch's order (``size_average`` and ``reduce``
    are torch's deprecated spellings of ``reduction``), and two more:
    ``z_loss`` (weight of each sample's ``lse**2``) and ``softcap`` (logits
    replaced by ``softcap * tanh(input / softcap)``).
    """

    def __init__(
        self,
        weight=None,
        size_average=None,
        ignore_index=-100,
        reduce=None,
        reduction="mean",
        label_smoothing=0.0,
        *,
        z_loss=0.0,
        softcap=None,
    ):
        super().__init__(weight, size_average, ignore_index, reduce, reduction, label_smoothing)
        self.z_loss = z_loss
        self.softcap = softcap

    def forward(self, input, target):
        return _functional.cross_entropy(
            input,
            target,
            self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
            z_loss=self.z_loss,
            softcap=self.softcap,
        )

    def extra_repr(self):
        extra = [f"z_loss={self.z_loss}"] if self.z_loss else []
        if self.softcap is not None:
            extra.append(f"softcap={self.softcap}")
        return ", ".join(extra)

    def __setstate__(self, state):
        # Pickles of torch.nn.CrossEntropyLoss lack the two extra options.
        state.setdefault("z_loss", 0.0)
        state.setdefault("softcap", None)
        super().__setstate__(state)


class Softmax(torch.nn.Softmax):
    """``torch.nn.Softmax`` computed by :func:`fastsoftmax.torch.softmax`."""

    def forward(self, input):
        return _functional.softmax(input, self.dim)


class LogSoftmax(torch.nn.LogSoftmax):
    """``torch.nn.LogSoftmax`` computed by :func:`fastsoftmax.torch.log_softmax`."""

    def forward(self, input):
        return _functional.log_softmax(input, self.dim)
