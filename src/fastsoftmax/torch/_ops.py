"""The ``fastsoftmax::`` operators: the NumPy kernels registered with torch.library.

Each operator runs on CPU tensors, shared with the kernels through
``Tensor.numpy()`` (no copy, any strides), and has a fake implementation for
torch.compile and an autograd formula. float16 and bfloat16 tensors reach
the 2-byte kernels as they are (bfloat16 as ``ml_dtypes.bfloat16``, or as a
float32 copy where ml_dtypes is not installed): computed in float32, each
result rounded once to the tensor's dtype.
"""

import functools
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from fastsoftmax import _special, _xent
from fastsoftmax.torch import _buffers

__all__ = [
    "FastsoftmaxCrossEntropy",
    "cross_entropy_op",
    "cross_entropy_backward_op",
    "log_softmax_op",
    "logsumexp_op",
    "softmax_op",
]

_HALF = (torch.float16, torch.bfloat16)

_DOUBLE_BACKWARD = (
    "fastsoftmax.torch.{} does not support double backward (create_graph=True, "
    "torch.autograd.grad of a gradient, torch.func.hessian): its gradient is "
    "computed by a kernel autograd cannot see into. Use torch.nn.functional.{} "
    "for higher derivatives."
)


@functools.lru_cache(maxsize=2)
def _numpy_half(dtype):
    """The NumPy dtype of a 2-byte torch dtype, or None (bfloat16 without ml_dtypes);
    looked up once, not on every call."""
    if dtype == torch.float16:
        return np.dtype(np.float16)
    try:
        import ml_dtypes
    except ImportError:
        return None
    return np.dtype(ml_dtypes.bfloat16)


def _array(t):
    """A CPU tensor's elements as a NumPy array, shared (any strides): a 2-byte
    float through its int16 view, which NumPy then reads as its own dtype."""
    t = t.detach()
    if t.dtype in _HALF:
        dtype = _numpy_half(t.dtype)
        if dtype is None:
            return t.float().numpy()
        return t.view(torch.int16).numpy().view(dtype)
    return t.numpy()


def _shares(dtype):
    """True when _array shares a tensor of ``dtype`` rather than copying it."""
    return dtype not in _HALF or _numpy_half(dtype) is not None


_TORCH_HALF = {np.dtype(np.float16): torch.float16}


def _tensor(a, dtype):
    """A NumPy result as a tensor of ``dtype``: shared when the dtypes match,
    else rounded once."""
    a = np.asarray(a)
    if a.dtype.itemsize == 2 and a.dtype.kind in "fV":  # float16, bfloat16
        t = torch.from_numpy(a.view(np.int16)).view(_TORCH_HALF.get(a.dtype, torch.bfloat16))
    else:
        t = torch.from_numpy(a)
    return t if t.dtype == dtype else t.to(dtype)


def _grad_buffer(x):
    """Where the gradient of ``x``'s logits goes: a kept buffer when one is
    free (_buffers.py), None (a fresh array) for small ones."""
    if x.nbytes < _buffers.MIN_BYTES:
        return None
    return _buffers.empty(x.shape, x.dtype)


def _threads():
    # Threads follow torch's own setting (torch.set_num_threads).
    return torch.get_num_threads()


def _loss_shape(input):
    return () if input.dim() == 1 else (input.shape[0],) + tuple(input.shape[2:])


# ----------------------------------------------------------------- cross-entropy


def _xent_forward(
    input, target, weight, ignore_index, reduction, label_smoothing, z_loss, softcap, with_grad
):
    """(loss, grad, lse): with ``with_grad`` the gradient of the unscaled loss
    and an empty lse; without, an empty grad and each sample's log-sum-exp in
    float64, for the backward to make its one sweep from."""
    x, t = _array(input), _array(target)
    w = None if weight is None else _array(weight)
    cap = softcap if softcap > 0 else None
    if with_grad:
        loss, grad = _xent.cross_entropy_with_grad(
            x, t, w, ignore_index, reduction, label_smoothing, z_loss=z_loss, softcap=cap,
            n_threads=_threads(), out=_grad_buffer(x),
        )  # fmt: skip
        lse = torch.empty((0,), dtype=torch.float64)
        return _tensor(loss, input.dtype), _tensor(grad, input.dtype), lse
    loss, lse = _xent.loss_and_lse(
        x, t, w, ignore_index, reduction, label_smoothing, z_loss, cap, n_threads=_threads()
    )
    return _tensor(loss, input.dtype), input.new_empty((0,)), torch.from_numpy(lse)


@torch.library.custom_op("fastsoftmax::cross_entropy", mutates_args=(), device_types="cpu")
def cross_entropy_op(
    input: Tensor,
    target: Tensor,
    weight: Optional[Tensor],  # noqa: UP045 (torch.library's schema inference wants Optional)
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
    z_loss: float,
    softcap: float,
    with_grad: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """Returns (loss, grad, lse) as :func:`_xent_forward`."""
    return _xent_forward(
        input, target, weight, ignore_index, reduction, label_smoothing, z_loss, softcap, with_grad
    )


@cross_entropy_op.register_fake
def _(input, target, weight, ignore_index, reduction, label_smoothing, z_loss, softcap, with_grad):
    loss_shape = _loss_shape(input) if reduction == "none" else ()
    grad = input.new_empty(input.shape if with_grad else (0,))
    lse = input.new_empty((0,) if with_grad else _loss_shape(input), dtype=torch.float64)
    return input.new_empty(loss_shape), grad, lse


@torch.library.custom_op("fastsoftmax::cross_entropy_backward", mutates_args=(), device_types="cpu")
def cross_entropy_backward_op(
    grad_output: Tensor,
    input: Tensor,
    target: Tensor,
    weight: Optional[Tensor],  # noqa: UP045
    lse: Tensor,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
    z_loss: float,
    softcap: float,
) -> Tensor:
    """The gradient of the loss scaled by ``grad_output``, from the forward's lse."""
    return _xent_backward_sweep(
        grad_output, input, target, weight, lse, ignore_index, reduction, label_smoothing,
        z_loss, softcap,
    )  # fmt: skip


def _xent_backward_sweep(
    grad_output, input, target, weight, lse, ignore_index, reduction, label_smoothing, z_loss,
    softcap,
):  # fmt: skip
    g, x = _array(grad_output), _array(input)
    grad = _xent.cross_entropy_backward(
        x,
        _array(target),
        lse.numpy(),
        None if weight is None else _array(weight),
        ignore_index,
        reduction,
        label_smoothing,
        z_loss=z_loss,
        softcap=softcap if softcap > 0 else None,
        grad_output=float(g) if reduction != "none" else g,
        n_threads=_threads(),
        out=_grad_buffer(x),
    )
    return _tensor(grad, input.dtype)


@cross_entropy_backward_op.register_fake
def _(grad_output, input, target, weight, lse, *options):
    return input.new_empty(input.shape)


def _refuse_double_backward(ctx, *grads):
    raise RuntimeError(_DOUBLE_BACKWARD.format("cross_entropy", "cross_entropy"))


cross_entropy_backward_op.register_autograd(
    _refuse_double_backward, setup_context=lambda ctx, inputs, output: None
)


def _xent_setup_context(ctx, inputs, output):
    input, target, weight, ignore_index, reduction, smoothing, z_loss, softcap, with_grad = inputs
    _, grad, lse = output
    ctx.options = (ignore_index, reduction, smoothing, z_loss, softcap)
    ctx.fused = with_grad
    ctx.mark_non_differentiable(grad, lse)
    # No zero-filled incoming gradients for those two (one would be N x C).
    ctx.set_materialize_grads(False)
    if not with_grad:
        ctx.save_for_backward(input, target, weight, lse)
    elif ctx.needs_input_grad[1]:
        ctx.save_for_backward(grad, input, target, weight)
    else:
        ctx.save_for_backward(grad)


def _xent_backward(ctx, grad_loss, _grad_grad, _grad_lse):
    if torch.is_grad_enabled():
        raise RuntimeError(_DOUBLE_BACKWARD.format("cross_entropy", "cross_entropy"))
    if ctx.needs_input_grad[2]:
        raise RuntimeError(
            "fastsoftmax.torch.cross_entropy is not differentiable with respect to weight"
        )
    saved = ctx.saved_tensors
    grad_input = grad_target = None
    if grad_loss is None:  # the loss itself was not used (grads are not materialised)
        return (None,) * 9
    if ctx.needs_input_grad[0]:
        if ctx.fused:
            grad = saved[0]
            grad_input = grad if _is_one(grad_loss) else grad * grad_loss
        else:
            sweep = _xent_backward_sweep if _eager(grad_loss) else cross_entropy_backward_op
            grad_input = sweep(grad_loss, *saved, *ctx.options)
    if ctx.needs_input_grad[1]:
        input, target, weight = saved[1:4] if ctx.fused else saved[:3]
        grad_target = _target_grad(grad_loss, input, target, weight, *ctx.options)
    return grad_input, grad_target, None, None, None, None, None, None, None


def _eager(g):
    """True outside graph tracing (torch.compile, AOTAutograd), where ``g`` is
    a fake or functional tensor subclass and the kernels cannot be called."""
    return type(g) is torch.Tensor


def _is_one(g):
    """True when the gradient needs no scaling: the usual ``loss.backward()``.
    Never while a graph is traced, whose graph cannot branch on a value."""
    return _eager(g) and g.numel() == 1 and g.item() == 1.0


def _target_grad(grad_loss, input, target, weight, ignore_index, reduction, smoothing, z_loss,
                 softcap):  # fmt: skip
    """d loss / d target for class-probability targets:
    -(1 - label_smoothing) * weight_c * log_softmax(input)_c, scaled per sample."""
    dtype = torch.promote_types(input.dtype, torch.float32)
    z = input.to(dtype)
    if softcap > 0:
        z = softcap * torch.tanh(z / softcap)
    batched = input.dim() > 1
    grad = -(1.0 - smoothing) * torch.log_softmax(z, 1 if batched else 0)
    if weight is not None:
        w = weight.to(dtype)
        grad = grad * (w.view((1, -1) + (1,) * (input.dim() - 2)) if batched else w)
    g = grad_loss.to(dtype)
    if reduction == "none":
        g = g.unsqueeze(1) if batched else g
    elif reduction == "mean":
        n_samples = input.numel() // input.shape[1] if batched else 1
        g = g / (n_samples if n_samples else float("nan"))
    return (grad * g).to(target.dtype)


class FastsoftmaxCrossEntropy(torch.autograd.Function):
    """The operator's eager twin: the same forward, context and backward as
    ``fastsoftmax::cross_entropy``, without the dispatcher's Python round
    trips (about 30 us a call). torch.compile traces the operator instead."""

    # forward with ctx, not a separate setup_context: apply() then skips
    # binding the arguments to a signature, 20 us a call.
    @staticmethod
    def forward(ctx, *inputs):
        output = _xent_forward(*inputs)
        _xent_setup_context(ctx, inputs, output)
        return output

    backward = staticmethod(_xent_backward)


cross_entropy_op.register_autograd(_xent_backward, setup_context=_xent_setup_context)


# ---------------------------------------------------------------- softmax family


def _normalised(input, dim, log):
    out = torch.empty(input.shape, dtype=input.dtype if _shares(input.dtype) else torch.float32)
    x = _array(input)
    if x.size:  # an empty tensor has nothing to normalise (scipy's would raise)
        o = _array(out.view(1) if x.ndim == 0 else out)
        _special._normalise(x.reshape(o.shape), dim if x.ndim else 0, o, _threads(), log=log)
    return out if out.dtype == input.dtype else out.to(input.dtype)


@torch.library.custom_op("fastsoftmax::softmax", mutates_args=(), device_types="cpu")
def softmax_op(input: Tensor, dim: int) -> Tensor:
    """softmax(input) along ``dim``, C-contiguous."""
    return _normalised(input, dim, log=False)


@torch.library.custom_op("fastsoftmax::log_softmax", mutates_args=(), device_types="cpu")
def log_softmax_op(input: Tensor, dim: int) -> Tensor:
    """log_softmax(input) along ``dim``, C-contiguous."""
    return _normalised(input, dim, log=True)


@softmax_op.register_fake
def _(input, dim):
    return input.new_empty(input.shape)


@log_softmax_op.register_fake
def _(input, dim):
    return input.new_empty(input.shape)


def _save_output(ctx, inputs, output):
    ctx.dim = inputs[1]
    ctx.input_dtype = inputs[0].dtype
    ctx.save_for_backward(output)


# The backward formulas are torch's own, in differentiable torch operations:
# double backward works through them as it does for torch's softmax. For the
# 2-byte dtypes they run in float32 and are rounded once, as the forward.
def _backward_with(formula, ctx, grad):
    (out,) = ctx.saved_tensors
    if ctx.input_dtype in _HALF:
        g = formula(grad.float(), out.float(), ctx.dim, torch.float32)
        return g.to(ctx.input_dtype), None
    return formula(grad, out, ctx.dim, ctx.input_dtype), None


def _softmax_backward(ctx, grad):
    return _backward_with(torch._softmax_backward_data, ctx, grad)


def _log_softmax_backward(ctx, grad):
    return _backward_with(torch._log_softmax_backward_data, ctx, grad)


softmax_op.register_autograd(_softmax_backward, setup_context=_save_output)
log_softmax_op.register_autograd(_log_softmax_backward, setup_context=_save_output)


@torch.library.custom_op("fastsoftmax::logsumexp", mutates_args=(), device_types="cpu")
def logsumexp_op(input: Tensor, dim: list[int], keepdim: bool) -> Tensor:
    """log(sum(exp(input))) over ``dim``, C-contiguous."""
    x = _array(input)
    if x.ndim == 0:
        res = x.copy()  # the sum of one term: the term itself
    elif x.size == 0:
        # Sums of no terms are 0, their logs -inf (an empty result has none).
        res = np.full(_reduced_shape(input.shape, dim, keepdim), -np.inf, dtype=x.dtype)
    else:
        res = _special.logsumexp(x, axis=tuple(dim), keepdims=keepdim, n_threads=_threads())
    # np.require, not np.ascontiguousarray, which makes a 0-d result 1-d.
    return _tensor(np.require(res, x.dtype, "C"), input.dtype)


def _reduced_shape(shape, dim, keepdim):
    dims = {d % max(len(shape), 1) for d in dim}
    return [1 if i in dims else n for i, n in enumerate(shape) if keepdim or i not in dims]


@logsumexp_op.register_fake
def _(input, dim, keepdim):
    return input.new_empty(_reduced_shape(input.shape, dim, keepdim))


def _save_input_output(ctx, inputs, output):
    input, dim, keepdim = inputs
    ctx.dim, ctx.keepdim = dim, keepdim
    ctx.save_for_backward(input, output)


def _logsumexp_backward(ctx, grad):
    # torch's formula: grad * exp(input - result), the reduced axes restored.
    input, out = ctx.saved_tensors
    if not ctx.keepdim and input.dim() > 0:
        for d in sorted(d % input.dim() for d in ctx.dim):
            grad, out = grad.unsqueeze(d), out.unsqueeze(d)
    return grad * torch.exp(input - out), None, None


logsumexp_op.register_autograd(_logsumexp_backward, setup_context=_save_input_output)
