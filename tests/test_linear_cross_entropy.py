"""linear_cross_entropy against the plain NumPy reference of the logits it never holds."""

import numpy as np
import pytest

import fastsoftmax as fs
from fastsoftmax import _linear_cross_entropy, reference


def reference_all(x, w, t, b, grad_output, **options):
    """Logits in float64, the reference's loss and gradient, and the products."""
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    z = x64.reshape(-1, x.shape[-1]) @ w64.T
    if b is not None:
        z += b
    reduction = options.get("reduction", "mean")
    g = grad_output
    if reduction == "none" and g is not None:
        g = np.asarray(g).reshape(-1)
    rows = t.reshape(-1, w.shape[0]) if t.dtype.kind == "f" else t.reshape(-1)
    loss, grad, _ = reference.cross_entropy_with_grad(z, rows, grad_output=g, **options)
    if reduction == "none":
        loss = np.asarray(loss).reshape(x.shape[:-1])
    gx = (grad @ w64).reshape(x.shape)
    return loss, gx, grad.T @ x64.reshape(-1, x.shape[-1]), grad.sum(axis=0)


def _blocks(monkeypatch, block_bytes):
    """Blocks of at most block_bytes of logits, however few rows they hold."""
    monkeypatch.setattr(_linear_cross_entropy, "BLOCK_BYTES", block_bytes)
    monkeypatch.setattr(_linear_cross_entropy, "MIN_BLOCK_ROWS", 1)


def _problem(rng, shape, dtype, n_classes, scale, n_features=9):
    """Features, weights and class targets of random values."""
    x = rng.standard_normal(shape + (n_features,)).astype(dtype)
    w = (scale * rng.standard_normal((n_classes, n_features))).astype(dtype)
    return x, w, rng.integers(0, n_classes, size=shape)


CASES = {
    "plain": dict(),
    "bias": dict(bias=True),
    "weight+ignore": dict(weight=True, ignore_index=3),
    "smoothing": dict(label_smoothing=0.2),
    "z_loss+softcap": dict(z_loss=1e-2, softcap=4.0, bias=True),
    "sum": dict(reduction="sum", grad_output=0.7),
    "none": dict(reduction="none", grad_output=True, weight=True),
    "3-d input": dict(shape=(6, 7), bias=True, ignore_index=2),
    "all ignored": dict(ignore_index=0, all_ignored=True),
    "probabilities": dict(probs=np.float64),
    "probabilities+weight+smoothing": dict(
        probs=np.float32, weight=True, label_smoothing=0.3, bias=True
    ),
    "probabilities none 3-d": dict(
        probs=np.float64, shape=(5, 6), reduction="none", grad_output=True, z_loss=1e-2
    ),
    "probabilities sum softcap": dict(probs=np.float64, reduction="sum", softcap=2.0),
}


def _case_inputs(name, dtype, seed):
    """Features, weights, targets, bias (of ``dtype``) and grad_output of a
    case of CASES, and the options left for the call."""
    case = dict(CASES[name])
    rng = np.random.default_rng(hash(name) % 2**32 + seed)
    shape = case.pop("shape", (40,))
    n_classes = 13
    x, w, t = _problem(rng, shape, dtype, n_classes, 0.5)
    if case.pop("all_ignored", False):
        t[...] = 0
    probs = case.pop("probs", None)
    if probs is not None:  # rows that do not sum to 1 too: torch does not ask it
        t = rng.random(shape + (n_classes,)) ** 3
        t[1:] /= t[1:].sum(axis=-1, keepdims=True)
        t = t.astype(probs)
    b = rng.standard_normal(n_classes).astype(dtype) if case.pop("bias", False) else None
    if case.pop("weight", False):
        case["weight"] = rng.random(n_classes) + 0.5
    g = case.pop("grad_output", None)
    if g is True:
        g = rng.random(shape) + 0.5
    return x, w, t, b, g, case


@pytest.mark.parametrize("block_bytes", [2**30, 3 * 13 * 8], ids=["one block", "many blocks"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", list(CASES))
def test_matches_the_logits_reference(name, dtype, block_bytes, monkeypatch):
    _blocks(monkeypatch, block_bytes)
    # many blocks: the weight gradient is accumulated 5 (float64) or 10 rows at a time
    monkeypatch.setattr(_linear_cross_entropy, "ACCUMULATE_BYTES", min(block_bytes, 5 * 9 * 8))
    x, w, t, bias, g, case = _case_inputs(name, dtype, seed=0)
    b = None if bias is None else bias.astype(np.float64)
    want = reference_all(x, w, t, b, g, **case)
    got = fs.linear_cross_entropy_with_grad(x, w, t, linear_bias=bias, grad_output=g, **case)
    loss = fs.linear_cross_entropy(x, w, t, linear_bias=bias, **case)
    rtol = 1e-10 if dtype == np.float64 else 2e-4
    atol = 1e-12 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(loss, want[0], rtol=rtol, atol=atol, equal_nan=True)
    np.testing.assert_allclose(got[0], want[0], rtol=rtol, atol=atol, equal_nan=True)
    for a, e in zip(got[1:3], want[1:3]):
        assert a.dtype == dtype and a.shape == e.shape
        np.testing.assert_allclose(a, e, rtol=rtol, atol=atol, equal_nan=True)
    if b is None:
        assert got[3] is None
    else:
        np.testing.assert_allclose(got[3], want[3], rtol=rtol, atol=atol, equal_nan=True)


try:
    import ml_dtypes
except ImportError:  # pragma: no cover - ml_dtypes is in the test extra
    ml_dtypes = None
HALVES = [np.float16] + ([] if ml_dtypes is None else [ml_dtypes.bfloat16])


@pytest.mark.parametrize("block_bytes", [2**30, 3 * 13 * 4], ids=["one block", "many blocks"])
@pytest.mark.parametrize("dtype", HALVES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", list(CASES))
def test_two_byte_inputs_are_float32_inside_and_rounded_once(name, dtype, block_bytes, monkeypatch):
    # float16 and bfloat16 features and weights: each gradient element is the
    # float64 reference's rounded once to the input's dtype (within one of its
    # ulps, and float32's error on the products); loss and lse are float32.
    _blocks(monkeypatch, block_bytes)
    x, w, t, b, g, case = _case_inputs(name, dtype, seed=1)
    b64 = None if b is None else b.astype(np.float64)
    want = reference_all(x, w, t, b64, g, **case)
    got = fs.linear_cross_entropy_with_grad(
        x, w, t, linear_bias=b, grad_output=g, return_lse=True, **case
    )
    loss, lse = fs.linear_cross_entropy(x, w, t, linear_bias=b, return_lse=True, **case)
    for a in (loss, lse, got[0], got[4]):
        assert np.asarray(a).dtype == np.float32
    np.testing.assert_allclose(loss, want[0], rtol=2e-6, atol=1e-6, equal_nan=True)
    np.testing.assert_allclose(got[0], want[0], rtol=2e-6, atol=1e-6, equal_nan=True)
    z = x.astype(np.float64).reshape(-1, x.shape[-1]) @ w.astype(np.float64).T
    z = z if b64 is None else z + b64
    if case.get("softcap"):
        z = case["softcap"] * np.tanh(z / case["softcap"])
    np.testing.assert_allclose(lse.reshape(-1), lse_of(z), rtol=2e-6)
    for a, e in zip(got[1:4], want[1:4]):
        if a is None:
            assert b is None
            continue
        assert a.dtype == dtype and a.shape == e.shape
        one_ulp = np.spacing(np.abs(e).astype(dtype)).astype(np.float64)
        err = np.abs(a.astype(np.float64) - e)
        assert np.all(err <= one_ulp + 1e-6 * np.abs(e).max()), name


def test_lse_is_that_of_the_logits():
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((20, 5)), rng.standard_normal((7, 5))
    t = rng.integers(0, 7, 20)
    loss, lse = fs.linear_cross_entropy(x, w, t, return_lse=True, softcap=3.0)
    z = 3.0 * np.tanh((x @ w.T) / 3.0)
    np.testing.assert_allclose(lse, reference.logsumexp(z, axis=1), rtol=1e-12)
    *_, lse2 = fs.linear_cross_entropy_with_grad(x, w, t, return_lse=True, softcap=3.0)
    np.testing.assert_allclose(lse2, lse, rtol=1e-12)


@pytest.mark.parametrize("block_bytes", [2**30, 3 * 13 * 8], ids=["one block", "many blocks"])
def test_argmax_is_that_of_the_logits(block_bytes, monkeypatch):
    _blocks(monkeypatch, block_bytes)
    rng = np.random.default_rng(2)
    # Small integers: the logits are exact and often tie (the first index wins).
    x = rng.integers(-2, 3, size=(6, 7, 4)).astype(np.float64)
    w = rng.integers(-1, 2, size=(13, 4)).astype(np.float64)
    b = rng.integers(-1, 2, size=13).astype(np.float64)
    x[2, 3, 0] = np.nan  # a NaN row: numpy.argmax's first NaN
    t = rng.integers(0, 13, size=(6, 7))
    z = x @ w.T + b
    want = np.argmax(z, axis=-1)
    assert (np.sort(z, axis=-1)[..., -1] == np.sort(z, axis=-1)[..., -2]).any()  # ties occur
    loss, lse, top = fs.linear_cross_entropy(
        x, w, t, linear_bias=b, return_lse=True, return_argmax=True, softcap=0.5
    )
    assert top.dtype == np.int64 and top.shape == t.shape
    np.testing.assert_array_equal(top, want)
    got = fs.linear_cross_entropy_with_grad(x, w, t, linear_bias=b, return_argmax=True)
    assert len(got) == 5
    np.testing.assert_array_equal(got[4], want)
    got = fs.linear_cross_entropy_with_grad(x, w, t, return_lse=True, return_argmax=True)
    np.testing.assert_array_equal(got[5], np.argmax(x @ w.T, axis=-1))
    np.testing.assert_allclose(got[4], lse_of(x @ w.T), rtol=1e-12)
    # Without it the results are as before.
    assert np.ndim(fs.linear_cross_entropy(x[:1, :1], w, t[:1, :1])) == 0


def lse_of(z):
    return reference.logsumexp(z, axis=-1)


def test_bad_input_is_named():
    x, w, t = np.zeros((4, 3)), np.zeros((5, 3)), np.array([0, 1, 2, 3])
    with pytest.raises(ValueError, match="do not match"):
        fs.linear_cross_entropy(x, np.zeros((5, 4)), t)
    with pytest.raises(TypeError, match="linear_weight has dtype float32"):
        fs.linear_cross_entropy(x, w.astype(np.float32), t)
    with pytest.raises(TypeError, match="input must be a float16, bfloat16, float32 or float64"):
        fs.linear_cross_entropy(x.astype(np.int32), w.astype(np.int32), t)
    with pytest.raises(IndexError, match="target 9 is out of bounds for 5 classes at position"):
        fs.linear_cross_entropy(x, w, np.array([0, 9, 1, 2]))
    with pytest.raises(ValueError, match="target has shape"):
        fs.linear_cross_entropy(x, w, t[:3])
    with pytest.raises(TypeError, match="class indices .* or class probabilities"):
        fs.linear_cross_entropy(x, w, t.astype(complex))
    with pytest.raises(ValueError, match=r"probabilities has shape \(4, 4\), expected \(4, 5\)"):
        fs.linear_cross_entropy(x, w, np.zeros((4, 4)))
    with pytest.raises(ValueError, match="ignore_index"):
        fs.linear_cross_entropy(x, w, np.zeros((4, 5)), ignore_index=1)
    with pytest.raises(ValueError, match="linear_bias has shape"):
        fs.linear_cross_entropy(x, w, t, linear_bias=np.zeros(4))
    with pytest.raises(ValueError, match="reduction"):
        fs.linear_cross_entropy(x, w, t, reduction="avg")
    with pytest.raises(ValueError, match="grad_output has shape"):
        fs.linear_cross_entropy_with_grad(x, w, t, reduction="none", grad_output=np.ones(3))


# ------------------------------------------------------ a vocabulary split in parts

SPLIT_CASES = {
    "plain": dict(),
    "bias+ignore": dict(bias=True, ignore_index=3),
    "z_loss+softcap": dict(z_loss=1e-2, softcap=2.5, bias=True),
    "sum": dict(reduction="sum", grad_output=0.7, ignore_index=5),
    "none": dict(reduction="none", grad_output=True, z_loss=1e-3),
    "3-d input": dict(shape=(5, 8), bias=True),
}


def _parts(cuts, x, w, t, b, g, with_grad, **case):
    """Each part's call, from the lse of the whole vocabulary that the parts'
    linear_logsumexp give."""
    bounds = list(zip(cuts, cuts[1:]))
    softcap = case.get("softcap")
    lse = fs.logsumexp(
        np.stack([
            fs.linear_logsumexp(x, w[a:c], linear_bias=None if b is None else b[a:c],
                                softcap=softcap)
            for a, c in bounds
        ]),
        axis=0,
    )  # fmt: skip
    total = cuts[-1]
    out = []
    for a, c in bounds:
        kw = dict(case, linear_bias=None if b is None else b[a:c], class_offset=a,
                  total_classes=total, lse=lse)  # fmt: skip
        if with_grad:
            out.append(fs.linear_cross_entropy_with_grad(x, w[a:c], t, grad_output=g, **kw))
        else:
            out.append(fs.linear_cross_entropy(x, w[a:c], t, **kw))
    return lse, out


@pytest.mark.parametrize("block_bytes", [2**30, 3 * 13 * 8], ids=["one block", "many blocks"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", list(SPLIT_CASES))
def test_a_split_vocabulary_adds_up_to_the_whole(name, dtype, block_bytes, monkeypatch):
    _blocks(monkeypatch, block_bytes)
    case = dict(SPLIT_CASES[name])
    rng = np.random.default_rng(hash(name) % 2**32)
    shape = case.pop("shape", (40,))
    n_classes = 23
    x, w, t = _problem(rng, shape, dtype, n_classes, 0.7)
    t.reshape(-1)[:3] = case.get("ignore_index", -100)
    b = rng.standard_normal(n_classes).astype(dtype) if case.pop("bias", False) else None
    g = case.pop("grad_output", None)
    if g is True:
        g = rng.random(shape) + 0.5
    want = reference_all(x, w, t, b, g, **case)
    cuts = [0, 9, 10, 23]  # one part of a single class
    lse, parts = _parts(cuts, x, w, t, b, g, True, **case)
    _, losses = _parts(cuts, x, w, t, b, g, False, **case)
    z = x.astype(np.float64) @ w.T.astype(np.float64) + (0 if b is None else b)
    if "softcap" in case:
        z = case["softcap"] * np.tanh(z / case["softcap"])
    assert lse.dtype == np.float64 and lse.shape == shape
    np.testing.assert_allclose(lse, lse_of(z), rtol=1e-6 if dtype == np.float32 else 1e-13)
    rtol = 1e-10 if dtype == np.float64 else 2e-4
    atol = 1e-12 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(sum(p[0] for p in parts), want[0], rtol=rtol, atol=atol)
    np.testing.assert_allclose(sum(losses), want[0], rtol=rtol, atol=atol)
    np.testing.assert_allclose(sum(p[1] for p in parts), want[1], rtol=rtol, atol=atol)
    for i, (a, c) in enumerate(zip(cuts, cuts[1:])):
        assert parts[i][2].shape == (c - a, x.shape[-1]) and parts[i][2].dtype == dtype
        np.testing.assert_allclose(parts[i][2], want[2][a:c], rtol=rtol, atol=atol)
        if b is not None:
            np.testing.assert_allclose(parts[i][3], want[3][a:c], rtol=rtol, atol=atol)


def test_a_split_vocabulary_names_what_it_refuses():
    x, w, t = np.zeros((4, 3)), np.zeros((5, 3)), np.array([0, 1, 2, 7])
    lse = np.zeros(4)
    with pytest.raises(ValueError, match="needs lse"):
        fs.linear_cross_entropy(x, w, t, class_offset=5)
    with pytest.raises(ValueError, match="needs lse"):
        fs.linear_cross_entropy(x, w, t, total_classes=10)
    with pytest.raises(ValueError, match="total_classes=8 is below"):
        fs.linear_cross_entropy(x, w, t, class_offset=5, total_classes=8, lse=lse)
    with pytest.raises(ValueError, match="class_offset must be >= 0"):
        fs.linear_cross_entropy(x, w, t, class_offset=-1, lse=lse)
    with pytest.raises(TypeError, match="class_offset must be an int"):
        fs.linear_cross_entropy(x, w, t, class_offset=1.5, lse=lse)
    with pytest.raises(IndexError, match="target 7 is out of bounds for 6 classes"):
        fs.linear_cross_entropy(x, w, t, total_classes=6, lse=lse)
    with pytest.raises(ValueError, match="lse has shape"):
        fs.linear_cross_entropy(x, w, t, total_classes=10, lse=np.zeros(3))
    refused = {
        "class weights": dict(weight=np.ones(5)),
        "label_smoothing": dict(label_smoothing=0.1),
        "return_argmax": dict(return_argmax=True),
    }
    for what, kw in refused.items():
        with pytest.raises(ValueError, match=f"{what} cannot be used with lse"):
            fs.linear_cross_entropy_with_grad(x, w, t, total_classes=10, lse=lse, **kw)
    with pytest.raises(ValueError, match="class-probability targets cannot"):
        fs.linear_cross_entropy(x, w, np.full((4, 5), 0.2), lse=lse)
    with pytest.raises(ValueError, match="z_loss"):
        fs.linear_cross_entropy(x, w, t, total_classes=10, lse=lse, z_loss=-1.0)


def test_block_bytes_sets_the_rows_of_a_block(monkeypatch):
    rng = np.random.default_rng(7)
    x, w = rng.standard_normal((300, 6)), rng.standard_normal((50, 6))
    t = rng.integers(0, 50, 300)
    seen = []
    real = _linear_cross_entropy._block

    def spy(z, *args):
        seen.append(z.shape[0])
        return real(z, *args)

    monkeypatch.setattr(_linear_cross_entropy, "_block", spy)
    want = reference_all(x, w, t, None, None)
    # By default 32 MiB, but never fewer than 256 rows (here 10 rows' worth).
    monkeypatch.setattr(_linear_cross_entropy, "BLOCK_BYTES", 50 * 8 * 10)
    for block_bytes, rows in [(None, [256, 44]), (50 * 8 * 7, [7] * 42 + [6]), (1, [1] * 300)]:
        seen.clear()
        got = fs.linear_cross_entropy_with_grad(x, w, t, block_bytes=block_bytes)
        assert seen == rows
        for a, e in zip(got[:3], want[:3]):
            np.testing.assert_allclose(a, e, rtol=1e-10, atol=1e-12)
    seen.clear()
    lse = fs.linear_logsumexp(x, w, block_bytes=50 * 8 * 100)
    assert seen == [100] * 3
    np.testing.assert_allclose(lse, lse_of(x @ w.T), rtol=1e-12)
    with pytest.raises(ValueError, match="block_bytes must be > 0"):
        fs.linear_cross_entropy(x, w, t, block_bytes=0)
    with pytest.raises(TypeError, match="block_bytes must be an int"):
        fs.linear_cross_entropy(x, w, t, block_bytes=1e6)
