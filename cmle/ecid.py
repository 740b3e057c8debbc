"""The Experience Cloud ID (ECID) rule AEP applies to identities in the ECID namespace.

An ECID is 38 digits: two 19-digit halves, each of which must be a valid signed 64-bit
integer (at most 9223372036854775807). AEP checks this at ingestion: a value that is not
38 digits is skipped ("Data ingestion quality", identity value validation), and a half
above the 64-bit maximum is refused as ``Invalid ECID`` (Adobe KB ka-32618, error
``UPLIB-101003-400``). Checking before upload turns that late, partial failure into a
clear error with examples.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

LENGTH = 38
HALF = 19
MAX_HALF = str(2 ** 63 - 1)  # 19 digits: halves compare as strings of equal length


def is_valid(value: object) -> bool:
    """True when ``value`` is a valid ECID string."""
    if not isinstance(value, str) or len(value) != LENGTH or not value.isascii() or not value.isdigit():
        return False
    return value[:HALF] <= MAX_HALF and value[HALF:] <= MAX_HALF


def invalid_mask(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Per value: True when it is not a valid ECID (nulls are not judged here: null
    identities are their own error)."""
    arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    arr = arr.cast(pa.string())
    shape_ok = pc.and_(pc.equal(pc.utf8_length(arr), LENGTH), pc.utf8_is_digit(arr))
    first = pc.utf8_slice_codeunits(arr, 0, HALF)
    second = pc.utf8_slice_codeunits(arr, HALF, LENGTH)
    halves_ok = pc.and_(pc.less_equal(first, MAX_HALF), pc.less_equal(second, MAX_HALF))
    ok = pc.and_(shape_ok, halves_ok)
    return pc.fill_null(pc.invert(ok), False)


def problems(values: pa.Array | pa.ChunkedArray, examples: int = 3) -> tuple[int, list[str]]:
    """How many values are invalid ECIDs, and a few of them."""
    mask = invalid_mask(values)
    count = int(pc.sum(mask).as_py() or 0)
    if not count:
        return 0, []
    arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    return count, [str(v) for v in arr.filter(mask).slice(0, examples).to_pylist()]


def describe_rule() -> str:
    return (f"an ECID is {LENGTH} digits whose two {HALF}-digit halves are each at most {MAX_HALF} "
            "(a signed 64-bit integer)")
