"""The parallel learners' arrays on the wire: a JSON header and the raw float64 bytes.

What a learner hands over (:class:`online_ml.sync.Contribution`) and the merged global state the
others adopt (``P:sync:global:state``) travel in this form, several times a second per learner.
Packing is a ``tobytes`` per array and unpacking a ``frombuffer``, tens of microseconds for the
softmax learner's seven arrays, where the ``.npz`` before took 1.5 ms to read and the skops model
4 ms (ad hoc, 2026-12-02): at a merge every 10 records of 0.2 ms each, that was most of a
learner's time (README, *Parallel learners*). Nothing in it can run code: the header is JSON,
the arrays are bytes read as little-endian float64 with the shapes the header gives, checked
against the blob's length.

>>> import numpy as np
>>> blob = pack(b"TEST0001", {"samples": 3}, {"w": np.arange(6.0).reshape(2, 3), "t": np.array(2.0)})
>>> header, arrays = unpack(b"TEST0001", blob)
>>> header["samples"], arrays["w"].tolist(), arrays["t"].shape, float(arrays["t"])
(3, [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]], (), 2.0)
>>> unpack(b"TEST0001", blob[:-8])
Traceback (most recent call last):
...
ValueError: the arrays take 56 bytes, the blob has 48
"""
from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np

DTYPE = np.dtype("<f8")
MAX_ARRAYS = 256
MAX_VALUES = 50_000_000  # 400 MB of float64: far above any model this project merges


def pack(magic: bytes, header: Mapping, arrays: Mapping[str, np.ndarray]) -> bytes:
    """``magic`` + header length + JSON header (with the arrays' names and shapes) + bytes."""
    values = {name: np.asarray(a, dtype=DTYPE) for name, a in arrays.items()}  # tobytes: C order
    head = json.dumps({**header, "arrays": [[name, list(a.shape)] for name, a in values.items()]},
                      sort_keys=True).encode()
    return b"".join([magic, struct.pack(">I", len(head)), head,
                     *(a.tobytes() for a in values.values())])


def read_header(magic: bytes, blob: bytes) -> tuple[Any, int]:
    """The JSON header after ``magic`` and its length, and the offset of what follows it;
    ValueError when the blob does not start so."""
    start = len(magic) + 4
    if not blob.startswith(magic) or len(blob) < start:
        raise ValueError(f"not a {magic.decode(errors='replace')} blob")
    (n,) = struct.unpack(">I", blob[len(magic):start])
    try:
        return json.loads(blob[start:start + n]), start + n
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"unreadable header: {exc}") from None


def unpack(magic: bytes, blob: bytes) -> tuple[dict, dict[str, np.ndarray]]:
    """(header, arrays) of a :func:`pack` blob; ValueError for anything malformed. The arrays
    are writable copies (a learner steps its weights in place)."""
    header, offset = read_header(magic, blob)
    specs = header.pop("arrays", None) if isinstance(header, dict) else None
    if not isinstance(specs, list) or len(specs) > MAX_ARRAYS:
        raise ValueError("the header does not list the arrays")
    shapes: list[tuple[str, tuple[int, ...]]] = []
    total = 0
    for spec in specs:
        if (not isinstance(spec, list) or len(spec) != 2 or not isinstance(spec[0], str)
                or not isinstance(spec[1], list)
                or not all(isinstance(d, int) and 0 <= d <= MAX_VALUES for d in spec[1])):
            raise ValueError(f"bad array entry {spec!r:.80}")
        shape = tuple(spec[1])
        total += math.prod(shape)
        if total > MAX_VALUES:
            raise ValueError("too many values")
        shapes.append((spec[0], shape))
    if len(blob) - offset != total * DTYPE.itemsize:
        raise ValueError(f"the arrays take {total * DTYPE.itemsize} bytes, the blob has "
                         f"{len(blob) - offset}")
    arrays: dict[str, np.ndarray] = {}
    for name, shape in shapes:
        count = math.prod(shape)
        arrays[name] = np.frombuffer(blob, DTYPE, count, offset).reshape(shape).astype(np.float64)
        offset += count * DTYPE.itemsize
    return header, arrays
