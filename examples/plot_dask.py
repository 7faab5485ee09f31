"""
Fitting on a dask array
=======================

:class:`fastsoftmax.SoftmaxRegression` fits a chunked dask array with
L-BFGS: each chunk's loss and gradient are computed on the workers by the
fused kernels and summed, and the optimum is the in-memory one. Here on a
small local cluster of threads.
"""

import dask.array as da
import matplotlib.pyplot as plt
import numpy as np
from dask.distributed import Client, LocalCluster

from fastsoftmax import SoftmaxRegression
from fastsoftmax.datasets import load_digits

X, y = load_digits()
Xd = da.from_array(X, chunks=(300, -1))
yd = da.from_array(y, chunks=300)

with (
    LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
    ) as cluster,
    Client(cluster),
):
    chunked = SoftmaxRegression(alpha=1e-3).fit(Xd, yd)
    proba = chunked.predict_proba(Xd[:5]).compute()

in_memory = SoftmaxRegression(alpha=1e-3).fit(X, y)
print(
    f"{Xd.numblocks[0]} chunks; largest coefficient difference from the in-memory fit: "
    f"{np.abs(chunked.coef_ - in_memory.coef_).max():.1e}"
)
print(proba.round(3))

# %%
# The same optimisation
# ---------------------
# L-BFGS sees the same objective from the chunks as from the whole array,
# so both runs take the same steps to the same optimum.

fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(in_memory.loss_curve_, label="in memory")
ax.plot(chunked.loss_curve_, "--", label=f"dask, {Xd.numblocks[0]} chunks")
ax.set(xlabel="L-BFGS iteration", ylabel="objective", yscale="log", title="digits, alpha=1e-3")
ax.legend()
plt.show()
