"""A user's script that calls every public function of fastsoftmax."""

import numpy as np

import fastsoftmax as fs
from fastsoftmax import datasets, reference
from fastsoftmax.linear_model import SoftmaxRegression

x = np.random.default_rng(0).standard_normal((8, 5))
t = np.array([0, 1, 2, 3, 4, 0, 1, 2])
p: np.ndarray = fs.softmax(x, axis=1)
lp = fs.log_softmax(x, axis=(0, 1), out=np.empty_like(x), n_threads=1)
lse = fs.logsumexp(x, axis=1, keepdims=True)
loss = fs.cross_entropy(x, t, label_smoothing=0.1, z_loss=1e-3, softcap=5.0)
loss, grad = fs.cross_entropy_with_grad(x, t, reduction="none", grad_output=np.ones(8))
g2 = fs.cross_entropy_backward(x, t, np.zeros(8), reduction="none")
lx = fs.linear_cross_entropy(x, np.ones((6, 5)), t, linear_bias=np.zeros(6), z_loss=1e-4)
lx_loss, gx, gw, gb = fs.linear_cross_entropy_with_grad(x, np.ones((6, 5)), t)
part_lse: np.ndarray = fs.linear_logsumexp(x, np.ones((3, 5)))
part = fs.linear_cross_entropy_with_grad(
    x, np.ones((3, 5)), t, class_offset=3, total_classes=6, lse=part_lse + np.log(2.0)
)
info: dict[str, object] = fs.build_info()
fs.show_config()
ok: bool = fs.openmp_enabled()
r = reference.cross_entropy_with_grad(x, t)
X, y = datasets.load_digits()
data = datasets.load_dataset("digits", test_size=0.2)
n: int = data.n_features
clf = fs.SoftmaxRegression(solver="sgd", learning_rate="auto", max_iter=5).fit(X, y)
clf2 = SoftmaxRegression().partial_fit(X, y, classes=np.arange(10))
proba = clf.predict_proba(X[:2])
score = clf.score(X, y)
print(
    part,
    lx,
    lx_loss,
    gx,
    gw,
    gb,
    p.shape,
    lp.shape,
    lse,
    loss,
    grad.shape,
    g2.shape,
    info,
    ok,
    r,
    n,
    proba,
    score,
    clf2,
)
