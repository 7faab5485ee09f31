"""What every part of the linear model shares: input validation and divergence."""

import inspect

import numpy as np
from sklearn.utils.validation import _check_sample_weight

try:
    from sklearn.utils.validation import validate_data
except ImportError:  # scikit-learn < 1.6

    def validate_data(estimator, *args, **kwargs):
        return estimator._validate_data(*args, **kwargs)


if "ensure_non_negative" in inspect.signature(_check_sample_weight).parameters:
    NON_NEGATIVE = {"ensure_non_negative": True}
else:  # scikit-learn < 1.6
    NON_NEGATIVE = {"only_non_negative": True}

FLOAT_DTYPES = [np.float64, np.float32]


class Diverged(ValueError):
    """The training loss or its gradient stopped being finite."""


def is_dask_array(x):
    """True for a dask array, without importing dask."""
    return type(x).__module__.partition(".")[0] == "dask" and hasattr(x, "chunks")
