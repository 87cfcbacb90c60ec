"""The benchmark checkpoint: Qwen3-0.6B's exact shape with seeded random weights, made
bench-safe (see edge.synthetic), converted and quantized once into a cache folder.

A random-weight model of the real shape costs exactly what the real one costs per token,
so speed figures are honest; what it writes is noise, so no quality figure is made.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

SEED = 0


def bench_model(cache: Path, quant: str, log: Callable[[str], None]) -> Path:
    """`<cache>/qwen3-0.6b-seed0-<QUANT>.gguf`, made on first use."""
    out = cache / f"qwen3-0.6b-seed{SEED}-{quant}.gguf"
    if out.is_file():
        return out
    from edge.quantize import quantize

    source = _bf16(cache, log)
    log(f"Quantizing the benchmark model to {quant}…")
    return quantize(source, out, quant)


def _bf16(cache: Path, log: Callable[[str], None]) -> Path:
    out = cache / f"qwen3-0.6b-seed{SEED}-BF16.gguf"
    if out.is_file():
        return out
    from edge.convert import convert
    from edge.synthetic import write_checkpoint

    cache.mkdir(parents=True, exist_ok=True)
    folder = cache / f".checkpoint-seed{SEED}"
    log("Writing the synthetic Qwen3-0.6B-shaped checkpoint (bench-safe, seed 0)…")
    shutil.rmtree(folder, ignore_errors=True)  # a leftover of an interrupted run
    write_checkpoint(folder, shape="0.6b", seed=SEED, bench_safe=True)
    try:
        return convert(folder, out, outtype="bf16", name="Qwen3-0.6B-synthetic")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
