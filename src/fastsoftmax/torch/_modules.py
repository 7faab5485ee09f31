"""CrossEntropyLoss, Softmax and LogSoftmax: torch.nn's modules on fastsoftmax.

Each is a subclass of torch's own module, so ``isinstance`` checks, the
state_dict (the ``weight`` buffer), ``repr`` and pickling stay as they are;
only ``forward`` changes.
"""

import torch

from fastsoftmax.torch import _functional

__all__ = ["CrossEntropyLoss", "LinearCrossEntropyLoss", "LogSoftmax", "Softmax"]


class CrossEntropyLoss(torch.nn.CrossEntropyLoss):
    """``torch.nn.CrossEntropyLoss`` computed by :func:`fastsoftmax.torch.cross_entropy`.

    Parameters
    ----------
    weight : Tensor of shape (n_classes,), optional
        A rescaling weight for each class (a buffer, as in torch).
    size_average : bool, optional
        Deprecated in torch: use ``reduction``.
    ignore_index : int, default=-100
        A class index whose targets add nothing to the loss or the gradient.
    reduce : bool, optional
        Deprecated in torch: use ``reduction``.
    reduction : {'mean', 'sum', 'none'}, default='mean'
        How the per-sample losses are reduced.
    label_smoothing : float in [0, 1], default=0.0
        Mixes the target with the uniform distribution over classes.
    z_loss : float >= 0, default=0.0
        Adds ``z_loss * lse**2`` to each (not ignored) sample's loss.
    softcap : float > 0, optional
        Replaces the logits by ``softcap * tanh(input / softcap)`` first.
    """

    def __init__(
        self,
        weight: torch.Tensor | None = None,
        size_average: bool | None = None,
        ignore_index: int = -100,
        reduce: bool | None = None,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
        *,
        z_loss: float = 0.0,
        softcap: float | None = None,
    ) -> None:
        super().__init__(weight, size_average, ignore_index, reduce, reduction, label_smoothing)
        self.z_loss = z_loss
        self.softcap = softcap

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss of ``input`` (logits) against ``target``.

        Parameters
        ----------
        input : Tensor of shape (n_classes,), (n_samples, n_classes) or (n_samples, n_classes, ...)
            Unnormalised scores.
        target : Tensor
            Class indices or class probabilities.

        Returns
        -------
        Tensor
            As :func:`fastsoftmax.torch.cross_entropy`.
        """
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

    def extra_repr(self) -> str:
        """The options beyond torch's, for ``repr``.

        Returns
        -------
        str
            ``z_loss`` and ``softcap`` when set.
        """
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
    """``torch.nn.Softmax`` computed by :func:`fastsoftmax.torch.softmax`.

    Parameters
    ----------
    dim : int, optional
        The dimension the probabilities sum to 1 along.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """Softmax of ``input`` along ``self.dim``.

        Parameters
        ----------
        input : Tensor
            The scores.

        Returns
        -------
        Tensor
            Of the input's shape.
        """
        return _functional.softmax(input, self.dim)


class LogSoftmax(torch.nn.LogSoftmax):
    """``torch.nn.LogSoftmax`` computed by :func:`fastsoftmax.torch.log_softmax`.

    Parameters
    ----------
    dim : int, optional
        The dimension normalised along.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """Log-softmax of ``input`` along ``self.dim``.

        Parameters
        ----------
        input : Tensor
            The scores.

        Returns
        -------
        Tensor
            Of the input's shape.
        """
        return _functional.log_softmax(input, self.dim)


# torch 2.13 has LinearCrossEntropyLoss; older releases get the module alone.
_TorchLinearCrossEntropyLoss = getattr(torch.nn, "LinearCrossEntropyLoss", torch.nn.Module)


class LinearCrossEntropyLoss(_TorchLinearCrossEntropyLoss):
    """``torch.nn.LinearCrossEntropyLoss`` by :func:`fastsoftmax.torch.linear_cross_entropy`.

    A subclass of torch's (torch 2.13 has it): the same constructor, state_dict
    (``linear.weight``, ``linear.bias``) and pickling; ``forward`` runs the
    fused blocks for ``out_features=()`` and torch's own otherwise.

    Parameters
    ----------
    in_features : int
        Width of the features.
    num_classes : int
        Number of classes (the linear layer's outputs).
    out_features : tuple of int, default=()
        torch's K-dimensional outputs (computed by torch's own forward).
    bias : bool, default=False
        Give the linear layer a bias.
    device : torch.device, optional
        Where the parameters live.
    dtype : torch.dtype, optional
        The parameters' dtype.
    reduction : {'mean', 'sum', 'none'}, default='mean'
        How the per-sample losses are reduced.
    weight : Tensor of shape (num_classes,), optional
        A rescaling weight for each class.
    ignore_index : int, optional
        A class index whose targets add nothing; None ignores none.
    label_smoothing : float in [0, 1], default=0.0
        Mixes the target with the uniform distribution over classes.
    options : torch.nn.LinearCrossEntropyOptions, optional
        torch's chunking options (computed by torch's own forward).
    """

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss of the linear layer's logits of ``input`` against ``target``.

        Parameters
        ----------
        input : Tensor of shape (n_samples, in_features)
            The features.
        target : Tensor of shape (n_samples,)
            Class indices.

        Returns
        -------
        Tensor
            As :func:`fastsoftmax.torch.linear_cross_entropy`.
        """
        if self.out_features != () or self.options is not None:
            return super().forward(input, target)
        return _functional.linear_cross_entropy(
            input,
            self.linear.weight,
            target,
            linear_bias=self.linear.bias,
            weight=self.weight,
            reduction=self.reduction,
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
        )
