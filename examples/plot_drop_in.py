"""
Drop-in for scipy.special and torch's cross_entropy
===================================================

The same calls, the same results, timed on the machine that builds this page
(float32, 2 threads at most; torch is used when installed).
"""

import importlib.util
import os
import time

import matplotlib.pyplot as plt
import numpy as np
import scipy.special

import fastsoftmax as fs

rng = np.random.default_rng(0)

# %%
# The same results
# ----------------
# ``fs.softmax``, ``fs.log_softmax`` and ``fs.logsumexp`` replace
# scipy.special's; ``fs.cross_entropy`` replaces
# ``torch.nn.functional.cross_entropy`` on NumPy arrays.

x = rng.standard_normal((512, 1000))
t = rng.integers(0, 1000, size=512)
assert np.allclose(fs.softmax(x, axis=1), scipy.special.softmax(x, axis=1))
assert np.allclose(fs.logsumexp(x, axis=1), scipy.special.logsumexp(x, axis=1))
have_torch = importlib.util.find_spec("torch") is not None
if have_torch:
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    expected = F.cross_entropy(torch.from_numpy(x), torch.from_numpy(t), label_smoothing=0.1)
    assert np.isclose(fs.cross_entropy(x, t, label_smoothing=0.1), expected.item())


# %%
# Timed side by side
# ------------------
# Medians of interleaved calls, against a copy of the same bytes (the
# floor: every one of these calls reads the scores and writes a result).


def median_time(calls, rounds=15):
    times = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: 1e3 * float(np.median(v)) for name, v in times.items()}


def calls_for(x, t):
    """The calls timed at one shape, each writing where it can into one array."""
    out = np.empty_like(x)
    calls = {
        "copy": lambda: np.copyto(out, x),
        "scipy.special.softmax": lambda: scipy.special.softmax(x, axis=1),
        "fs.softmax": lambda: fs.softmax(x, axis=1, out=out),
        "fs.cross_entropy_with_grad": lambda: fs.cross_entropy_with_grad(x, t, out=out),
    }
    if have_torch:
        xt, tt = torch.from_numpy(x).requires_grad_(), torch.from_numpy(t)
        calls["torch cross_entropy + backward"] = lambda: torch.autograd.grad(
            F.cross_entropy(xt, tt), xt
        )
    return calls


shapes = [(16384, 100), (4096, 1000), (512, 32000)]
results = []
for n, c in shapes:
    x = rng.standard_normal((n, c), dtype=np.float32)
    t = rng.integers(0, c, size=n)
    results.append(median_time(calls_for(x, t)))

fig, ax = plt.subplots(figsize=(7, 4))
names = list(results[0])
width = 0.8 / len(names)
for k, name in enumerate(names):
    ax.bar(np.arange(len(shapes)) + k * width, [r[name] for r in results], width, label=name)
ax.set_xticks(np.arange(len(shapes)) + 0.4 - width / 2, [f"{n} x {c}" for n, c in shapes])
ax.set(ylabel="ms (log scale)", yscale="log", title="float32, median of interleaved calls")
ax.legend(fontsize="small")
plt.show()
