"""Read safetensors checkpoints tensor by tensor, without holding the model in memory.

The `safetensors` library's numpy backend cannot return bfloat16, which is what Qwen3
ships, so we parse the (tiny, documented) format ourselves and memory-map each tensor.
Truncated or malformed files are caught here, before any output is written.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import InvalidModelError

# Storage dtype of each safetensors dtype we accept; BF16 is kept as its raw 16-bit pattern.
_STORAGE: dict[str, np.dtype[Any]] = {
    "BF16": np.dtype("<u2"),
    "F16": np.dtype("<f2"),
    "F32": np.dtype("<f4"),
}
_MAX_HEADER = 100 * 1024 * 1024


@dataclass(frozen=True)
class TensorRef:
    """Where one tensor's bytes live inside a safetensors file."""

    name: str
    path: Path
    dtype: str
    shape: tuple[int, ...]
    offset: int  # absolute byte offset in the file
    nbytes: int

    def raw(self) -> np.ndarray:
        """The tensor as stored (BF16 as uint16 bit patterns), memory-mapped read-only."""
        count = int(np.prod(self.shape)) if self.shape else 1
        arr = np.memmap(
            self.path, dtype=_STORAGE[self.dtype], mode="r", offset=self.offset, shape=(count,)
        )
        return arr.reshape(self.shape)


def read_header(path: Path) -> dict[str, TensorRef]:
    """Parse one safetensors file's header and check every tensor lies inside the file."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise _bad(path, "it is too short to be a safetensors file")
        (hlen,) = struct.unpack("<Q", head)
        if hlen > min(_MAX_HEADER, size - 8):
            raise _bad(path, "its header length is impossible (truncated or not safetensors)")
        try:
            header = json.loads(f.read(hlen))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _bad(path, f"its header is not valid JSON ({exc.__class__.__name__})") from None
    if not isinstance(header, dict):
        raise _bad(path, "its header is not a JSON object")
    base = 8 + hlen
    refs: dict[str, TensorRef] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        refs[name] = _tensor_ref(path, name, info, base, size)
    return refs


def _tensor_ref(path: Path, name: str, info: object, base: int, size: int) -> TensorRef:
    if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= info.keys():
        raise _bad(path, f"tensor {name!r} has a malformed header entry")
    dtype, shape, (start, end) = info["dtype"], tuple(info["shape"]), info["data_offsets"]
    if dtype not in _STORAGE:
        raise _bad(path, f"tensor {name!r} has dtype {dtype}; only BF16, F16 and F32 are supported")
    expected = (
        int(np.prod(shape, dtype=np.int64)) * _STORAGE[dtype].itemsize
        if shape
        else _STORAGE[dtype].itemsize
    )
    if end - start != expected or start < 0:
        raise _bad(path, f"tensor {name!r} has a size that does not match its shape")
    if base + end > size:
        raise _bad(path, f"it is truncated: tensor {name!r} ends past the end of the file")
    return TensorRef(name, path, dtype, shape, base + start, end - start)


def open_checkpoint(folder: Path) -> dict[str, TensorRef]:
    """All tensors of a folder: `model.safetensors`, or shards listed by the index file."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (ValueError, KeyError) as exc:
            raise _bad(index, f"it is not a valid index ({exc.__class__.__name__})") from None
        files = sorted(set(weight_map.values()))
    else:
        files = [p.name for p in sorted(folder.glob("*.safetensors"))]
    if not files:
        raise InvalidModelError(
            f"{folder} has no .safetensors weights.",
            "Point at a Hugging Face checkpoint folder (config.json + *.safetensors).",
        )
    refs: dict[str, TensorRef] = {}
    for name in files:
        path = folder / name
        if not path.is_file():
            raise _bad(path, "it is listed by the index but missing")
        refs.update(read_header(path))
    return refs


def as_float32(raw: np.ndarray, dtype: str) -> np.ndarray:
    """Widen stored values to float32 exactly (BF16 is the top half of an F32)."""
    if dtype == "BF16":
        return (raw.astype(np.uint32) << 16).view(np.float32)
    return raw.astype(np.float32)


def f32_to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """Round float32 to bfloat16 bit patterns, nearest-even, NaN kept NaN."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(x)
    if nan.any():
        rounded[nan] = 0x7FC0
    return rounded


def iter_row_chunks(ref: TensorRef, max_bytes: int) -> Iterator[np.ndarray]:
    """Read a tensor from disk in pieces of whole rows, at most about max_bytes each.

    Plain reads, not a memory map: mapped pages count in the process's RSS until
    unmapped, so reading keeps the converter's footprint at one chunk.
    """
    dtype = _STORAGE[ref.dtype]
    rows = ref.shape[0] if len(ref.shape) >= 2 else 1
    row_shape = ref.shape[1:] if len(ref.shape) >= 2 else ref.shape
    row_bytes = max(1, ref.nbytes // rows)
    step = max(1, max_bytes // row_bytes)
    with ref.path.open("rb") as f:
        f.seek(ref.offset)
        for start in range(0, rows, step):
            n = min(step, rows - start)
            buf = np.empty((n, *row_shape) if len(ref.shape) >= 2 else ref.shape, dtype=dtype)
            if f.readinto(buf.data.cast("B")) != buf.nbytes:
                raise _bad(ref.path, f"it ended early while reading tensor {ref.name!r}")
            yield buf


def _bad(path: Path, why: str) -> InvalidModelError:
    return InvalidModelError(
        f"{path} cannot be read: {why}.",
        "Download it again (edge-qwen pull re-fetches damaged files) or check the folder.",
    )
