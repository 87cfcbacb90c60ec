"""GGUF → quantized GGUF through llama.cpp's own quantizer (`llama_model_quantize`)."""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

from edge.errors import InvalidModelError, QuantizeError, UsageError
from edge.fileio import atomic_output, ensure_free_space


@dataclass(frozen=True)
class QuantType:
    """One output type: llama.cpp's ftype id and the nominal bits per weight of its blocks."""

    name: str
    ftype: int
    bpw: float
    note: str


# The types that make sense for a 0.6B model without an importance matrix. The 1- and
# 2-bit families are left out: without an imatrix llama.cpp itself warns against them,
# and on a model this small they destroy it.
QUANT_TYPES: dict[str, QuantType] = {
    q.name: q
    for q in (
        QuantType("F32", 0, 32.0, "full precision, for reference"),
        QuantType("BF16", 32, 16.0, "lossless from a bf16 checkpoint"),
        QuantType("F16", 1, 16.0, "half precision"),
        QuantType("Q8_0", 7, 8.5, "near-lossless; the default"),
        QuantType("Q6_K", 18, 6.5625, "very small loss"),
        QuantType("Q5_K_M", 17, 5.5, "small loss"),
        QuantType("Q5_K_S", 16, 5.5, "small loss"),
        QuantType("Q5_1", 9, 6.0, "legacy 5-bit"),
        QuantType("Q5_0", 8, 5.5, "legacy 5-bit"),
        QuantType("Q4_K_M", 15, 4.5, "smallest recommended"),
        QuantType("Q4_K_S", 14, 4.5, "smaller, more loss"),
        QuantType("Q4_1", 3, 5.0, "legacy 4-bit"),
        QuantType("Q4_0", 2, 4.5, "legacy 4-bit, fast on ARM"),
        QuantType("IQ4_NL", 25, 4.5, "non-linear 4-bit"),
        QuantType("IQ4_XS", 30, 4.25, "non-linear 4-bit, smaller"),
        QuantType("Q3_K_L", 13, 3.4375, "large loss on a 0.6B model"),
        QuantType("Q3_K_M", 12, 3.4375, "large loss on a 0.6B model"),
        QuantType("Q3_K_S", 11, 3.4375, "large loss on a 0.6B model"),
    )
}
UNQUANTIZED = ("F32", "F16", "BF16")
_PROBE_BYTES = 4 * 2**20  # more than a filesystem's last partly-used block can absorb
_UNQUANTIZED_FTYPES = {0, 1, 32}


def quant_type(name: str) -> QuantType:
    """Look up a type by name, case-insensitively, or fail with the list of choices."""
    key = name.strip().upper()
    if key not in QUANT_TYPES:
        raise UsageError(
            f"Unknown quantization type '{name}'.",
            f"Choose one of: {', '.join(QUANT_TYPES)}.",
        )
    return QUANT_TYPES[key]


def gguf_file_type(path: Path) -> int | None:
    """The `general.file_type` a GGUF declares, or None when it does not say."""
    from edge.model.gguf_meta import model_header

    value = model_header(path).metadata.get("general.file_type")
    return int(value) if value is not None else None


def type_name(ftype: int | None) -> str:
    """Our name for a llama.cpp ftype id ('?' for types we do not offer)."""
    for q in QUANT_TYPES.values():
        if q.ftype == ftype:
            return q.name
    return "?" if ftype is None else f"ftype-{ftype}"


def _bits_per_weight(ftype: int | None) -> float:
    return next((q.bpw for q in QUANT_TYPES.values() if q.ftype == ftype), 16.0)


def quantize(
    src: Path,
    out: Path,
    qtype: str,
    *,
    threads: int = 0,
    allow_requantize: bool = False,
    overwrite: bool = False,
) -> Path:
    """Quantize `src` to `qtype` at `out` (written under a temporary name, then renamed)."""
    src, out = Path(src), Path(out)
    q = quant_type(qtype)
    if not src.is_file():
        raise InvalidModelError(f"{src} does not exist.", "Give the path of a GGUF file.")
    if out.exists() and not overwrite:
        raise UsageError(f"{out} already exists.", "Choose another -o path or pass --force.")
    src_type = gguf_file_type(src)
    if src_type not in _UNQUANTIZED_FTYPES and src_type is not None and not allow_requantize:
        raise UsageError(
            f"{src} is already quantized ({type_name(src_type)}); quantizing it again loses more.",
            "Quantize from an F16/BF16/F32 file, or pass --allow-requantize.",
        )
    # Output ≈ input × (output bits / input bits): an F32 input shrinks twice as much as a
    # BF16 one, so assuming 16-bit input refused jobs that fit on a nearly full disk.
    ratio = q.bpw / _bits_per_weight(src_type)
    ensure_free_space(out.parent, int(src.stat().st_size * ratio) + 64 * 2**20)
    with atomic_output(out) as tmp:
        _run_quantizer(src, tmp, q, threads, allow_requantize)
    return out


def _run_quantizer(
    src: Path, dst: Path, q: QuantType, threads: int, allow_requantize: bool
) -> None:
    import llama_cpp

    from edge.engine.llama_log import captured_llama_log, last_error

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = q.ftype
    params.nthread = threads
    params.allow_requantize = allow_requantize
    with captured_llama_log() as lines:
        status = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params)
    if status != 0:
        detail = last_error(lines)
        # Raised as OSError, so `atomic_output` reports it as a DiskFullError about `out`.
        if _looks_like_disk_full(lines):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        full = _space_error(dst)
        if full is not None:
            raise full
        raise QuantizeError(
            f"llama.cpp could not quantize {src.name} to {q.name}: {detail}",
            "Check that the input is a valid GGUF (re-convert it) and the disk has room.",
        )


def _space_error(dst: Path) -> OSError | None:
    """Whether writing more to the half-written `dst` fails for lack of space.

    llama.cpp writes through a std::ofstream, so a full disk or a file-size limit reaches
    us only as "basic_ios::clear: iostream error", without the errno. Appending to the
    file it gave up on asks the kernel again; the file is deleted afterwards anyway.
    """
    if not dst.is_file():
        return None
    try:
        with dst.open("ab") as f:
            f.write(b"\0" * _PROBE_BYTES)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            return exc
    return None


def _looks_like_disk_full(lines: list[str]) -> bool:
    # llama.cpp reports a failed write only as text; the errno is gone by the time we see it.
    text = "".join(lines[-20:]).lower()
    return "no space left" in text or "file too large" in text or "failed to write" in text
