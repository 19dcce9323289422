"""numpy arrays in numpy's own ``.npy`` format (``allow_pickle=False``).

Shape, dtype and byte order come back exactly; arrays of Python objects
raise ``Unsuitable`` and go to cloudpickle.
"""

from __future__ import annotations

import io
import math
from typing import Any

from . import Unsuitable, module_of

#: Values of an array shown in its preview (flattened).
PREVIEW_VALUES = 10


def _plain(x: Any) -> Any:
    if isinstance(x, int):  # bool too
        return x
    if isinstance(x, float) and math.isfinite(x):
        return x
    return str(x)


class NumpyArrays:
    format = "npy"

    def claims(self, value: Any) -> bool:
        if module_of(value) != "numpy":
            return False
        import numpy as np

        return type(value) is np.ndarray

    def dump(self, value: Any) -> tuple[bytes, dict[str, Any]]:
        import numpy as np

        if value.dtype.hasobject:
            raise Unsuitable("an array of Python objects")
        buffer = io.BytesIO()
        np.save(buffer, value, allow_pickle=False)
        return buffer.getvalue(), {}

    def load(self, data: bytes, meta: dict[str, Any]) -> Any:
        import numpy as np

        return np.load(io.BytesIO(data), allow_pickle=False)

    def preview(self, value: Any) -> dict[str, Any]:
        first = value.reshape(-1)[:PREVIEW_VALUES].tolist()
        return {
            "kind": "array",
            "shape": list(value.shape),
            "dtype": str(value.dtype),
            "first": [_plain(x) for x in first],
        }
