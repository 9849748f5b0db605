"""The wire between the grader's test process and its workers: data only.

An observation crosses as one frame: a JSON header and an ``.npz`` archive read with
``allow_pickle=False``; numbers, strings, lists, tuples, dicts, numpy arrays and CPU torch
tensors pass, anything else (an object that could run code when compared or printed) is
refused (:class:`ObservationError`). :func:`normalize` applies the same filter without the
wire, so a test that passes locally passes graded.
"""

from __future__ import annotations

import base64
import io
import json
import os
import select
import struct
import time
from typing import Any

MAX_ARRAY_BYTES = 2 * 2**30  # one observation's arrays
MAX_HEADER_BYTES = 64 * 2**20
MAX_DEPTH = 64


class ObservationError(Exception):
    """An observe function returned something that is not data."""


def _encode(obj: Any, arrays: list, depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        raise ObservationError("observation nested too deeply")
    if obj is None or type(obj) in (bool, str):
        return obj
    if type(obj) is int or type(obj) is float:
        return obj
    if isinstance(obj, bool):
        return bool(obj)
    if isinstance(obj, (list, tuple)):
        items = [_encode(v, arrays, depth + 1) for v in obj]
        return items if isinstance(obj, list) else {"__t": "tuple", "v": items}
    if isinstance(obj, dict):
        keys = list(obj.keys())
        for k in keys:
            if type(k) not in (str, int):
                raise ObservationError(f"observation dict key {k!r} is not a str or int")
        return {"__t": "dict", "k": keys, "v": [_encode(obj[k], arrays, depth + 1) for k in keys]}
    if isinstance(obj, (bytes, bytearray)):
        return {"__t": "bytes", "v": base64.b64encode(bytes(obj)).decode()}
    mod = type(obj).__module__.split(".")[0]
    if mod == "numpy":
        import numpy as np

        if isinstance(obj, np.ndarray):
            if obj.dtype.hasobject:
                raise ObservationError("observation holds a numpy array of Python objects")
            arrays.append(np.array(obj, copy=True))
            return {"__t": "ndarray", "i": len(arrays) - 1}
        if isinstance(obj, np.generic):
            return _encode(obj.item(), arrays, depth + 1)
    if mod == "torch":
        import torch

        if isinstance(obj, torch.Tensor):
            t = obj.detach().cpu().contiguous()
            dtype = str(t.dtype)
            if t.dtype == torch.bfloat16:
                t = t.view(torch.int16)
            arrays.append(t.numpy().copy())
            return {"__t": "tensor", "i": len(arrays) - 1, "dtype": dtype}
        if isinstance(obj, torch.Size):
            return {"__t": "tuple", "v": [int(v) for v in obj]}
        if isinstance(obj, torch.dtype):
            return str(obj)
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return _encode(float(obj), arrays, depth)
    if isinstance(obj, str):
        return str.__str__(obj)
    raise ObservationError(f"an observation must be data (numbers, strings, lists, dicts, "
                           f"arrays, tensors); got a {type(obj).__module__}.{type(obj).__name__}")


def _decode(obj: Any, arrays: list, depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        raise ObservationError("observation nested too deeply")
    if obj is None or type(obj) in (bool, int, float, str):
        return obj
    if type(obj) is list:
        return [_decode(v, arrays, depth + 1) for v in obj]
    if type(obj) is not dict:
        raise ObservationError(f"malformed observation: {type(obj).__name__}")
    tag = obj.get("__t")
    if tag == "tuple":
        return tuple(_decode(v, arrays, depth + 1) for v in obj["v"])
    if tag == "dict":
        keys, values = obj["k"], obj["v"]
        if len(keys) != len(values) or any(type(k) not in (str, int) for k in keys):
            raise ObservationError("malformed observation dict")
        return {k: _decode(v, arrays, depth + 1) for k, v in zip(keys, values)}
    if tag == "bytes":
        return base64.b64decode(str(obj["v"]))
    if tag in ("ndarray", "tensor"):
        i = obj["i"]
        if type(i) is not int or not 0 <= i < len(arrays):
            raise ObservationError("malformed observation: bad array index")
        a = arrays[i]
        if tag == "ndarray":
            return a
        import torch

        dtype = str(obj["dtype"])
        t = torch.from_numpy(a)
        if dtype == "torch.bfloat16":
            t = t.view(torch.bfloat16)
        elif str(t.dtype) != dtype:
            raise ObservationError(f"malformed observation: tensor dtype {dtype}")
        return t
    raise ObservationError(f"malformed observation: tag {tag!r}")


def normalize(obj: Any) -> Any:
    """What a graded run would get back for ``obj``: the same filter, without the wire."""
    arrays: list = []
    header = _encode(obj, arrays)
    return _decode(header, arrays)


def pack(obj: Any) -> bytes:
    """``obj`` as one frame: JSON header + ``.npz`` archive (no pickle anywhere)."""
    import numpy as np

    arrays: list = []
    header = json.dumps(_encode(obj, arrays)).encode()
    buf = io.BytesIO()
    if arrays:
        np.savez(buf, *arrays, allow_pickle=False)
    blob = buf.getvalue()
    return struct.pack("<QQ", len(header), len(blob)) + header + blob


def unpack(header: bytes, blob: bytes) -> Any:
    import numpy as np

    arrays = []
    if blob:
        with np.load(io.BytesIO(blob), allow_pickle=False) as z:
            arrays = [z[f"arr_{i}"] for i in range(len(z.files))]
    return _decode(json.loads(header), arrays)


def _read_exact(fd: int, n: int, deadline: float | None = None) -> bytes:
    chunks, got = [], 0
    while got < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError("no answer in time")
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            raise EOFError("the other end closed")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_frame(fd: int, deadline: float | None = None) -> Any:
    nh, nb = struct.unpack("<QQ", _read_exact(fd, 16, deadline))
    if nh > MAX_HEADER_BYTES or nb > MAX_ARRAY_BYTES:
        raise ObservationError(f"observation too large ({nh + nb} bytes)")
    header = _read_exact(fd, nh, deadline)
    blob = _read_exact(fd, nb, deadline)
    return unpack(header, blob)


def write_frame(fd: int, obj: Any) -> None:
    write_all(fd, pack(obj))


def write_all(fd: int, data: bytes) -> None:
    data = memoryview(data)
    while data:
        n = os.write(fd, data)
        data = data[n:]
