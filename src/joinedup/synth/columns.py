"""Fast Arrow columns from NumPy arrays: dates as date32, money as exact decimals, and
low-cardinality strings as dictionaries (no Python string per row)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray


def dates(days: NDArray[np.integer], null: NDArray[np.bool_] | None = None) -> pa.Array:
    """Whole days since 1970-01-01 as date32; `null` marks missing values."""
    return pa.array(np.asarray(days, dtype=np.int32), pa.int32(), mask=null).cast(pa.date32())


def pence_to_gbp(pence: NDArray[np.int64]) -> pa.Array:
    """Integer pence as DECIMAL(12,2) pounds, exactly: a decimal's unscaled value is pence."""
    n = len(pence)
    words = np.empty((n, 2), dtype=np.int64)
    words[:, 0] = pence
    words[:, 1] = np.where(pence < 0, -1, 0)
    return pa.Array.from_buffers(pa.decimal128(12, 2), n, [None, pa.py_buffer(words.tobytes())])


def coded(
    index: NDArray[np.integer], labels: Sequence[str], null: NDArray[np.bool_] | None = None
) -> pa.DictionaryArray:
    """Strings given as indices into `labels`."""
    idx = pa.array(np.asarray(index, dtype=np.int32), pa.int32(), mask=null)
    return pa.DictionaryArray.from_arrays(idx, pa.array(list(labels), pa.string()))


def constant(value: str, n: int) -> pa.DictionaryArray:
    return coded(np.zeros(n, np.int32), [value])


def ints(
    values: NDArray[np.integer], type_: pa.DataType, null: NDArray[np.bool_] | None = None
) -> pa.Array:
    return pa.array(np.asarray(values), type_, mask=null)
