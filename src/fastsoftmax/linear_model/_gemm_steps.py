"""SGD steps of dense X with many classes: two BLAS products a batch, the step in the second.

The coefficients and the intercept are held together, as one (n_classes,
n_features + 1) array ``theta`` whose last column is the intercept, and each
batch gets a column of ones: the first product then gives the scores with
their intercept, and the second the gradients of both. Without momentum the
fused kernel scales the scores' gradient by the learning rate, and the second
product (BLAS gemm with beta) subtracts the step from ``theta`` in place, so
no gradient buffer is written and read back. One epoch of 100000 x 512
float32, 1000 classes, batch 256 (2 threads, a Zen 5): 1.30 to 1.43 times
the two products of each batch through NumPy when the intercept was added,
its gradient summed and the step taken as NumPy operations around two NumPy
products, 0.97 to 1.07 times as here.

Both products go through scipy's BLAS. NumPy and scipy wheels each bundle an
OpenBLAS with threads of its own, and a loop that alternates the two spends
most of its time waiting on the other library's idle threads (5.4 to 5.8 times the
products in that epoch); so the loop takes every product from one library.
For the same reason the kernel between the products runs on one thread:
woken between two products, a second OpenMP thread meets BLAS threads still
spinning on the other core (the epoch took 1.06 to 1.21 times the products
with two kernel threads, 0.97 to 1.16 with one, at batches of 256 to 4096).
"""

import numpy as np
from scipy.linalg.blas import get_blas_funcs

from fastsoftmax._kernels import take_rows
from fastsoftmax._xent import batch_loss_grad


class GemmSteps:
    """The buffers of an epoch and the step of one batch (dense X, many classes)."""

    def __init__(self, model, X, y, weights, batch, scale, smoothing):
        coef, intercept = model.coef_, model.intercept_
        dtype = coef.dtype
        self.model, self.X, self.y, self.weights = model, X, y, weights
        self.scale, self.smoothing = scale, smoothing
        self.with_b = bool(model.fit_intercept)
        n_classes, n_features = coef.shape
        self.d = n_features
        width = n_features + self.with_b
        self.gemm, self.axpy = get_blas_funcs(("gemm", "axpy"), dtype=dtype)
        # theta and the velocity as the loop updates them; written back by finish().
        self.theta = np.empty((n_classes, width), dtype=dtype)
        self.theta[:, :n_features] = coef
        if self.with_b:
            self.theta[:, n_features] = intercept
        self.momentum = float(model.momentum) != 0.0
        if self.momentum:
            self.vel = np.empty_like(self.theta)
            self.vel[:, :n_features] = model._velocity
            if self.with_b:
                self.vel[:, n_features] = model._velocity_intercept
            self.grad = np.empty_like(self.theta)
            self.tmp = np.empty_like(self.theta)
        # Rows of a batch: X's own when they are in place and need no column of ones.
        self.x_buf = np.empty((batch, width), dtype=dtype)
        if self.with_b:
            self.x_buf[:, n_features] = 1.0
        self.z_buf = np.empty((batch, n_classes), dtype=dtype)
        self.y_buf = np.empty(batch, dtype=y.dtype)
        self.g_buf = None if weights is None else np.empty(batch)
        self.loss_buf, self.lse_buf = np.empty(batch), np.empty(batch)

    def rows(self, start, stop, order):
        """The batch's rows (with their column of ones), labels and row scales."""
        m = stop - start
        X, d = self.X, self.d
        if order is None:
            yb = self.y[start:stop]
            gb = None if self.weights is None else self.weights[start:stop]
            if not self.with_b:
                xb = X[start:stop]
            else:
                xb = self.x_buf[:m]
                xb[:, :d] = X[start:stop]
        else:
            # A memcpy a row (take_rows): np.take into the buffer's strided
            # rows took twice as long (about 80 against 40 us a batch of
            # 256 x 512 float32).
            idx = order[start:stop]
            xb = self.x_buf[:m]
            take_rows(X, idx, xb[:, :d] if self.with_b else xb)
            yb = np.take(self.y, idx, out=self.y_buf[:m], mode="clip")
            gb = None
            if self.weights is not None:
                gb = np.take(self.weights, idx, out=self.g_buf[:m], mode="clip")
        if gb is not None:
            gb = np.multiply(gb, self.scale / m, out=self.g_buf[:m])
        return xb, yb, gb

    def step(self, start, stop, order):
        """One batch's loss, after its step on theta (and the velocity)."""
        m = stop - start
        xb, yb, gb = self.rows(start, stop, order)
        theta, gemm = self.theta, self.gemm
        z = self.z_buf[:m]
        # (Fortran's view of C arrays: z.T = theta xb.T.)
        gemm(1.0, theta.T, xb.T, 0.0, z.T, 1, 0, 1)
        # z becomes (scale times) d(batch loss)/d(scores), in place; the
        # labels were checked once, when they were encoded.
        rows = batch_loss_grad(
            z, yb, gb, self.scale / m, self.smoothing, 1, self.loss_buf, self.lse_buf
        )
        loss = float(rows.sum()) / m if gb is None else float(np.dot(rows, gb)) / self.scale
        model = self.model
        lr, alpha = model.learning_rate_, float(model.alpha)
        d = self.d
        if not self.momentum:
            # theta.T = beta theta.T - xb.T z: z already holds lr times the
            # gradient, and beta the weight decay, which the intercept
            # (its last column) must not take: it gets back what beta took.
            beta = 1.0 - lr * alpha
            b_old = theta[:, d].copy() if self.with_b and alpha else None
            gemm(-1.0, xb.T, z.T, beta, theta.T, 0, 1, 1)
            if b_old is not None:
                theta[:, d] += (1.0 - beta) * b_old
            return loss
        # As torch.optim.SGD: weight decay joins the gradient, which joins
        # the velocity; Nesterov steps along gradient + momentum * velocity.
        grad, vel, tmp, mu = self.grad, self.vel, self.tmp, float(model.momentum)
        if not model.nesterov:
            # The velocity takes the gradient inside the product (beta =
            # momentum), and theta its step in one pass (axpy): 2 passes over
            # the coefficients a batch, not 5.
            gemm(1.0, xb.T, z.T, mu, vel.T, 0, 1, 1)
            if alpha:
                vel[:, :d] += np.multiply(theta[:, :d], alpha, out=tmp[:, :d])
            self.axpy(vel.reshape(-1), theta.reshape(-1), a=-lr)
            return loss
        gemm(1.0, xb.T, z.T, 0.0, grad.T, 0, 1, 1)
        if alpha:
            grad[:, :d] += np.multiply(theta[:, :d], alpha, out=tmp[:, :d])
        vel *= mu
        vel += grad
        grad += np.multiply(vel, mu, out=tmp)
        theta -= np.multiply(grad, lr, out=tmp)
        return loss

    def finish(self):
        """Writes theta (and the velocity) back into the model."""
        model, d = self.model, self.d
        model.coef_[...] = self.theta[:, :d]
        if self.with_b:
            model.intercept_[...] = self.theta[:, d]
        if self.momentum:
            model._velocity[...] = self.vel[:, :d]
            if self.with_b:
                model._velocity_intercept[...] = self.vel[:, d]
