"""
The language-model head without its logits
==========================================

:func:`fastsoftmax.linear_cross_entropy_with_grad` computes
``cross_entropy(h @ W.T, t)`` and the gradients of ``h`` and ``W`` in blocks
of rows, never holding the N x V logits. Against the NumPy path that
materialises them, its time and peak memory as the vocabulary V grows
(float32, N = 1024 tokens of d = 256 features).
"""

import time
import tracemalloc

import matplotlib.pyplot as plt
import numpy as np

import fastsoftmax as fs

rng = np.random.default_rng(0)
n, d = 1024, 256
h = rng.standard_normal((n, d), dtype=np.float32)


def materialised(h, W, t):
    """The logits, their loss and gradient, and the two products back."""
    logits = h @ W.T
    loss, g = fs.cross_entropy_with_grad(logits, t, inplace=True)
    return loss, g @ W, g.T @ h


def fused(h, W, t):
    loss, g_h, g_W, _ = fs.linear_cross_entropy_with_grad(h, W, t)
    return loss, g_h, g_W


def measure(fn, *args):
    """Seconds (best of 3) and peak traced memory in MiB of one call."""
    times = []
    for _ in range(3):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    tracemalloc.start()
    fn(*args)
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return min(times), peak


vocab = [4000, 8000, 16000, 32000, 64000]
rows = []
for V in vocab:
    W = rng.standard_normal((V, d), dtype=np.float32) * 0.05
    t = rng.integers(0, V, size=n)
    a, b = materialised(h, W, t), fused(h, W, t)
    assert np.isclose(a[0], b[0], rtol=1e-5) and np.allclose(a[1], b[1], atol=1e-5)
    rows.append((measure(materialised, h, W, t), measure(fused, h, W, t)))
    print(
        f"V = {V}: materialised {rows[-1][0][0]:.3f} s {rows[-1][0][1]:.0f} MiB, "
        f"fused {rows[-1][1][0]:.3f} s {rows[-1][1][1]:.0f} MiB"
    )

# %%
# Peak memory grows with V only as the outputs do (the weight's gradient);
# the materialising path adds the N x V logits (here turned into their own
# gradient in place). The time is that of the same three matrix products
# either way: with as few tokens as here, each block of rows reads all of
# W again, so the fused call can be slower at large V; with thousands of
# tokens of larger d (a language model's batch) the products dominate and the
# two take the same time (see :doc:`/performance`).

fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(9, 3.6))
for k, name in enumerate(["logits materialised", "fastsoftmax fused"]):
    ax_t.plot(vocab, [r[k][0] for r in rows], "o-", label=name)
    ax_m.plot(vocab, [r[k][1] for r in rows], "o-", label=name)
ax_t.set(xlabel="V (classes)", ylabel="seconds", title="forward + backward")
ax_m.set(xlabel="V (classes)", ylabel="MiB", title="peak memory beyond the inputs")
ax_m.legend()
fig.tight_layout()
plt.show()
