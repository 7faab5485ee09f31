"""The type aliases of the public API's annotations."""

import os
from typing import Any

from numpy.typing import ArrayLike, DTypeLike, NDArray

__all__ = ["Array", "ArrayLike", "Axis", "DTypeLike", "NDArray", "PathLike"]

# One axis, several, or None for all of them.
Axis = int | tuple[int, ...] | None
Array = NDArray[Any]
PathLike = str | os.PathLike[str]
