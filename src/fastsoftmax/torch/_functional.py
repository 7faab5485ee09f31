"""cross_entropy, softmax, log_softmax and logsumexp with torch's signatures.

CPU tensors go to the ``fastsoftmax::`` operators; tensors on other devices
(CUDA, MPS, ...), sparse tensors, tensor subclasses with their own
``__torch_function__`` and the tensors of torch.func transforms go to
torch's own operators unchanged.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import has_torch_function_variadic

from fastsoftmax.torch import _linear, _ops

__all__ = ["cross_entropy", "linear_cross_entropy", "log_softmax", "logsumexp", "softmax"]

_INDEX_DTYPES = (torch.int64, torch.uint8)
# torch's own, kept before patch() can replace F.cross_entropy.
torch_cross_entropy = F.cross_entropy
# torch's C++ cross-entropy, as F.cross_entropy calls it, and its reduction codes.
_torch_kernel = torch._C._nn.cross_entropy_loss
_REDUCTION_CODES = {"none": 0, "mean": 1, "sum": 2}
# False sends eager calls through the registered operator too (the tests run
# torch's samples both ways).
eager_function = True
# Calls with fewer elements than this go to torch's own kernels. In a training
# step, right after the model's matrix products, our Python path (the
# autograd.Function, NumPy views, checks) costs about 50 us more than torch's
# C++ dispatch, which outweighs the faster kernel below about 2**17 logits at
# 10 to 1000 classes (measured with bench/bench_torch.py's steps). Under
# torch.compile the shapes are known when tracing, so the choice is made then
# (torch's operators are fused by Inductor). The softmax family follows the
# same rule: torch's softmax and log_softmax kernels are as fast as ours at
# every size measured, its logsumexp slower from about 2**17 elements, and
# below that our overhead decides. The tests set it to 0.
torch_below = 2**17


def _ours(*tensors):
    """True when every tensor given is a plain strided CPU tensor, outside
    torch.func transforms (grad, vmap, jacrev, ...), which our operators do
    not support: torch's own compute there."""
    return not has_torch_function_variadic(*tensors) and all(
        t is None
        or (
            t.device.type == "cpu"
            and t.layout == torch.strided
            and (torch.compiler.is_compiling() or not _is_functorch_wrapped(t))
        )
        for t in tensors
    )


_is_functorch_wrapped = torch._C._functorch.is_functorch_wrapped_tensor


def cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    *,
    z_loss: float = 0.0,
    softcap: float | None = None,
) -> Tensor:
    """Cross-entropy of logits and targets, as ``torch.nn.functional.cross_entropy``.

    On CPU tensors one fused sweep over the logits computes the loss and,
    when ``input`` requires grad and the reduction is 'mean' or 'sum', its
    gradient, which ``backward()`` then returns (scaled by the incoming
    gradient when that is not 1); with 'none', or under torch.compile, the
    forward keeps each sample's log-sum-exp and the backward makes one sweep.
    Tensors on other devices (CUDA, MPS) go to torch's own operators, with
    ``z_loss`` and ``softcap`` composed from them, so a model moves to a GPU
    without edits; so do calls with fewer than 2**17 logits, where torch's
    C++ dispatch costs less than ours saves.

    Parameters
    ----------
    input : Tensor of shape (C,), (N, C) or (N, C, d1, ..., dK)
        Unnormalised scores (logits): float32, float64, float16 or bfloat16
        (the 2-byte tensors read and written as they are, computed in
        float32 and rounded once; bfloat16 needs ml_dtypes, else it goes
        through a float32 copy).
    target : Tensor
        Class indices (int64 or uint8) of shape (), (N,) or (N, d1, ..., dK),
        or class probabilities of the input's shape.
    weight : Tensor of shape (C,), optional
        A rescaling weight for each class, of the input's dtype.
    ignore_index : int, default=-100
        A class index whose targets add nothing to the loss or the gradient.
    reduction : {'mean', 'sum', 'none'}, default='mean'
        As in torch: 'mean' divides by the sum of the kept targets' weights.
    label_smoothing : float in [0, 1], default=0.0
        Mixes the target with the uniform distribution over classes.
    z_loss : float >= 0, default=0.0
        Adds ``z_loss * lse**2`` to each (not ignored) sample's loss.
    softcap : float > 0, optional
        Replaces the logits by ``softcap * tanh(input / softcap)`` first.

    Returns
    -------
    loss : Tensor
        0-d for 'mean' and 'sum', else of the target's sample shape.

    Notes
    -----
    The gradient with respect to ``input`` (and to probability targets) is
    supported; double backward (``create_graph=True``) raises a
    RuntimeError. Inside torch.func transforms (``grad``, ``vmap``,
    ``jacrev``, ``hessian``) torch's own operators compute the loss, so they
    work, at torch's speed. Threads follow ``torch.get_num_threads()``.
    """
    if not isinstance(input, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError(
            "cross_entropy(): input and target must be Tensors, got "
            f"{type(input).__name__} and {type(target).__name__}"
        )
    compiling = torch.compiler.is_compiling()
    small = input.numel() < torch_below
    if small and not z_loss and softcap is None and type(input) is Tensor and not compiling:
        # First, and with nothing else checked: its overhead is what counts here.
        # torch's kernel itself, without F.cross_entropy's Python checks (which
        # only route tensor subclasses and parse the reduction).
        code = _REDUCTION_CODES.get(reduction)
        if code is not None:
            return _torch_kernel(input, target, weight, code, ignore_index, label_smoothing)
    # Other small calls, devices and subclasses: torch's operators.
    if small or not _ours(input, target, weight):
        return _composed_cross_entropy(
            input, target, weight, ignore_index, reduction, label_smoothing, z_loss, softcap
        )
    if not target.is_floating_point() and target.dtype not in _INDEX_DTYPES:
        raise TypeError(f"expected target dtype to be Long or Byte, but got {target.dtype}")
    if weight is not None:
        if weight.dtype != input.dtype:
            raise TypeError(
                f"weight has dtype {weight.dtype}, expected the input's dtype {input.dtype}"
            )
        if weight.requires_grad and torch.is_grad_enabled():
            raise RuntimeError("cross_entropy is not differentiable with respect to weight")
    # The fused forward writes the gradient while it reads the logits; under
    # torch.compile the backward's scaling could not be skipped, so there the
    # backward makes the sweep instead (from the forward's lse).
    with_grad = (
        not compiling and reduction != "none" and input.requires_grad and torch.is_grad_enabled()
    )
    # Eager calls take the autograd.Function (same forward and backward as the
    # operator, less than half its overhead); torch.compile traces the operator.
    run = (
        _ops.cross_entropy_op
        if compiling or not eager_function
        else _ops.FastsoftmaxCrossEntropy.apply
    )
    loss, _, _ = run(
        input,
        target,
        weight,
        int(ignore_index),
        reduction,
        float(label_smoothing),
        float(z_loss),
        0.0 if softcap is None else float(softcap),
        with_grad,
    )
    if target.is_floating_point() and target.dtype != input.dtype:
        # torch's result takes the promoted dtype of logits and probabilities.
        return loss.to(torch.promote_types(input.dtype, target.dtype))
    return loss


def _composed_cross_entropy(
    input, target, weight, ignore_index, reduction, label_smoothing, z_loss, softcap
):
    """torch's own cross_entropy, with z_loss and softcap composed around it."""
    if softcap is not None:
        input = softcap * torch.tanh(input / softcap)
    if not z_loss:
        return torch_cross_entropy(
            input,
            target,
            weight,
            ignore_index=ignore_index,
            reduction=reduction,
            label_smoothing=label_smoothing,
        )
    per = torch_cross_entropy(
        input,
        target,
        weight,
        ignore_index=ignore_index,
        reduction="none",
        label_smoothing=label_smoothing,
    )
    lse = torch.logsumexp(input, dim=1 if input.dim() > 1 else 0)
    if target.is_floating_point():
        kept = torch.ones_like(per)
        denominator = per.new_tensor(float(per.numel()))
    else:
        kept = (target != ignore_index).to(per.dtype)
        n_classes = input.shape[1] if input.dim() > 1 else input.shape[0]
        w_y = kept if weight is None else weight[target.clamp(0, n_classes - 1)] * kept
        denominator = w_y.sum()
    per = per + z_loss * lse.square() * kept
    if reduction == "none":
        return per
    return per.sum() / denominator if reduction == "mean" else per.sum()


def softmax(input: Tensor, dim: int | None = None, dtype: torch.dtype | None = None) -> Tensor:
    """Softmax along a dimension, as ``torch.nn.functional.softmax``.

    Parameters
    ----------
    input : Tensor
        The scores. CPU float tensors of 2**17 elements or more run in
        fastsoftmax's kernels (float16 and bfloat16 computed in float32,
        rounded once, their backward too); smaller ones, other devices and
        other dtypes go to torch's own operator.
    dim : int
        The dimension the probabilities sum to 1 along. None picks torch's
        implicit (deprecated) choice, with its warning.
    dtype : torch.dtype, optional
        Cast the input to this dtype first, as torch does.

    Returns
    -------
    Tensor
        Of the input's shape, C-contiguous. Double backward works.
    """
    return _normalised(input, dim, dtype, "softmax")


def log_softmax(input: Tensor, dim: int | None = None, dtype: torch.dtype | None = None) -> Tensor:
    """Log-softmax along a dimension, as ``torch.nn.functional.log_softmax``.

    Parameters
    ----------
    input : Tensor
        The scores. CPU float tensors of 2**17 elements or more run in
        fastsoftmax's kernels (float16 and bfloat16 computed in float32,
        rounded once, their backward too); smaller ones, other devices and
        other dtypes go to torch's own operator.
    dim : int
        The dimension normalised along. None picks torch's implicit
        (deprecated) choice, with its warning.
    dtype : torch.dtype, optional
        Cast the input to this dtype first, as torch does.

    Returns
    -------
    Tensor
        ``input - logsumexp(input, dim)``, of the input's shape,
        C-contiguous. Double backward works.
    """
    return _normalised(input, dim, dtype, "log_softmax")


def _normalised(input, dim, dtype, name):
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"{name}(): input must be a Tensor, got {type(input).__name__}")
    if dim is None:
        # torch's implicit choice, with its deprecation warning.
        dim = F._get_softmax_dim(name, input.dim(), 4)
    if dtype is not None:
        input = input.to(dtype)
    if not (_ours(input) and input.is_floating_point()) or input.numel() < torch_below:
        return getattr(F, name)(input, dim)
    op = _ops.softmax_op if name == "softmax" else _ops.log_softmax_op
    return op(input, _check_dim(dim, input.dim()))


def logsumexp(input: Tensor, dim: int | Sequence[int], keepdim: bool = False) -> Tensor:
    """Log of the sum of exponentials over dimensions, as ``torch.logsumexp``.

    Parameters
    ----------
    input : Tensor
        CPU float tensors of 2**17 elements or more run in fastsoftmax's
        kernels; integer inputs are promoted to the default float dtype, as
        in torch; smaller ones and other devices go to torch's own operator.
    dim : int or tuple of ints
        The dimensions reduced.
    keepdim : bool, default=False
        Keep the reduced dimensions, of size 1.

    Returns
    -------
    Tensor
        ``log(sum(exp(input), dim))``, computed stably.
    """
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"logsumexp(): input must be a Tensor, got {type(input).__name__}")
    if not input.is_floating_point() and not input.is_complex():
        input = input.to(torch.get_default_dtype())
    dims = [dim] if isinstance(dim, int) else list(dim)
    if not (_ours(input) and input.is_floating_point()) or not dims or input.numel() < torch_below:
        return torch.logsumexp(input, dim, keepdim)
    dims = [_check_dim(d, input.dim()) for d in dims]
    if len(set(dims)) != len(dims):
        raise RuntimeError(f"dim {dim} appears multiple times in the list of dims")
    return _ops.logsumexp_op(input, dims, bool(keepdim))


def _check_dim(dim, ndim):
    """``dim`` in [0, ndim) (a 0-d tensor takes 0 and -1), or IndexError as torch."""
    d = int(dim)
    span = max(ndim, 1)
    if not -span <= d < span:
        raise IndexError(
            f"Dimension out of range (expected to be in range of [{-span}, {span - 1}], "
            f"but got {dim})"
        )
    return d % span


# ignore_index=None (torch's linear_cross_entropy default): no label equals it.
# 2-byte tensors are computed in float32 and their results rounded once (as
# fastsoftmax.linear_cross_entropy does): a loss of the input's dtype, as torch's.
_LINEAR_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
_NO_IGNORE = -(2**63)


def linear_cross_entropy(
    input: Tensor,
    linear_weight: Tensor,
    target: Tensor,
    *,
    linear_bias: Tensor | None = None,
    weight: Tensor | None = None,
    reduction: str = "mean",
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
) -> Tensor:
    """Cross-entropy of ``F.linear(input, linear_weight, linear_bias)``, as
    ``torch.nn.functional.linear_cross_entropy``, never holding the logits.

    Parameters
    ----------
    input : Tensor of shape (n_samples, n_features)
        The features (hidden states), float32, float64, float16 or bfloat16
        (2-byte tensors are computed in float32, their loss and gradients
        rounded once to their dtype).
    linear_weight : Tensor of shape (n_classes, n_features)
        The linear layer's weight, of the input's dtype.
    target : Tensor of shape (n_samples,) or (n_samples, n_classes)
        Class indices (int64), or class probabilities of the input's dtype
        (then without ``ignore_index``, as torch asks).
    linear_bias : Tensor of shape (n_classes,), optional
        The linear layer's bias.
    weight : Tensor of shape (n_classes,), optional
        A rescaling weight for each class.
    reduction : {'mean', 'sum', 'none'}, default='mean'
        As in :func:`fastsoftmax.torch.cross_entropy`.
    ignore_index : int, optional
        A class index whose targets add nothing; None (torch's default here)
        ignores none.
    label_smoothing : float in [0, 1], default=0.0
        Mixes the target with the uniform distribution over classes.
    z_loss : float >= 0, default=0.0
        Adds ``z_loss * lse**2`` to each (not ignored) sample's loss.
    softcap : float > 0, optional
        Replaces the logits by ``softcap * tanh(logits / softcap)`` first.

    Returns
    -------
    Tensor
        0-d for 'mean' and 'sum', else of shape (n_samples,).

    Notes
    -----
    On CPU tensors of these shapes and dtypes the logits go through in
    blocks that stay in the last-level cache, and the gradients of
    ``input``, ``linear_weight`` and ``linear_bias`` are computed in the same
    blocks (for 'mean' and 'sum'). Other devices, shapes and dtypes go to
    torch's own ``F.linear_cross_entropy`` (``z_loss`` and ``softcap``
    composed around ``F.linear``). Double backward raises a RuntimeError.
    """
    # class probabilities of the input's dtype, one row for each sample (torch
    # refuses an ignore_index with them, on its own path)
    probs = (
        target.dim() == 2
        and target.dtype == input.dtype
        and ignore_index is None
        and not target.requires_grad
        and tuple(target.shape) == (input.shape[0], linear_weight.shape[0])
    )
    shaped = (
        input.dim() == 2
        and linear_weight.dim() == 2
        and ((target.dim() == 1 and target.dtype == torch.int64) or probs)
        and input.dtype in _LINEAR_DTYPES
        and linear_weight.dtype == input.dtype
        and (linear_bias is None or (linear_bias.dim() == 1 and linear_bias.dtype == input.dtype))
    )
    if not (shaped and _ours(input, linear_weight, target, linear_bias, weight)):
        if z_loss or softcap is not None or not hasattr(F, "linear_cross_entropy"):
            return cross_entropy(
                F.linear(input, linear_weight, linear_bias), target, weight,
                -100 if ignore_index is None else ignore_index, reduction, label_smoothing,
                z_loss=z_loss, softcap=softcap,
            )  # fmt: skip
        return F.linear_cross_entropy(
            input, linear_weight, target, linear_bias=linear_bias, weight=weight,
            reduction=reduction, ignore_index=ignore_index, label_smoothing=label_smoothing,
        )  # fmt: skip
    if weight is not None and weight.requires_grad and torch.is_grad_enabled():
        raise RuntimeError("linear_cross_entropy is not differentiable with respect to weight")
    needs_grad = torch.is_grad_enabled() and (
        input.requires_grad
        or linear_weight.requires_grad
        or (linear_bias is not None and linear_bias.requires_grad)
    )
    with_grad = needs_grad and reduction != "none" and not torch.compiler.is_compiling()
    loss, _, _, _ = _linear.linear_cross_entropy_op(
        input, linear_weight, target, linear_bias, weight,
        _NO_IGNORE if ignore_index is None else int(ignore_index), reduction,
        float(label_smoothing), float(z_loss), 0.0 if softcap is None else float(softcap),
        with_grad,
    )  # fmt: skip
    return loss
