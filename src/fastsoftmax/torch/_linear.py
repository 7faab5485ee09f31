"""linear_cross_entropy and LinearCrossEntropyLoss: a linear layer and its loss, fused.

The operators ``fastsoftmax::linear_cross_entropy`` (and its backward) run
:func:`fastsoftmax.linear_cross_entropy_with_grad` on CPU tensors: the
logits go through in blocks that stay in the last-level cache and are never
held whole. With 'mean' or 'sum' and inputs that require grad, the forward
computes the three gradients in the same blocks and the backward hands them
on (multiplied by the incoming gradient when that is not 1); with 'none',
and under torch.compile, the backward makes its own pass.
"""

from typing import Optional

import torch
from torch import Tensor

import fastsoftmax
from fastsoftmax.torch import _ops

__all__ = ["linear_cross_entropy_op", "linear_cross_entropy_backward_op"]


def _numpy_call(input, linear_weight, target, linear_bias, weight, ignore_index, reduction,
                label_smoothing, z_loss, softcap):  # fmt: skip
    """The positional and keyword arguments of the NumPy functions, on the
    tensors' memory (shared by the forward alone and the fused call)."""
    args = (_ops._array(input), _ops._array(linear_weight), _ops._array(target))
    kwargs = dict(
        linear_bias=None if linear_bias is None else _ops._array(linear_bias),
        weight=None if weight is None else _ops._array(weight),
        ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing,
        z_loss=z_loss, softcap=softcap if softcap > 0 else None, n_threads=_ops._threads(),
    )  # fmt: skip
    return args, kwargs


def _run(input, linear_weight, target, linear_bias, weight, ignore_index, reduction,
         label_smoothing, z_loss, softcap, grad_output):  # fmt: skip
    """linear_cross_entropy_with_grad on the tensors' memory: (loss, gx, gw, gb)."""
    args, kwargs = _numpy_call(input, linear_weight, target, linear_bias, weight, ignore_index,
                               reduction, label_smoothing, z_loss, softcap)  # fmt: skip
    loss, gx, gw, gb = fastsoftmax.linear_cross_entropy_with_grad(
        *args, grad_output=grad_output, **kwargs
    )
    dtype = input.dtype
    gb_t = input.new_empty((0,)) if gb is None else _ops._tensor(gb, dtype)
    return _ops._tensor(loss, dtype), _ops._tensor(gx, dtype), _ops._tensor(gw, dtype), gb_t


@torch.library.custom_op("fastsoftmax::linear_cross_entropy", mutates_args=(), device_types="cpu")
def linear_cross_entropy_op(
    input: Tensor,
    linear_weight: Tensor,
    target: Tensor,
    linear_bias: Optional[Tensor],  # noqa: UP045 (torch.library's schema inference wants Optional)
    weight: Optional[Tensor],  # noqa: UP045
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
    z_loss: float,
    softcap: float,
    with_grad: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(loss, grad_input, grad_linear_weight, grad_linear_bias); the gradients,
    of the unscaled loss, only with ``with_grad`` (else empty tensors)."""
    if with_grad:
        return _run(input, linear_weight, target, linear_bias, weight, ignore_index,
                    reduction, label_smoothing, z_loss, softcap, None)  # fmt: skip
    args, kwargs = _numpy_call(input, linear_weight, target, linear_bias, weight, ignore_index,
                               reduction, label_smoothing, z_loss, softcap)  # fmt: skip
    loss = fastsoftmax.linear_cross_entropy(*args, **kwargs)
    empty = input.new_empty((0,))
    return _ops._tensor(loss, input.dtype), empty, empty.clone(), empty.clone()


@linear_cross_entropy_op.register_fake
def _(input, linear_weight, target, linear_bias, weight, ignore_index, reduction,
      label_smoothing, z_loss, softcap, with_grad):  # fmt: skip
    loss = input.new_empty(tuple(input.shape[:-1]) if reduction == "none" else ())
    if not with_grad:
        return loss, input.new_empty((0,)), input.new_empty((0,)), input.new_empty((0,))
    gb = input.new_empty((0,) if linear_bias is None else linear_bias.shape)
    return loss, input.new_empty(input.shape), input.new_empty(linear_weight.shape), gb


@torch.library.custom_op(
    "fastsoftmax::linear_cross_entropy_backward", mutates_args=(), device_types="cpu"
)
def linear_cross_entropy_backward_op(
    grad_output: Tensor,
    input: Tensor,
    linear_weight: Tensor,
    target: Tensor,
    linear_bias: Optional[Tensor],  # noqa: UP045
    weight: Optional[Tensor],  # noqa: UP045
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
    z_loss: float,
    softcap: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """The three gradients scaled by ``grad_output``, in a pass of their own."""
    g = _ops._array(grad_output)
    _, gx, gw, gb = _run(input, linear_weight, target, linear_bias, weight, ignore_index,
                         reduction, label_smoothing, z_loss, softcap,
                         float(g) if reduction != "none" else g)  # fmt: skip
    return gx, gw, gb


@linear_cross_entropy_backward_op.register_fake
def _(grad_output, input, linear_weight, target, linear_bias, *options):
    gb = input.new_empty((0,) if linear_bias is None else linear_bias.shape)
    return input.new_empty(input.shape), input.new_empty(linear_weight.shape), gb


def _refuse(ctx, *grads):
    raise RuntimeError(_ops._DOUBLE_BACKWARD.format("linear_cross_entropy", "linear_cross_entropy"))


linear_cross_entropy_backward_op.register_autograd(
    _refuse, setup_context=lambda ctx, inputs, output: None
)


def _setup(ctx, inputs, output):
    (input, linear_weight, target, linear_bias, weight, ignore_index, reduction, smoothing,
     z_loss, softcap, with_grad) = inputs  # fmt: skip
    _, gx, gw, gb = output
    ctx.options = (ignore_index, reduction, smoothing, z_loss, softcap)
    ctx.fused = with_grad
    ctx.has_bias = linear_bias is not None
    ctx.mark_non_differentiable(gx, gw, gb)
    ctx.set_materialize_grads(False)
    if with_grad:
        ctx.save_for_backward(gx, gw, gb)
    else:
        ctx.save_for_backward(input, linear_weight, target, linear_bias, weight)


def _backward(ctx, grad_loss, *_unused):
    if torch.is_grad_enabled():
        raise RuntimeError(
            _ops._DOUBLE_BACKWARD.format("linear_cross_entropy", "linear_cross_entropy")
        )
    if ctx.needs_input_grad[4]:
        raise RuntimeError("linear_cross_entropy is not differentiable with respect to weight")
    if grad_loss is None:
        return (None,) * 11
    if ctx.fused:
        grads = ctx.saved_tensors
        if not _ops._is_one(grad_loss):
            grads = tuple(g * grad_loss for g in grads)
    else:
        grads = linear_cross_entropy_backward_op(grad_loss, *ctx.saved_tensors, *ctx.options)
    gx, gw, gb = grads
    need = ctx.needs_input_grad
    return (
        gx if need[0] else None,
        gw if need[1] else None,
        None,
        gb if ctx.has_bias and need[3] else None,
        None, None, None, None, None, None, None,
    )  # fmt: skip


linear_cross_entropy_op.register_autograd(_backward, setup_context=_setup)
