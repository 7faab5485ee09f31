"""
Training on digits: L-BFGS and SGD
==================================

The MNIST task on scikit-learn's digits (8 x 8 images, which ship with it):
both solvers of :class:`fastsoftmax.SoftmaxRegression`, their loss curves,
the confusion matrix and the learned weights as images.

With MNIST's four IDX files in a folder, set ``FASTSOFTMAX_MNIST`` to it and
run this script: it then trains on the 60000 28 x 28 images instead
(``fastsoftmax.datasets.load_mnist``).
"""

import os

import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import ConfusionMatrixDisplay
from sklearn.model_selection import train_test_split

from fastsoftmax import SoftmaxRegression
from fastsoftmax.datasets import load_digits, load_mnist

folder = os.environ.get("FASTSOFTMAX_MNIST")
if folder:
    X_train, y_train = load_mnist(folder)
    X_test, y_test = load_mnist(folder, kind="test")
    side = 28
else:
    X, y = load_digits(dtype=np.float32)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=0
    )
    side = 8

# %%
# Two solvers
# -----------
# Full-batch L-BFGS minimises the objective to a tight optimum; minibatch
# SGD takes one step per batch of 64 samples, so an epoch costs about one
# L-BFGS iteration.

lbfgs = SoftmaxRegression(alpha=1e-4).fit(X_train, y_train)
sgd = SoftmaxRegression(
    solver="sgd", alpha=1e-4, batch_size=64, max_iter=30, tol=None, random_state=0
).fit(X_train, y_train)
for name, model in [("L-BFGS", lbfgs), ("SGD", sgd)]:
    print(
        f"{name}: test accuracy {model.score(X_test, y_test):.3f}, "
        f"{model.n_iter_} iterations or epochs"
    )

fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(lbfgs.loss_curve_, label="L-BFGS (per iteration)")
ax.plot(sgd.loss_curve_, label="SGD (mean over each epoch)")
ax.set(xlabel="iteration / epoch", ylabel="objective", yscale="log", title="Loss curves")
ax.legend()

# %%
# Where it errs
# -------------

ConfusionMatrixDisplay.from_estimator(lbfgs, X_test, y_test, colorbar=False)

# %%
# What it learned
# ---------------
# Each class's weights, one per pixel, drawn as an image: red pixels raise
# the class's score, blue ones lower it.

fig, axes = plt.subplots(2, 5, figsize=(8, 3.6))
limit = np.abs(lbfgs.coef_).max()
for k, ax in enumerate(axes.ravel()):
    ax.imshow(lbfgs.coef_[k].reshape(side, side), cmap="RdBu_r", vmin=-limit, vmax=limit)
    ax.set_title(str(lbfgs.classes_[k]))
    ax.axis("off")
plt.show()
