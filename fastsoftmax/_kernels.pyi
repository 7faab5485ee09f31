"""Type stubs of the compiled row loops (fastsoftmax/_kernels.pyx).

The loops take NumPy arrays through typed memoryviews: the float arrays of one
call share one dtype, float32 or float64; class-index targets are any integer
dtype. ``softmax`` and ``logsumexp`` return a memoryview of their output array.
The cross-entropy loops scale each row's gradient by ``g`` (one value per row)
or, when ``g`` is None, by ``g_value``. Keep this file in step with the
``def`` signatures of the .pyx: tests/test_stubs.py runs mypy's stubtest.
"""

from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

_F = TypeVar("_F", np.float32, np.float64)

_Float64 = npt.NDArray[np.float64]
_Labels = npt.NDArray[np.integer[Any]]

__test__: dict[str, str]  # Cython's doctest table

def openmp_enabled() -> bool: ...
def max_threads() -> int: ...
def compiler() -> str: ...
def simd() -> str: ...
def softmax(x: npt.NDArray[_F], y: npt.NDArray[_F], log: bool, n_threads: int) -> object: ...
def logsumexp(x: npt.NDArray[_F], out: npt.NDArray[_F], n_threads: int) -> object: ...
def check_labels(
    target: _Labels, n_classes: int, ignore_index: int, weight: _Float64 | None
) -> tuple[int, int, float]: ...
def xent_index(
    x: npt.NDArray[_F],
    target: _Labels,
    grad: npt.NDArray[_F] | None,
    loss: _Float64,
    lse: _Float64,
    g: _Float64 | None,
    g_value: float,
    weight: _Float64 | None,
    weight_sum: float,
    ignore_index: int,
    smoothing: float,
    z_loss: float,
    softcap: float,
    n_threads: int,
) -> None: ...
def xent_prob(
    x: npt.NDArray[_F],
    q: npt.NDArray[_F],
    grad: npt.NDArray[_F] | None,
    loss: _Float64,
    lse: _Float64,
    g: _Float64 | None,
    g_value: float,
    weight: _Float64 | None,
    weight_sum: float,
    smoothing: float,
    z_loss: float,
    softcap: float,
    n_threads: int,
) -> None: ...
def xent_index_grad(
    x: npt.NDArray[_F],
    target: _Labels,
    lse: _Float64,
    grad: npt.NDArray[_F],
    g: _Float64 | None,
    g_value: float,
    weight: _Float64 | None,
    weight_sum: float,
    ignore_index: int,
    smoothing: float,
    z_loss: float,
    softcap: float,
    n_threads: int,
) -> None: ...
def xent_prob_grad(
    x: npt.NDArray[_F],
    q: npt.NDArray[_F],
    lse: _Float64,
    grad: npt.NDArray[_F],
    g: _Float64 | None,
    g_value: float,
    weight: _Float64 | None,
    weight_sum: float,
    smoothing: float,
    z_loss: float,
    softcap: float,
    n_threads: int,
) -> None: ...
def linear_xent(
    X: npt.NDArray[_F],
    idx: npt.NDArray[np.int64] | None,
    labels: npt.NDArray[np.int64],
    g: _Float64 | None,
    g_value: float,
    W: npt.NDArray[_F],
    b: npt.NDArray[_F] | None,
    gW_parts: npt.NDArray[_F],
    gb_parts: npt.NDArray[_F] | None,
    z_parts: npt.NDArray[_F],
    totals: _Float64,
    smoothing: float,
    n_threads: int,
) -> float: ...
def linear_rows() -> int: ...
