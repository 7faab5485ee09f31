"""The kernels against torch.nn.functional.cross_entropy and autograd (when installed)."""

import numpy as np
import pytest

import fastsoftmax as fs

torch = pytest.importorskip("torch")
F = torch.nn.functional

FEATURES = {
    "plain": dict(),
    "weight": dict(weight=True),
    "ignore_index": dict(ignore=True),
    "label_smoothing": dict(label_smoothing=0.1),
    "weight+ignore+smoothing": dict(weight=True, ignore=True, label_smoothing=0.2),
    "probabilities": dict(prob=True),
    "probabilities+weight+smoothing": dict(prob=True, weight=True, label_smoothing=0.1),
    "z_loss": dict(z_loss=1e-2),
    "softcap": dict(softcap=5.0),
    "k-dim": dict(kdim=True, weight=True, label_smoothing=0.1),
    "masked classes": dict(masked=True),
}


def torch_loss_and_grad(
    x, target, weight, ignore_index, reduction, label_smoothing, z_loss, softcap, grad_output
):
    """torch's cross_entropy, extended with z_loss and softcap, and its autograd gradient."""
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    tt = torch.tensor(target if target.dtype.kind == "f" else target.astype(np.int64))
    wt = None if weight is None else torch.tensor(weight)
    z = softcap * torch.tanh(xt / softcap) if softcap else xt
    per = F.cross_entropy(
        z, tt, wt, ignore_index=ignore_index, reduction="none", label_smoothing=label_smoothing
    )
    if target.dtype.kind == "f":
        kept = torch.ones(per.shape, dtype=torch.float64)
        denom = float(per.numel())
    else:
        kept = (tt != ignore_index).double()
        w_y = torch.ones_like(kept) if wt is None else wt[tt.clamp(0, x.shape[1] - 1)]
        denom = float((w_y * kept).sum())
    lse = torch.logsumexp(z, dim=1)
    per = per + z_loss * lse**2 * kept
    if reduction == "none":
        loss = per
        loss.backward(torch.tensor(grad_output))
    else:
        loss = per.sum() / denom if reduction == "mean" else per.sum()
        (loss * grad_output).backward()
    return loss.detach().numpy(), xt.grad.numpy()


def make(feature, rng, dtype):
    shape = (16, 7, 3) if feature.get("kdim") else (32, 11)
    n_classes = shape[1]
    x = (3 * rng.standard_normal(shape)).astype(dtype)
    if feature.get("masked"):
        x[:, 2] = -np.inf
    sample_shape = (shape[0],) + shape[2:]
    if feature.get("prob"):
        q = rng.random(shape)
        target = (q / q.sum(axis=1, keepdims=True)).astype(dtype)
    else:
        target = rng.integers(0, n_classes, size=sample_shape)
        if feature.get("masked"):
            target[target == 2] = 3
        if feature.get("ignore"):
            target.reshape(-1)[::4] = 5
    weight = rng.random(n_classes) + 0.5 if feature.get("weight") else None
    ignore_index = 5 if feature.get("ignore") else -100
    return x, target, weight, ignore_index, sample_shape


def max_rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = max(np.max(np.abs(b)), 1e-30)
    return float(np.max(np.abs(a - b)) / scale)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name", list(FEATURES))
def test_agrees_with_torch(name, reduction, dtype):
    feature = FEATURES[name]
    rng = np.random.default_rng(len(name))
    x, target, weight, ignore_index, sample_shape = make(feature, rng, dtype)
    g = rng.standard_normal(sample_shape) if reduction == "none" else 0.7
    kw = dict(
        label_smoothing=feature.get("label_smoothing", 0.0),
        z_loss=feature.get("z_loss", 0.0),
        softcap=feature.get("softcap"),
    )
    loss, grad = fs.cross_entropy_with_grad(
        x, target, weight, ignore_index, reduction, grad_output=g, **kw
    )
    ref_loss, ref_grad = torch_loss_and_grad(
        x.astype(np.float64),
        target,
        weight,
        ignore_index,
        reduction,
        kw["label_smoothing"],
        kw["z_loss"],
        kw["softcap"],
        g,
    )
    loss_tol, grad_tol = (1e-6, 1e-5) if dtype == np.float32 else (1e-12, 1e-12)
    assert max_rel(loss, ref_loss) < loss_tol
    assert max_rel(grad, ref_grad) < grad_tol
    if reduction == "mean" and not (kw["z_loss"] or kw["softcap"]):
        # Plain torch, no extension: the library's loss is torch's own.
        t = torch.tensor(target if target.dtype.kind == "f" else target.astype(np.int64))
        xt = torch.tensor(x)
        wt = None if weight is None else torch.tensor(weight, dtype=xt.dtype)
        direct = F.cross_entropy(
            xt, t, wt, ignore_index=ignore_index, label_smoothing=kw["label_smoothing"]
        )
        assert max_rel(loss, direct.numpy()) < loss_tol * 10
