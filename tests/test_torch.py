"""fastsoftmax.torch against torch itself: torch's own test inputs are the oracle.

Every OpInfo sample of torch's test suite for cross_entropy, softmax,
log_softmax and logsumexp, and every ModuleInfo configuration of
CrossEntropyLoss, Softmax and LogSoftmax, forward and backward, in float32
and float64; gradcheck in float64; opcheck on the operators; torch.compile;
the 2-byte dtypes; patch().
"""

import copy
import io
import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("expecttest")  # torch.testing._internal needs it

import torch.nn.functional as F  # noqa: E402
from torch.testing import assert_close as _assert_close  # noqa: E402
from torch.testing._internal.common_methods_invocations import op_db  # noqa: E402
from torch.testing._internal.common_modules import module_db  # noqa: E402
from torch.testing._internal.opinfo.core import SampleInput  # noqa: E402

import fastsoftmax.torch as fst  # noqa: E402
from fastsoftmax.torch import _linear, _ops  # noqa: E402

OPS = {(o.name, o.variant_test_name): o for o in op_db}


@pytest.fixture(autouse=True, params=["function", "operator"])
def route(request, monkeypatch):
    """Every test runs on fastsoftmax's kernels whatever its size (torch's own
    take calls below ``torch_below`` otherwise), in eager mode once through
    the autograd.Function and once through the registered operator."""
    from fastsoftmax.torch import _functional

    monkeypatch.setattr(_functional, "torch_below", 0)
    monkeypatch.setattr(_functional, "eager_function", request.param == "function")
    return request.param


# (OpInfo name, variant) -> fastsoftmax.torch's function of the same arguments.
OURS = {
    ("nn.functional.cross_entropy", ""): fst.cross_entropy,
    ("softmax", ""): fst.softmax,
    ("softmax", "with_dtype"): fst.softmax,
    ("log_softmax", ""): fst.log_softmax,
    ("log_softmax", "with_dtype"): fst.log_softmax,
    ("logsumexp", ""): fst.logsumexp,
}
DTYPES = [torch.float32, torch.float64]
HALF_DTYPES = [torch.float16, torch.bfloat16]


def assert_close(actual, expected, **kwargs):
    """torch.testing.assert_close, NaN equal to NaN (as torch's own test suite)."""
    _assert_close(actual, expected, equal_nan=True, **kwargs)


def _grads(fn, sample, grad_seed, grad_dtype=None):
    """fn's output on the sample and the gradients of every input that
    requires grad, for a random incoming gradient (drawn in ``grad_dtype``,
    by default the output's)."""
    inputs = [sample.input] + [a for a in sample.args if isinstance(a, torch.Tensor)]
    inputs += [v for v in sample.kwargs.values() if isinstance(v, torch.Tensor)]
    leaves = [t for t in inputs if t.requires_grad]
    out = fn(sample.input, *sample.args, **sample.kwargs)
    if not leaves or not out.requires_grad:
        return out, []
    gen = torch.Generator().manual_seed(grad_seed)
    g = torch.randn(out.shape, dtype=grad_dtype or out.dtype, generator=gen).to(out.dtype)
    return out.detach(), list(torch.autograd.grad(out, leaves, g))


def _samples(key, dtype):
    return list(OPS[key].sample_inputs("cpu", dtype, requires_grad=True))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("key", list(OURS), ids=lambda k: "-".join(p for p in k if p))
def test_opinfo_samples_match_torch(key, dtype):
    torch.manual_seed(0)
    samples = _samples(key, dtype)
    assert samples
    for i, sample in enumerate(samples):
        theirs, their_grads = _grads(OPS[key].op, sample, i)
        ours, our_grads = _grads(OURS[key], sample, i)
        assert_close(ours, theirs, msg=lambda m, s=sample: f"{s}: {m}")
        assert len(our_grads) == len(their_grads)
        for a, b in zip(our_grads, their_grads):
            assert_close(a, b, msg=lambda m, s=sample: f"gradient, {s}: {m}")


def _in_float64(sample):
    """The sample with each floating tensor as a float64 leaf (its exact value)."""

    def up(v):
        if isinstance(v, torch.Tensor) and v.is_floating_point():
            return v.detach().double().requires_grad_(v.requires_grad)
        return v

    return SampleInput(
        up(sample.input),
        args=tuple(up(a) for a in sample.args),
        kwargs={k: up(v) for k, v in sample.kwargs.items()},
    )


@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=str)
@pytest.mark.parametrize("key", list(OURS), ids=lambda k: "-".join(p for p in k if p))
def test_opinfo_two_byte_samples_match_float64(key, dtype):
    """torch's samples in float16 and bfloat16: ours against torch's float64
    result on the same (exact) values. Each element is within assert_close's
    default tolerance for the dtype of the exact value, or no further from
    it than torch's own 2-byte result. (The softmax family's gradients come
    from its rounded 2-byte output, as torch's do; torch's own forward
    rounds intermediate values, its bfloat16 log_softmax keeping the row's
    max and log-sum in bfloat16.)"""
    torch.manual_seed(0)
    samples = _samples(key, dtype)
    assert samples
    for i, sample in enumerate(samples):
        exact, exact_grads = _grads(OPS[key].op, _in_float64(sample), i, grad_dtype=dtype)
        theirs, their_grads = _grads(OPS[key].op, sample, i, grad_dtype=dtype)
        ours, our_grads = _grads(OURS[key], sample, i, grad_dtype=dtype)
        assert ours.dtype == theirs.dtype
        _assert_no_worse(ours, theirs, exact, f"{sample}")
        assert len(our_grads) == len(exact_grads)
        for a, b, e in zip(our_grads, their_grads, exact_grads):
            _assert_no_worse(a, b, e, f"gradient, {sample}")


def _assert_no_worse(ours, theirs, exact, label):
    """Elementwise: within the default tolerance of ``exact`` for ours' dtype,
    or no further from it than ``theirs``."""
    rtol, atol = {torch.float16: (1e-3, 1e-5), torch.bfloat16: (1.6e-2, 1e-5)}.get(
        ours.dtype, (1.3e-6, 1e-5)
    )
    e = exact.double()
    mine, other = (ours.double() - e).abs(), (theirs.double() - e).abs()
    same_nan = ours.isnan() & e.isnan()
    bad = ~same_nan & ~((mine <= atol + rtol * e.abs()) | (mine <= other))
    bad |= ours.isnan() != e.isnan()
    assert not bad.any(), f"{label}: {ours[bad]} against exact {e[bad]} (torch: {theirs[bad]})"


@pytest.mark.parametrize("key", list(OURS), ids=lambda k: "-".join(p for p in k if p))
def test_opinfo_samples_gradcheck(key):
    for sample in _samples(key, torch.float64):
        fn = OURS[key]
        leaves = [sample.input] + [a for a in sample.args if isinstance(a, torch.Tensor)]
        leaves = [t for t in leaves if t.requires_grad]
        if not leaves or sample.input.numel() == 0:
            continue
        others = [a for a in sample.args if not (isinstance(a, torch.Tensor) and a.requires_grad)]

        def call(*ts, sample=sample, others=others, fn=fn):
            args = list(ts[1:]) + others if len(ts) > 1 else others
            return fn(ts[0], *args, **sample.kwargs)

        assert torch.autograd.gradcheck(call, tuple(leaves)), sample


MODULES = {
    torch.nn.CrossEntropyLoss: fst.CrossEntropyLoss,
    torch.nn.Softmax: fst.Softmax,
    torch.nn.LogSoftmax: fst.LogSoftmax,
}


def _module_configs(cls, dtype):
    """torch's ModuleInfo configurations of ``cls`` in ``dtype`` (seeded)."""
    info = next(m for m in module_db if m.module_cls is cls)
    torch.manual_seed(0)
    configs = info.module_inputs_func(
        info, device="cpu", dtype=dtype, requires_grad=True, training=True
    )
    assert configs
    return configs


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("cls", list(MODULES), ids=lambda c: c.__name__)
def test_moduleinfo_configurations_match_torch(cls, dtype):
    for i, config in enumerate(_module_configs(cls, dtype)):
        c, f = config.constructor_input, config.forward_input
        theirs_m, ours_m = cls(*c.args, **c.kwargs), MODULES[cls](*c.args, **c.kwargs)
        results = []
        for module in (theirs_m, ours_m):
            x = f.args[0].detach().clone().requires_grad_()
            out = module(x, *f.args[1:], **f.kwargs)
            g = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(i))
            (grad,) = torch.autograd.grad(out, x, g)
            results.append((out.detach(), grad))
        assert_close(results[1][0], results[0][0], msg=lambda m, d=config.desc: f"{d}: {m}")
        assert_close(results[1][1], results[0][1], msg=lambda m, d=config.desc: f"{d} grad: {m}")


def _up(v):
    return v.detach().double() if isinstance(v, torch.Tensor) and v.is_floating_point() else v


@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=str)
@pytest.mark.parametrize("cls", list(MODULES), ids=lambda c: c.__name__)
def test_moduleinfo_two_byte_configurations_match_float64(cls, dtype):
    """Every ModuleInfo configuration in float16 and bfloat16, against the
    same module on the float64 values, as the OpInfo samples above."""
    for i, config in enumerate(_module_configs(cls, dtype)):
        c, f = config.constructor_input, config.forward_input
        modules = [
            (cls(*c.args, **c.kwargs), lambda v: v),
            (MODULES[cls](*c.args, **c.kwargs), lambda v: v),
            (cls(*map(_up, c.args), **{k: _up(v) for k, v in c.kwargs.items()}), _up),
        ]
        results = []
        for module, cast in modules:
            x = cast(f.args[0]).detach().clone().requires_grad_()
            rest = [cast(a) for a in f.args[1:]]
            out = module(x, *rest, **{k: cast(v) for k, v in f.kwargs.items()})
            gen = torch.Generator().manual_seed(i)
            g = torch.randn(out.shape, dtype=dtype, generator=gen).to(out.dtype)
            (grad,) = torch.autograd.grad(out, x, g)
            results.append((out.detach(), grad))
        (theirs, their_grad), (ours, our_grad), (exact, exact_grad) = results
        _assert_no_worse(ours, theirs, exact, config.desc)
        _assert_no_worse(our_grad, their_grad, exact_grad, f"{config.desc} grad")


# ------------------------------------------------------------------- the operators


def _opcheck_cases():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 5, dtype=torch.float64, generator=g, requires_grad=True)
    x3 = torch.randn(3, 5, 2, dtype=torch.float64, generator=g, requires_grad=True)
    t = torch.tensor([0, 4, 2, 1, 3, 2])
    p = torch.softmax(torch.randn(6, 5, dtype=torch.float64, generator=g), 1)
    w = torch.rand(5, dtype=torch.float64, generator=g) + 0.5
    xent = _ops.cross_entropy_op
    yield xent, (x, t, None, -100, "mean", 0.0, 0.0, 0.0, True)
    yield xent, (x, t, w, 2, "sum", 0.1, 0.01, 3.0, True)
    yield xent, (x, t, w, 2, "none", 0.1, 0.01, 3.0, False)
    yield xent, (x, p, w, -100, "mean", 0.2, 0.0, 0.0, False)
    yield xent, (x3, torch.tensor([[0, 1], [4, 3], [2, 2]]), None, 3, "mean", 0.0, 0.0, 0.0, False)
    lse = torch.logsumexp(x.detach(), 1)
    # The backward operator has no derivative of its own (double backward is refused).
    grad_out = torch.rand(6, dtype=torch.float64)
    yield (
        _ops.cross_entropy_backward_op,
        (grad_out, x.detach(), t, w, lse, -100, "none", 0.1, 0.0, 0.0),
    )
    for op in (_ops.softmax_op, _ops.log_softmax_op):
        yield op, (x, 1)
        yield op, (x3, 0)
    yield _ops.logsumexp_op, (x3, [0, 2], False)
    yield _ops.logsumexp_op, (x3, [1], True)


@pytest.mark.parametrize("case", range(len(list(_opcheck_cases()))))
def test_opcheck(case):
    op, args = list(_opcheck_cases())[case]
    torch.library.opcheck(op, args)


def test_compiled_model_matches_eager_torch_without_graph_break():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 11))
    x, t = torch.randn(32, 8), torch.randint(0, 11, (32,))
    ours = torch.compile(
        lambda a: (
            fst.cross_entropy(model(a), t, label_smoothing=0.1)
            + fst.logsumexp(fst.log_softmax(model(a), 1), 1).sum()
            + fst.softmax(model(a), -1)[:, 0].sum()
        ),
        fullgraph=True,
    )
    loss = ours(x)
    loss.backward()
    our_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    ref = (
        F.cross_entropy(model(x), t, label_smoothing=0.1)
        + torch.logsumexp(F.log_softmax(model(x), 1), 1).sum()
        + F.softmax(model(x), -1)[:, 0].sum()
    )
    ref.backward()
    assert_close(loss, ref)
    for a, p in zip(our_grads, model.parameters()):
        assert_close(a, p.grad)


def test_training_matches_torch_step_by_step():
    losses = []
    for loss_fn in (torch.nn.CrossEntropyLoss(), fst.CrossEntropyLoss()):
        torch.manual_seed(0)
        model = torch.nn.Sequential(
            torch.nn.Linear(20, 32), torch.nn.ReLU(), torch.nn.Linear(32, 7)
        )
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        data = torch.Generator().manual_seed(1)
        curve = []
        for _ in range(20):
            x, t = torch.randn(64, 20, generator=data), torch.randint(0, 7, (64,), generator=data)
            opt.zero_grad()
            loss = loss_fn(model(x), t)
            loss.backward()
            opt.step()
            curve.append(loss.detach())
        losses.append(torch.stack(curve))
    assert_close(losses[1], losses[0])


# -------------------------------------------------------------- autograd paths


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_gradient_scaled_by_grad_output_and_accumulated(reduction):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(10, 6, dtype=torch.float64, generator=g)
    t = torch.randint(0, 6, (10,), generator=g)
    shape = (10,) if reduction == "none" else ()
    scale = torch.rand(shape, dtype=torch.float64, generator=g) + 0.5
    grads = []
    for fn in (F.cross_entropy, fst.cross_entropy):
        xx = x.clone().requires_grad_()
        loss = fn(xx, t, reduction=reduction, label_smoothing=0.1)
        (loss * scale * 3).sum().backward(retain_graph=True)
        loss.sum().backward()  # a second backward through the same graph accumulates
        grads.append(xx.grad)
    assert_close(grads[1], grads[0])


def test_logits_of_a_linear_layer_get_their_gradient():
    torch.manual_seed(0)
    layer = torch.nn.Linear(12, 9, dtype=torch.float64)
    x, t = torch.randn(40, 12, dtype=torch.float64), torch.randint(0, 9, (40,))
    F.cross_entropy(layer(x), t, ignore_index=3).backward()
    want = layer.weight.grad.clone()
    layer.zero_grad()
    fst.cross_entropy(layer(x), t, ignore_index=3).backward()
    assert_close(layer.weight.grad, want)


def test_probability_targets_get_their_gradient():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(7, 4, 3, dtype=torch.float64, generator=g, requires_grad=True)
    p = torch.softmax(torch.randn(7, 4, 3, dtype=torch.float64, generator=g), 1)
    p.requires_grad_()
    w = torch.rand(4, dtype=torch.float64, generator=g) + 0.5
    for reduction in ("mean", "sum", "none"):
        assert torch.autograd.gradcheck(
            lambda a, q, r=reduction: fst.cross_entropy(
                a, q, w, reduction=r, label_smoothing=0.3, softcap=2.0
            ),
            (x, p),
        )


def test_z_loss_and_softcap_match_their_formula():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(9, 5, dtype=torch.float64, generator=g, requires_grad=True)
    t = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2, 3])
    cap, z = 2.5, 0.02
    capped = cap * torch.tanh(x / cap)
    per = F.cross_entropy(capped, t, ignore_index=2, reduction="none")
    keep = (t != 2).double()
    want = (per + z * torch.logsumexp(capped, 1) ** 2 * keep).sum() / keep.sum()
    (want_grad,) = torch.autograd.grad(want, x)
    got = fst.cross_entropy(x, t, ignore_index=2, z_loss=z, softcap=cap)
    (got_grad,) = torch.autograd.grad(got, x)
    assert_close(got, want)
    assert_close(got_grad, want_grad)
    assert torch.autograd.gradcheck(
        lambda a: fst.cross_entropy(a, t, ignore_index=2, z_loss=z, softcap=cap), (x,)
    )


def test_double_backward_is_refused_with_a_clear_error():
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    loss = fst.cross_entropy(x, torch.tensor([0, 1, 2, 0]))
    with pytest.raises(RuntimeError, match="does not support double backward"):
        torch.autograd.grad(loss, x, create_graph=True)


def test_softmax_family_supports_double_backward():
    x = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    for fn in (fst.softmax, fst.log_softmax):
        assert torch.autograd.gradgradcheck(lambda a, fn=fn: fn(a, 1), (x,))
    assert torch.autograd.gradgradcheck(lambda a: fst.logsumexp(a, 1), (x,))


def test_torch_func_transforms_run_on_torchs_operators():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(6, 4, dtype=torch.float64, generator=g)
    t = torch.randint(0, 4, (6,), generator=g)
    got = torch.func.grad(lambda a: fst.cross_entropy(a, t, z_loss=0.1, softcap=3.0))(x)
    xx = x.clone().requires_grad_()
    fst.cross_entropy(xx, t, z_loss=0.1, softcap=3.0).backward()
    assert_close(got, xx.grad)
    assert_close(torch.func.vmap(lambda r: fst.softmax(r, 0))(x), torch.softmax(x, 1))
    hess = torch.func.hessian(lambda a: fst.cross_entropy(a, t))(x)
    assert_close(hess, torch.func.hessian(lambda a: F.cross_entropy(a, t))(x))


# ---------------------------------------------------------------- tensors


def test_cpu_tensors_are_shared_without_a_copy():
    x = torch.randn(8, 5)
    t = torch.randint(0, 5, (8,))
    assert np.shares_memory(_ops._array(x), x.numpy())
    assert np.shares_memory(_ops._array(t), t.numpy())
    assert np.shares_memory(_ops._array(x.t()), x.numpy())


@pytest.mark.parametrize("view", ["transposed", "expanded", "sliced", "flipped-copy"])
def test_views_match_torch(view):
    g = torch.Generator().manual_seed(4)
    base = torch.randn(12, 10, dtype=torch.float64, generator=g)
    x = {
        "transposed": base.t()[:, :7].t(),  # (7, 10) read through a transposed view
        "expanded": base[:1].expand(12, 10),
        "sliced": base[::2, 1::3],
        "flipped-copy": base.flip(0),
    }[view]
    t = torch.randint(0, x.shape[1], (x.shape[0],), generator=g)
    for ours, theirs in [
        (fst.softmax(x, 0), torch.softmax(x, 0)),
        (fst.log_softmax(x, 1), torch.log_softmax(x, 1)),
        (fst.logsumexp(x, 0), torch.logsumexp(x, 0)),
        (fst.cross_entropy(x, t, reduction="none"), F.cross_entropy(x, t, reduction="none")),
    ]:
        assert_close(ours, theirs)
    xr = x.detach().requires_grad_()
    (ours,) = torch.autograd.grad(fst.cross_entropy(xr, t), xr)
    (theirs,) = torch.autograd.grad(F.cross_entropy(xr, t), xr)
    assert_close(ours, theirs)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_two_byte_dtypes_are_computed_in_float32_and_rounded_once(dtype):
    g = torch.Generator().manual_seed(6)
    x = (3 * torch.randn(64, 33, generator=g)).to(dtype)
    t = torch.randint(0, 33, (64,), generator=g)
    x32 = x.float()
    for ours, exact in [
        (fst.softmax(x, 1), torch.softmax(x32, 1)),
        (fst.log_softmax(x, 0), torch.log_softmax(x32, 0)),
        (fst.logsumexp(x, 1), torch.logsumexp(x32, 1)),
        (fst.cross_entropy(x, t, reduction="none"), F.cross_entropy(x32, t, reduction="none")),
    ]:
        assert ours.dtype == dtype
        assert_close(ours, exact.to(dtype), rtol=0, atol=0)  # rounded once from float32
    xr = x.clone().requires_grad_()
    (ours,) = torch.autograd.grad(fst.cross_entropy(xr, t, label_smoothing=0.1), xr)
    (theirs,) = torch.autograd.grad(F.cross_entropy(xr, t, label_smoothing=0.1), xr)
    assert ours.dtype == dtype
    assert_close(ours, theirs)  # torch's own 2-byte result, within its tolerances


@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=str)
def test_two_byte_tensors_reach_the_kernels_without_a_copy(dtype, monkeypatch):
    pytest.importorskip("ml_dtypes")
    x = (3 * torch.randn(8, 300, generator=torch.Generator().manual_seed(7))).to(dtype)[:, ::2]
    a = _ops._array(x)
    assert a.__array_interface__["data"][0] == x.data_ptr()
    assert a.strides == tuple(2 * s for s in x.stride()) and a.dtype.itemsize == 2
    t = torch.arange(8) % 150
    results = [fst.softmax(x, 1), fst.cross_entropy(x, t, reduction="none")]
    # bfloat16 without ml_dtypes: a float32 copy, the same results
    monkeypatch.setattr(_ops, "_numpy_half", lambda d: None)
    assert _ops._array(x).dtype == np.float32
    again = [fst.softmax(x, 1), fst.cross_entropy(x, t, reduction="none")]
    for r, s in zip(results, again):
        assert r.dtype == s.dtype == dtype
        assert torch.equal(r, s)


def test_other_devices_and_subclasses_go_to_torch():
    x = torch.randn(4, 3, device="meta")
    t = torch.zeros(4, dtype=torch.int64, device="meta")
    assert fst.cross_entropy(x, t, z_loss=0.1).device.type == "meta"
    assert fst.softmax(x, 1).device.type == "meta"
    assert fst.logsumexp(x, 1).shape == (4,)


# ------------------------------------------------------------------ bad input


def test_bad_input_raises_where_torch_raises():
    x = torch.randn(4, 3)
    cases = [
        (x, torch.tensor([0, 1, 2, 3])),  # label out of range
        (x, torch.tensor([0, 1, 2, 0], dtype=torch.int32)),  # neither Long nor Byte
        (x, torch.tensor([0, 1, 2])),  # shape mismatch
        (x, torch.randn(4, 4)),  # probability shape mismatch
        (x.double(), torch.tensor([0, 1, 2, 0]), torch.ones(3)),  # weight dtype
        (x, torch.tensor([0, 1, 2, 0]), torch.ones(4)),  # weight shape
        (torch.tensor([[1, 2], [3, 4]]), torch.tensor([0, 1])),  # integer logits
    ]
    for args in cases:
        with pytest.raises(Exception):  # noqa: B017 - torch's own type varies
            F.cross_entropy(*args)
        with pytest.raises((TypeError, ValueError, IndexError, RuntimeError)):
            fst.cross_entropy(*args)
    with pytest.raises(TypeError, match="must be Tensors"):
        fst.cross_entropy(np.zeros((2, 3)), torch.tensor([0, 1]))
    with pytest.raises(IndexError, match="Dimension out of range"):
        fst.softmax(x, 2)
    with pytest.raises(RuntimeError, match="not differentiable with respect to weight"):
        fst.cross_entropy(x, torch.tensor([0, 1, 2, 0]), torch.ones(3, requires_grad=True))
    with pytest.raises(ValueError, match="reduction"):
        fst.cross_entropy(x, torch.tensor([0, 1, 2, 0]), reduction="avg")


# ---------------------------------------------------------------- modules and patch


def test_modules_are_drop_ins_state_dict_and_pickle():
    w = torch.rand(5) + 0.5
    theirs = torch.nn.CrossEntropyLoss(weight=w, ignore_index=2, label_smoothing=0.1)
    ours = fst.CrossEntropyLoss(weight=w, ignore_index=2, label_smoothing=0.1, z_loss=1e-3)
    assert isinstance(ours, torch.nn.CrossEntropyLoss)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    fresh = fst.CrossEntropyLoss(weight=torch.ones(5))
    fresh.load_state_dict(theirs.state_dict())
    assert_close(fresh.weight, w)
    back = pickle.loads(pickle.dumps(ours))
    assert type(back) is fst.CrossEntropyLoss
    assert (back.z_loss, back.ignore_index, back.label_smoothing) == (1e-3, 2, 0.1)
    buf = io.BytesIO()
    torch.save(theirs, buf)
    buf.seek(0)
    assert isinstance(torch.load(buf, weights_only=False), torch.nn.CrossEntropyLoss)
    assert "z_loss=0.001" in repr(ours)
    x, t = torch.randn(6, 5), torch.tensor([0, 1, 2, 3, 4, 2])
    assert_close(copy.deepcopy(ours)(x, t), ours(x, t))
    assert_close(fst.CrossEntropyLoss(w, ignore_index=2, label_smoothing=0.1)(x, t), theirs(x, t))
    for cls, mine in ((torch.nn.Softmax, fst.Softmax), (torch.nn.LogSoftmax, fst.LogSoftmax)):
        m = pickle.loads(pickle.dumps(mine(dim=0)))
        assert isinstance(m, cls) and m.dim == 0
        assert_close(m(x), cls(dim=0)(x))


def test_legacy_reduction_arguments():
    x, t = torch.randn(6, 5), torch.tensor([0, 1, 2, 3, 4, 2])
    ours = fst.CrossEntropyLoss(size_average=False)
    assert ours.reduction == "sum"
    assert_close(ours(x, t), F.cross_entropy(x, t, reduction="sum"))


def test_patch_routes_torch_cross_entropy_and_unpatch_restores():
    x = torch.randn(6, 5, requires_grad=True)
    t = torch.tensor([0, 1, 2, 3, 4, 2])
    torch_fn = F.cross_entropy
    want = torch_fn(x, t, label_smoothing=0.1)
    assert not fst.patched()
    with fst.patch():
        assert fst.patched() and F.cross_entropy is not torch_fn
        got = torch.nn.CrossEntropyLoss(label_smoothing=0.1)(x, t)
        assert "fastsoftmax" in got.grad_fn.name().lower()
        assert_close(got, want)
        assert_close(F.cross_entropy(x, t, size_average=False), torch_fn(x, t, reduction="sum"))
        assert F.cross_entropy(x.to("meta"), t.to("meta")).device.type == "meta"
    assert F.cross_entropy is torch_fn and not fst.patched()
    fst.patch()
    try:
        with fst.patch():  # already patched: the inner block leaves it so
            pass
        assert fst.patched()
    finally:
        fst.unpatch()
    assert F.cross_entropy is torch_fn


def test_import_fastsoftmax_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, fastsoftmax; fastsoftmax.cross_entropy; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------- gradient buffers


def test_gradient_buffers_are_reused_only_once_torch_lets_go():
    from fastsoftmax.torch import _buffers

    fst.empty_cache()
    g = torch.Generator().manual_seed(8)
    x = torch.randn(512, 1024, generator=g, requires_grad=True)  # a 2 MiB gradient
    t = torch.randint(0, 1024, (512,), generator=g)
    assert x.numel() * 4 >= _buffers.MIN_BYTES
    (first,) = torch.autograd.grad(fst.cross_entropy(x, t), x)
    (second,) = torch.autograd.grad(fst.cross_entropy(x, t), x)
    assert first.data_ptr() != second.data_ptr()  # the first is still held
    view = first[::2]
    ptr = first.data_ptr()
    del first
    (third,) = torch.autograd.grad(fst.cross_entropy(x, t), x)
    assert third.data_ptr() != ptr  # a view of it is still held
    del view, second
    (fourth,) = torch.autograd.grad(fst.cross_entropy(x, t, label_smoothing=0.1), x)
    assert fourth.data_ptr() in (ptr, third.data_ptr()) or len(_buffers._kept) == 1
    (want,) = torch.autograd.grad(F.cross_entropy(x, t, label_smoothing=0.1), x)
    assert_close(fourth, want)  # a reused buffer is overwritten throughout
    del fourth
    (fifth,) = torch.autograd.grad(fst.cross_entropy(x, t, reduction="sum"), x)
    assert_close(fifth, torch.autograd.grad(F.cross_entropy(x, t, reduction="sum"), x)[0])
    fst.empty_cache()
    assert not _buffers._kept


def test_small_gradients_are_not_kept():
    from fastsoftmax.torch import _buffers

    fst.empty_cache()
    x = torch.randn(16, 10, requires_grad=True)
    torch.autograd.grad(fst.cross_entropy(x, torch.zeros(16, dtype=torch.int64)), x)
    assert not _buffers._kept


def test_small_calls_go_to_torchs_own_kernel(monkeypatch):
    from fastsoftmax.torch import _functional

    monkeypatch.setattr(_functional, "torch_below", 2**17)
    small = torch.randn(64, 10, requires_grad=True)
    large = torch.randn(512, 256, requires_grad=True)  # 2**17 logits
    t_small, t_large = torch.zeros(64, dtype=torch.int64), torch.zeros(512, dtype=torch.int64)
    assert "fastsoftmax" not in fst.cross_entropy(small, t_small).grad_fn.name().lower()
    assert "fastsoftmax" in fst.cross_entropy(large, t_large).grad_fn.name().lower()
    for fn in (fst.softmax, fst.log_softmax):
        assert "fastsoftmax" not in fn(small, 1).grad_fn.name().lower()
        assert "fastsoftmax" in fn(large, 1).grad_fn.name().lower()
    assert "fastsoftmax" not in fst.logsumexp(small, 1).grad_fn.name().lower()
    assert "fastsoftmax" in fst.logsumexp(large, 1).grad_fn.name().lower()
    # z_loss and softcap on small calls: composed from torch's operators
    got = fst.cross_entropy(small, t_small, z_loss=0.1, softcap=2.0)
    monkeypatch.setattr(_functional, "torch_below", 0)
    assert_close(got, fst.cross_entropy(small, t_small, z_loss=0.1, softcap=2.0))


def test_readme_training_loop_runs():
    import pathlib

    readme = pathlib.Path(__file__).resolve().parents[1] / "README.md"
    if not readme.exists():  # the wheel's tests run from a copy of tests/ alone
        pytest.skip("README.md is not beside tests/")
    text = readme.read_text()
    section = text[text.index("## PyTorch") :]
    code = section[section.index("```python") + len("```python") : section.index("```\n\n")]
    scope = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert torch.isfinite(scope["loss"]).item()
    assert "fastsoftmax" in scope["loss"].grad_fn.name().lower()


def test_probabilities_of_another_dtype_promote_the_loss_as_torch():
    x = torch.randn(3, 5, requires_grad=True)
    p = torch.softmax(torch.randn(3, 5), 1).double()
    ours, theirs = fst.cross_entropy(x, p), F.cross_entropy(x, p)
    assert ours.dtype == theirs.dtype == torch.float64
    assert_close(ours, theirs, rtol=1e-6, atol=1e-6)  # computed in float32
    assert_close(torch.autograd.grad(ours, x)[0], torch.autograd.grad(theirs, x)[0])


# --------------------------------------------------------------- linear_cross_entropy

LINEAR_CASES = {
    "plain": dict(),
    "bias+weight": dict(bias=True, weight=True),
    "ignore+smoothing": dict(ignore_index=2, label_smoothing=0.1),
    "sum": dict(reduction="sum", bias=True),
    "none": dict(reduction="none", ignore_index=1),
    "probabilities": dict(probs=True, bias=True, weight=True, label_smoothing=0.1),
    "probabilities none": dict(probs=True, reduction="none"),
}


def _linear_inputs(dtype, bias, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(30, 6, dtype=dtype, generator=g, requires_grad=True)
    w = (0.5 * torch.randn(11, 6, dtype=dtype, generator=g)).requires_grad_()
    b = torch.randn(11, dtype=dtype, generator=g).requires_grad_() if bias else None
    t = torch.randint(0, 11, (30,), generator=g)
    return x, w, b, t


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", list(LINEAR_CASES))
def test_linear_cross_entropy_matches_torchs_reference_path(name, dtype):
    case = dict(LINEAR_CASES[name])
    x, w, b, t = _linear_inputs(dtype, case.pop("bias", False))
    if case.pop("weight", False):
        case["weight"] = torch.rand(11, dtype=dtype) + 0.5
    if case.pop("probs", False):
        t = torch.softmax(torch.randn(30, 11, dtype=dtype), dim=1)
    leaves = [x, w] + ([b] if b is not None else [])
    results = []
    for fn in (F.linear_cross_entropy, fst.linear_cross_entropy):
        loss = fn(x, w, t, linear_bias=b, **case)
        g = torch.rand(loss.shape, dtype=dtype, generator=torch.Generator().manual_seed(1)) + 0.5
        results.append((loss.detach(), torch.autograd.grad(loss, leaves, g)))
    (want, want_grads), (got, got_grads) = results
    assert_close(got, want)
    for a, e in zip(got_grads, want_grads):
        assert_close(a, e)
    if case.get("reduction", "mean") != "none":
        assert "fastsoftmax" in fst.linear_cross_entropy(x, w, t, **case).grad_fn.name().lower()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name", list(LINEAR_CASES))
def test_two_byte_linear_cross_entropy_is_float32_inside(name, dtype):
    # Loss and gradients of 2-byte tensors in our kernels, against torch's
    # reference path in float64 on the same (exact) values, rounded to the
    # dtype: within assert_close's defaults for that dtype.
    case = dict(LINEAR_CASES[name])
    x, w, b, t = _linear_inputs(dtype, case.pop("bias", False), seed=5)
    if case.pop("weight", False):
        case["weight"] = torch.rand(11) + 0.5
    if case.pop("probs", False):
        t = torch.softmax(torch.randn(30, 11), dim=1).to(dtype)
    leaves = [x, w] + ([b] if b is not None else [])
    loss = fst.linear_cross_entropy(x, w, t, linear_bias=b, **case)
    assert loss.dtype == dtype
    if case.get("reduction", "mean") != "none":
        assert "fastsoftmax" in loss.grad_fn.name().lower()
    g = torch.rand(loss.shape, generator=torch.Generator().manual_seed(1)) + 0.5
    grads = torch.autograd.grad(loss, leaves, g.to(dtype))
    wide = [v.detach().double().requires_grad_() for v in leaves]
    xd, wd, bd = wide[0], wide[1], (wide[2] if b is not None else None)
    cased = {k: (v.double() if torch.is_tensor(v) else v) for k, v in case.items()}
    td = t.double() if t.is_floating_point() else t
    want = F.linear_cross_entropy(xd, wd, td, linear_bias=bd, **cased)
    want_grads = torch.autograd.grad(want, wide, g.to(dtype).double())
    assert_close(loss, want.to(dtype))
    for a, e in zip(grads, want_grads):
        assert a.dtype == dtype
        assert_close(a, e.to(dtype))


def test_linear_cross_entropy_z_loss_and_softcap_compose_as_cross_entropy():
    x, w, b, t = _linear_inputs(torch.float64, True, seed=3)
    got = fst.linear_cross_entropy(x, w, t, linear_bias=b, z_loss=0.01, softcap=3.0)
    want = fst.cross_entropy(F.linear(x, w, b), t, z_loss=0.01, softcap=3.0)
    assert_close(got, want)
    assert torch.autograd.gradcheck(
        lambda a, c, d: fst.linear_cross_entropy(a, c, t, linear_bias=d, z_loss=0.01, softcap=3.0),
        (x, w, b),
    )


def test_linear_cross_entropy_operators_pass_opcheck():
    x, w, b, t = _linear_inputs(torch.float64, True, seed=4)
    op = _linear.linear_cross_entropy_op
    torch.library.opcheck(op, (x, w, t, b, None, -(2**63), "mean", 0.1, 0.0, 0.0, True))
    torch.library.opcheck(op, (x, w, t, None, None, 3, "none", 0.0, 1e-3, 2.0, False))
    q = torch.softmax(torch.randn(30, 11, dtype=torch.float64), dim=1)
    torch.library.opcheck(op, (x, w, q, b, None, -(2**63), "none", 0.2, 0.0, 0.0, False))
    torch.library.opcheck(op, (x, w, q, None, None, -(2**63), "sum", 0.0, 0.0, 0.0, True))
    g = torch.rand(30, dtype=torch.float64)
    torch.library.opcheck(
        _linear.linear_cross_entropy_backward_op,
        (g, x.detach(), w.detach(), t, None, None, -100, "none", 0.0, 0.0, 0.0),
    )


def test_linear_cross_entropy_compiles_and_its_module_is_torchs():
    torch.manual_seed(0)
    ours = fst.LinearCrossEntropyLoss(6, 11, bias=True)
    theirs = torch.nn.LinearCrossEntropyLoss(6, 11, bias=True)
    theirs.load_state_dict(ours.state_dict())
    assert isinstance(ours, torch.nn.LinearCrossEntropyLoss)
    x, _, _, t = _linear_inputs(torch.float32, False, seed=5)
    compiled = torch.compile(lambda a: ours(a, t), fullgraph=True)
    loss = compiled(x)
    loss.backward()
    got = [p.grad.clone() for p in ours.parameters()]
    want_loss = theirs(x, t)
    want_loss.backward()
    assert_close(loss, want_loss)
    for a, p in zip(got, theirs.parameters()):
        assert_close(a, p.grad)
    assert pickle.loads(pickle.dumps(ours)).linear.weight.shape == (11, 6)


def test_linear_cross_entropy_refuses_double_backward():
    x, w, _, t = _linear_inputs(torch.float64, False)
    with pytest.raises(RuntimeError, match="does not support double backward"):
        torch.autograd.grad(fst.linear_cross_entropy(x, w, t), x, create_graph=True)
