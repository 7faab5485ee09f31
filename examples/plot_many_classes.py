"""
Many classes: 1000-class SGD
============================

ImageNet's class count on synthetic features: 1000 classes, each a cluster
around its own centre. :class:`fastsoftmax.SoftmaxRegression` with
``solver='sgd'`` makes one multinomial model; scikit-learn's
:class:`~sklearn.linear_model.SGDClassifier` with the log-loss trains one
binary model per class (one-vs-rest), so an epoch costs it 1000 passes.
"""

import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.linear_model import SGDClassifier

from fastsoftmax import SoftmaxRegression

rng = np.random.default_rng(0)
n_classes, n_features, n_samples = 1000, 64, 10000
centres = rng.standard_normal((n_classes, n_features), dtype=np.float32)
y = rng.integers(0, n_classes, size=n_samples)
X = centres[y] + rng.standard_normal((n_samples, n_features), dtype=np.float32)
X_test_y = rng.integers(0, n_classes, size=2000)
X_test = centres[X_test_y] + rng.standard_normal((2000, n_features), dtype=np.float32)

# %%
# Time per epoch
# --------------
# Each model runs one epoch at a time (``partial_fit``), timed; fastsoftmax
# for 10 epochs, at its default step (``learning_rate='auto'``, the largest
# step that is safe for every sample whatever the features' scale) and at a
# step of 0.5 that suits these features, scikit-learn for 2 epochs (each of
# which trains 1000 models).


def train(model, epochs):
    times, accuracy = [], []
    for _ in range(epochs):
        start = time.perf_counter()
        model.partial_fit(X, y, classes=np.arange(n_classes))
        times.append(time.perf_counter() - start)
        accuracy.append(model.score(X_test, X_test_y))
    return np.array(times), np.array(accuracy)


runs = {
    "fastsoftmax, learning_rate='auto'": train(
        SoftmaxRegression(solver="sgd", batch_size=256, random_state=0), 10
    ),
    "fastsoftmax, learning_rate=0.5": train(
        SoftmaxRegression(solver="sgd", batch_size=256, learning_rate=0.5, random_state=0), 10
    ),
    "scikit-learn SGDClassifier (one-vs-rest)": train(
        SGDClassifier(loss="log_loss", random_state=0), 2
    ),
}
for name, (times, accuracy) in runs.items():
    print(
        f"{name}: {np.median(times) * 1e3:.0f} ms per epoch, test accuracy "
        f"{accuracy[-1]:.3f} after {len(times)} epochs"
    )

fig, ax = plt.subplots(figsize=(6, 3.5))
for name, (times, accuracy) in runs.items():
    ax.plot(np.cumsum(times), accuracy, "o-", label=name)
ax.set(
    xlabel="seconds of training",
    ylabel="test accuracy",
    xscale="log",
    title="1000 classes, 10000 x 64 float32",
)
ax.legend(fontsize="small")
plt.show()
