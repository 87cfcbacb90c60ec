"""The benchmark checkpoints: synthetic Qwen3 models with seeded random weights, made
bench-safe (see edge.model.synthetic), converted and quantized once into a cache folder.

A random-weight model of a given shape costs exactly what real weights of that shape
cost per token, so speed figures are honest; what it writes is noise, so no quality
figure is made.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SEED = 0


@dataclass(frozen=True)
class BenchShape:
    """A shape of edge.model.synthetic.SHAPES as the benchmark runs it."""

    name: str
    about: str  # what its figures stand for, printed above its section
    quants: tuple[str, ...]  # measured by default (a quick run: the first only)
    threads: int | None = None  # None: --threads, else the machine's physical cores


SHAPES: dict[str, BenchShape] = {
    s.name: s
    for s in (
        BenchShape("0.6b", "Qwen3-0.6B's exact shape: what a CPU user gets.", ("Q4_K_M", "Q8_0")),
        # One llama.cpp thread per contender leaves a core for the server's Python and HTTP
        # work, as a GPU leaves the CPU to it.
        BenchShape(
            "gpu-proxy",
            "The GPU-regime proxy: a small Qwen3 (real vocabulary) whose token costs about "
            "5 ms on one core, as a Qwen3-0.6B token costs 2.5–4 ms on a GPU, so the "
            "server's own per-token work decides the race. Every contender gets 1 thread.",
            ("Q4_K_M",),
            threads=1,
        ),
    )
}
"""The shapes `edge-qwen bench --shape` accepts, in the order they run by default."""


def bench_model(cache: Path, quant: str, log: Callable[[str], None], shape: str = "0.6b") -> Path:
    """`<cache>/qwen3-<shape>-seed0-<QUANT>.gguf`, made on first use (the 0.6b files keep
    the names they had before there were other shapes)."""
    out = cache / f"qwen3-{shape}-seed{SEED}-{quant}.gguf"
    if out.is_file():
        return out
    from edge.model.quantize import quantize

    source = _bf16(cache, shape, log)
    log(f"Quantizing the {shape} benchmark model to {quant}…")
    return quantize(source, out, quant)


def _bf16(cache: Path, shape: str, log: Callable[[str], None]) -> Path:
    out = cache / f"qwen3-{shape}-seed{SEED}-BF16.gguf"
    if out.is_file():
        return out
    from edge.model.convert import convert
    from edge.model.synthetic import write_checkpoint

    cache.mkdir(parents=True, exist_ok=True)
    folder = cache / f".checkpoint-{shape}-seed{SEED}"
    log(f"Writing the synthetic {shape}-shaped Qwen3 checkpoint (bench-safe, seed {SEED})…")
    shutil.rmtree(folder, ignore_errors=True)  # a leftover of an interrupted run
    write_checkpoint(folder, shape=shape, seed=SEED, bench_safe=True)
    try:
        return convert(folder, out, outtype="bf16", name=f"Qwen3-{shape}-synthetic")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
