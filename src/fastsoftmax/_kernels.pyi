"""Type stubs of the compiled row loops (fastsoftmax/_kernels.pyx).

The loops take NumPy arrays through the buffer protocol: the float arrays of
one call share one dtype, named by its code (``F32``, ``F64``, and ``F16``,
``BF16`` whose arrays come as uint16 bits, with float32 logsumexp results
and probabilities); labels are
int64 (``check_labels`` takes any integer dtype). ``softmax`` and ``xent``
return the kind of plan the C layer chose (``ROWS``, ``STRIPS``, ``TILES``, ``COLUMNS``).
``xent`` scales each row's gradient by ``g`` (one value per row) or, when
``g`` is None, by ``g_value``. Keep this file in step with the
``def`` signatures of the .pyx: tests/test_stubs.py runs mypy's stubtest.
"""

from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

_F = TypeVar("_F", np.float32, np.float64)

_Float64 = npt.NDArray[np.float64]
_Labels = npt.NDArray[np.integer[Any]]
# float32, float64, or the uint16 bits of a 2-byte dtype
_Kernel = npt.NDArray[np.float32] | npt.NDArray[np.float64] | npt.NDArray[np.uint16]

__test__: dict[str, str]  # Cython's doctest table

def openmp_enabled() -> bool: ...
def max_threads() -> int: ...
def compiler() -> str: ...
def simd() -> str: ...
def half_simd() -> str: ...
def softmax(x: _Kernel, y: _Kernel, op: int, dtype: int, n_threads: int) -> int: ...
def xent(
    x: _Kernel,
    *,
    grad: _Kernel | None = None,
    target: npt.NDArray[np.int64] | None = None,
    q: _Kernel | None = None,
    g: _Float64 | None = None,
    g_value: float = 1.0,
    lse_in: _Float64 | None = None,
    loss: _Float64 | None = None,
    lse: _Float64 | None = None,
    weight: _Float64 | None = None,
    ignore_index: int = -1,
    smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float = 0.0,
    dtype: int,
    n_threads: int,
) -> int: ...
def xent_rows(
    x: _Kernel,
    labels: npt.NDArray[np.int64],
    grad: _Kernel | None,
    g: _Float64 | None,
    g_value: float,
    loss: _Float64,
    lse: _Float64,
    weight: _Float64 | None,
    ignore_index: int,
    smoothing: float,
    z_loss: float,
    softcap: float,
    dtype: int,
    n_threads: int,
) -> int: ...
def check_labels(
    target: _Labels, n_classes: int, ignore_index: int, weight: _Float64 | None
) -> tuple[int, int, float]: ...
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
    class_block: int = 0,
) -> float: ...
def linear_rows() -> int: ...
def take_rows(X: npt.NDArray[_F], idx: npt.NDArray[np.int64], out: npt.NDArray[_F]) -> None: ...
def math_eval(x: npt.NDArray[_F], y: npt.NDArray[_F], fn: int, dtype: int) -> None: ...
def half_eval(x: npt.NDArray[Any], y: npt.NDArray[Any], dtype: int, widen: bool) -> None: ...
def half_simd_disable(off: bool) -> bool: ...
def exp_f32_ulp(lo: int, hi: int, fast: int, n_threads: int) -> tuple[float, int]: ...
def current_cpu() -> int: ...
def leave_cpu(cpu: int) -> None: ...

GRAIN: int
LINEAR_MAX_CLASSES: int
ROWS: int
STRIPS: int
TILES: int
COLUMNS: int
F32: int
F16: int
BF16: int
F64: int
