"""
From regression to classification
=================================

Why classification is not regression, and how softmax and cross-entropy
turn a linear model into a classifier whose outputs are probabilities.
"""

# %%
# Class labels are not quantities
# --------------------------------
# A regression target is a number: predicting 7.2 for a true 7 is nearly
# right. A class label only names a category: the digits of scikit-learn's
# data set are labelled 0 to 9, but a "4" is not closer to a "5" than to a
# "9". Fitting a line to the labels treats them as numbers all the same.

import matplotlib.pyplot as plt
import numpy as np
from sklearn.linear_model import LinearRegression, RidgeClassifier
from sklearn.metrics import log_loss
from sklearn.model_selection import train_test_split

import fastsoftmax as fs
from fastsoftmax import SoftmaxRegression
from fastsoftmax.datasets import load_digits

X, y = load_digits()  # 1797 images of 8 x 8 pixels, scaled to [0, 1]
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)
regression = LinearRegression().fit(X_train, y_train)
guess = regression.predict(X_test)

fig, ax = plt.subplots(figsize=(6, 3.5))
ax.scatter(y_test + np.random.default_rng(0).uniform(-0.2, 0.2, len(y_test)), guess, s=4)
ax.set(xlabel="true label", ylabel="regression output", title="A line through class labels")
ax.set_xticks(range(10))
print(f"rounded regression outputs are right for {np.mean(np.rint(guess) == y_test):.1%}")

# %%
# One-hot targets
# ---------------
# Classification gives each class its own output. The label becomes a
# one-hot vector: 1 at its class, 0 elsewhere, and the model predicts the
# class whose output is largest.

n_classes = 10
onehot = np.eye(n_classes)[y_train]
print(y_train[:3])
print(onehot[:3])

# %%
# A least-squares fit to one-hot targets
# --------------------------------------
# Fitting one linear output per class to the one-hot targets by least
# squares is scikit-learn's :class:`~sklearn.linear_model.RidgeClassifier`.
# It classifies by the largest output, and does it well, but its outputs
# are not probabilities: they go below 0 and above 1, and a row does not
# sum to 1 in any meaningful way.

ridge = RidgeClassifier(alpha=1.0).fit(X_train, y_train)
scores = ridge.decision_function(X_test)
print(f"RidgeClassifier accuracy {ridge.score(X_test, y_test):.3f}")
print(f"outputs below 0: {np.mean(scores < 0):.0%}; the smallest {scores.min():.2f}")
print(f"largest output per row ranges from {scores.max(1).min():.2f} to {scores.max(1).max():.2f}")

# %%
# Softmax
# -------
# Softmax maps any row of scores :math:`o` to probabilities:
# :math:`p_i = e^{o_i} / \sum_k e^{o_k}`, positive and summing to 1, the
# largest score keeping the largest probability.

o = np.array([[2.0, 1.0, -1.0]])
p = fs.softmax(o, axis=1)
print(p, p.sum())

# %%
# Cross-entropy and its gradient
# ------------------------------
# The loss of a sample is the negative log-probability of its class:
# :math:`\ell = \operatorname{logsumexp}(o) - o_y`. Its gradient with
# respect to the scores is :math:`\operatorname{softmax}(o) -
# \operatorname{onehot}(y)`: the model is pushed up at the true class and
# down elsewhere, by how wrong its probabilities are. Checked here against
# central finite differences of fastsoftmax's own loss:

rng = np.random.default_rng(0)
o = rng.standard_normal((4, n_classes))
t = rng.integers(0, n_classes, size=4)
loss, grad = fs.cross_entropy_with_grad(o, t, reduction="sum")
assert np.allclose(grad, fs.softmax(o, axis=1) - np.eye(n_classes)[t])
h = 1e-6
numeric = np.zeros_like(o)
for i in range(o.shape[0]):
    for j in range(n_classes):
        step = np.zeros_like(o)
        step[i, j] = h
        plus = fs.cross_entropy(o + step, t, reduction="sum")
        minus = fs.cross_entropy(o - step, t, reduction="sum")
        numeric[i, j] = (plus - minus) / (2 * h)
print(f"largest difference from finite differences: {np.abs(numeric - grad).max():.1e}")

# %%
# Softmax regression against the squared loss
# -------------------------------------------
# Softmax regression is the linear model trained with this loss. On the same
# split it classifies at least as well as the least-squares model, and its
# probabilities can be read as such: in the reliability diagram below (the
# fraction of right predictions against the probability given to them) its
# curve follows the diagonal where most predictions lie, above 0.8, and runs
# a little above it lower down (the penalty ``alpha`` makes it modest). The
# least-squares outputs, clipped to [0, 1] and divided by their row sums to
# make them look like probabilities, swing far from the diagonal, and their
# log-loss (the cross-entropy on the test set) is more than twice as large.

softmax_model = SoftmaxRegression(alpha=1e-3).fit(X_train, y_train)
proba = softmax_model.predict_proba(X_test)
ridge_proba = np.clip(scores, 1e-3, 1.0)
ridge_proba /= ridge_proba.sum(axis=1, keepdims=True)
print(f"SoftmaxRegression accuracy {softmax_model.score(X_test, y_test):.3f}")
print(
    f"log-loss: softmax regression {log_loss(y_test, proba):.3f}, "
    f"least squares {log_loss(y_test, ridge_proba):.3f}"
)


def reliability(ax, confidence, correct, label, bins=10):
    """Accuracy of the predicted class against its probability, by bin."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges) - 1, 0, bins - 1)
    mids, accuracy = [], []
    for b in range(bins):
        if np.any(which == b):
            mids.append(confidence[which == b].mean())
            accuracy.append(correct[which == b].mean())
    ax.plot(mids, accuracy, "o-", label=label)


fig, ax = plt.subplots(figsize=(4.5, 4.5))
ax.plot([0, 1], [0, 1], "k:", label="calibrated")
for name, q in [("softmax regression", proba), ("least squares", ridge_proba)]:
    reliability(ax, q.max(axis=1), q.argmax(axis=1) == y_test, name)
ax.set(
    xlabel="predicted probability of the predicted class",
    ylabel="fraction right",
    title="Reliability on the test images",
)
ax.legend()
plt.show()
