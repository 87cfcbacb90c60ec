"""Reading GGUF headers fast: metadata scalars and strings, and tensor sizes, without arrays.

gguf.GGUFReader parses every field into numpy views, about 7 s for Qwen3's 151k-token
vocabulary and merges; walking the header and skipping the arrays takes milliseconds,
and every model load, pull and chat start reads a header.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gguf import GGML_QUANT_SIZES, GGUF_MAGIC, GGMLQuantizationType, GGUFValueType

_FIXED = {
    GGUFValueType.UINT8: "B",
    GGUFValueType.INT8: "b",
    GGUFValueType.UINT16: "H",
    GGUFValueType.INT16: "h",
    GGUFValueType.UINT32: "I",
    GGUFValueType.INT32: "i",
    GGUFValueType.FLOAT32: "f",
    GGUFValueType.BOOL: "?",
    GGUFValueType.UINT64: "Q",
    GGUFValueType.INT64: "q",
    GGUFValueType.FLOAT64: "d",
}


def read_gguf_string(path: str | Path, key: str) -> str | None:
    """The string value of metadata `key` in a GGUF file, or None when the key is absent.

    Raises ValueError (or OSError) when the file is not a GGUF v2/v3 file.
    """
    value = read_header(path).metadata.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"metadata {key} is not a string")
    return value


class _Header:
    """A cursor over a GGUF header, positioned after the tensor count."""

    def __init__(self, buf: mmap.mmap) -> None:
        self.buf, self.pos, self.order = buf, 0, "<"
        if self.take("I") != GGUF_MAGIC:
            raise ValueError("GGUF magic missing")
        version = self.take("I")
        if version & 0xFFFF == 0:  # written on a big-endian machine
            self.order, version = ">", int.from_bytes(version.to_bytes(4, "little"), "big")
        if version not in (2, 3):
            raise ValueError(f"GGUF version {version} is not supported")
        self.tensors = self.take("Q")

    def take(self, fmt: str) -> Any:
        (value,) = struct.unpack_from(self.order + fmt, self.buf, self.pos)
        self.pos += struct.calcsize("<" + fmt)  # standard sizes, whatever the byte order
        return value

    def string(self) -> bytes:
        size = self.take("Q")
        if self.pos + size > len(self.buf):
            raise ValueError("GGUF header is truncated")
        self.pos += size
        return self.buf[self.pos - size : self.pos]

    def tensor_info(self) -> tuple[str, tuple[int, ...], int]:
        """Read one tensor-info record; return its name, shape and data size in bytes."""
        name = self.string().decode("utf-8")
        dims = tuple(self.take("Q") for _ in range(self.take("I")))
        qtype = GGMLQuantizationType(self.take("I"))
        self.take("Q")  # offset
        block, size = GGML_QUANT_SIZES[qtype]
        elements = 1
        for d in dims:
            elements *= d
        return name, dims, elements // block * size

    def skip(self, vtype: int) -> None:
        if vtype == GGUFValueType.STRING:
            self.string()
        elif vtype == GGUFValueType.ARRAY:
            self._skip_array(self.take("I"), self.take("Q"))
        else:
            self.pos += struct.calcsize("<" + _FIXED[GGUFValueType(vtype)])

    def _skip_array(self, item_type: int, count: int) -> None:
        if item_type in _FIXED:
            self.pos += count * struct.calcsize("<" + _FIXED[GGUFValueType(item_type)])
        elif item_type == GGUFValueType.STRING:
            # The vocabulary: one length-prefixed string per token, walked in a tight loop.
            unpack, pos = struct.Struct(self.order + "Q").unpack_from, self.pos
            for _ in range(count):
                pos += 8 + unpack(self.buf, pos)[0]
            self.pos = pos
        else:
            for _ in range(count):
                self.skip(item_type)


@dataclass(frozen=True)
class GGUFHeader:
    """The scalar and string metadata of a GGUF file (arrays skipped) and its tensors' sizes."""

    metadata: dict[str, Any]
    tensor_count: int
    tensor_sizes: dict[str, int]  # bytes of each tensor's data, by name
    tensor_shapes: dict[str, tuple[int, ...]]  # ggml order: the fastest-moving dimension first

    @property
    def tensor_bytes(self) -> int:
        """All tensor data, in bytes."""
        return sum(self.tensor_sizes.values())


def read_header(path: str | Path) -> GGUFHeader:
    """Parse a GGUF header. Raises ValueError (or struct.error, OSError) when it is not one."""
    try:
        with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            header = _Header(buf)
            count, metadata = header.tensors, {}
            for _ in range(header.take("Q")):
                name, vtype = header.string().decode("utf-8"), header.take("I")
                if vtype == GGUFValueType.STRING:
                    metadata[name] = header.string().decode("utf-8")
                elif vtype in _FIXED:
                    metadata[name] = header.take(_FIXED[GGUFValueType(vtype)])
                else:
                    header.skip(vtype)
            infos = [header.tensor_info() for _ in range(count)]
            sizes = {name: nbytes for name, _, nbytes in infos}
            shapes = {name: dims for name, dims, _ in infos}
            return GGUFHeader(metadata, count, sizes, shapes)
    except struct.error as exc:
        raise ValueError(f"GGUF header is truncated ({exc})") from None


def model_header(path: Path) -> GGUFHeader:
    """`read_header`, with an unreadable file reported as an InvalidModelError."""
    from edge.errors import InvalidModelError

    try:
        return read_header(path)
    except (OSError, ValueError, KeyError) as exc:
        raise InvalidModelError(
            f"{path} is not a readable GGUF file ({exc.__class__.__name__}: {exc}).",
            "Re-download or re-convert it.",
        ) from None


def qwen3_header(path: Path) -> GGUFHeader:
    """The header of a Qwen3 GGUF; anything else is rejected with a clear message."""
    from edge.errors import InvalidModelError

    header = model_header(path)
    arch = header.metadata.get("general.architecture")
    if arch != "qwen3":
        raise InvalidModelError(
            f"{path} is a '{arch}' model, not Qwen3.", "edge-qwen runs Qwen3 GGUF files only."
        )
    return header
