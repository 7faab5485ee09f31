"""Linear models trained by the fused kernels: :class:`SoftmaxRegression`.

One module a job: ``_estimator`` (the scikit-learn estimator), ``_objective``
(loss and gradient on in-memory rows), ``_lbfgs`` and ``_sgd`` (the solvers),
``_fused`` (the fused linear kernel both call with few classes), ``_dask``
(fitting and predicting over dask chunks), ``_blas`` (scipy's BLAS threads),
``_common`` (validation helpers). Imports go one way: the estimator
uses the solvers, the solvers the objective; ``_dask`` is imported only when
a dask array arrives.
"""

from fastsoftmax.linear_model._estimator import SoftmaxRegression

__all__ = ["SoftmaxRegression"]
