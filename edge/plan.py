"""How to load a model: threads, context, KV-cache type, GPU layers — computed without loading it.

The arithmetic comes from the GGUF's own metadata (layers, KV heads, head size, tensor
bytes), so `edge-qwen doctor` and the start of `chat`/`serve` can print the plan before
any memory is committed. Every field can be overridden by a flag.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from edge.errors import UsageError

KV_TYPES = {"f16": (1, 2.0), "q8_0": (8, 34 / 32), "f32": (0, 4.0)}  # ggml type id, bytes/element
DEFAULT_CTX = 8192
# The server's batching engine: sequences decoded together. Its KV cache is unified (the
# sequences share the context's cells), so a slot costs no KV memory, only its share of
# each step; 4 is llama-server's own default.
DEFAULT_PARALLEL = 4
MAX_PARALLEL = 64


@dataclass(frozen=True)
class ModelInfo:
    """What the plan needs from a GGUF file's header."""

    path: Path
    name: str
    file_type: str
    layers: int
    kv_heads: int
    head_dim: int
    ctx_train: int
    weights_bytes: int

    def kv_bytes_per_token(self, kv_type: str) -> float:
        """K and V for every layer: Qwen3-0.6B in f16 is 28 × 8 × 128 × 2 × 2 B = 112 KiB."""
        return self.layers * self.kv_heads * self.head_dim * 2 * KV_TYPES[kv_type][1]


@dataclass(frozen=True)
class Plan:
    """A concrete loading plan."""

    n_ctx: int
    n_threads: int
    n_threads_batch: int
    n_batch: int
    n_gpu_layers: int
    kv_type: str
    flash_attn: bool
    use_mmap: bool
    use_mlock: bool
    kv_bytes: int
    weights_bytes: int
    notes: tuple[str, ...] = ()
    n_parallel: int = 1  # sequences decoded together (the server's batching engine)

    def describe(self, info: ModelInfo) -> str:
        """One line, e.g. `Qwen3-0.6B Q8_0 · CPU, 2 threads · ctx 8192 · KV f16 (896 MiB) · 610 MiB`."""
        where = (
            "CPU"
            if self.n_gpu_layers == 0
            else f"{min(self.n_gpu_layers, info.layers)}/{info.layers} layers on GPU"
        )
        return (
            f"{info.name} {info.file_type} · {where}, {self.n_threads} threads · ctx {self.n_ctx}"
            f" · KV {self.kv_type} ({self.kv_bytes / 2**20:.0f} MiB)"
            f"{f' shared by {self.n_parallel} sequences' if self.n_parallel > 1 else ''}"
            f"{' · flash attn' if self.flash_attn else ''} · weights {self.weights_bytes / 2**20:.0f} MiB"
        ) + "".join(f" ({note})" for note in self.notes)


def read_model_info(path: Path) -> ModelInfo:
    """Read the header fields the plan needs (milliseconds: tensors are not loaded)."""
    from edge.gguf_meta import qwen3_header
    from edge.quantize import type_name

    h = qwen3_header(path)
    m = h.metadata
    heads = int(m["qwen3.attention.head_count"])
    return ModelInfo(
        path=path,
        name=str(m.get("general.name", path.stem)),
        file_type=type_name(m.get("general.file_type")),
        layers=int(m["qwen3.block_count"]),
        kv_heads=int(m.get("qwen3.attention.head_count_kv", heads)),
        head_dim=int(m.get("qwen3.attention.key_length", m["qwen3.embedding_length"] // heads)),
        ctx_train=int(m.get("qwen3.context_length", 40960)),
        weights_bytes=h.tensor_bytes,
    )


def physical_cores() -> int:
    """Decode speed scales with physical cores; hyper-threads only add contention."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            # (physical id, core id) pairs: unique physical cores across sockets.
            ids, phys = set(), ""
            for line in f:
                if line.startswith("physical id"):
                    phys = line.split(":")[1].strip()
                elif line.startswith("core id"):
                    ids.add((phys, line.split(":")[1].strip()))
        return len(ids) if ids else max(1, os.cpu_count() or 1)
    except OSError:
        return max(1, os.cpu_count() or 1)


def make_plan(
    info: ModelInfo,
    *,
    n_ctx: int | None = None,
    threads: int | None = None,
    kv_type: str | None = None,
    n_gpu_layers: int | None = None,
    flash_attn: bool | None = None,
    mlock: bool = False,
    gpu_offload: bool | None = None,
    parallel: int | None = None,
) -> Plan:
    """The CPU plan (GPU fitting comes with the CUDA planner); explicit arguments win.

    `gpu_offload` says whether the llama.cpp build can offload (None: ask it).
    """
    notes: list[str] = []
    if n_gpu_layers and not (gpu_offload if gpu_offload is not None else _build_offloads()):
        notes.append("this llama.cpp build has no GPU offload, so it runs on the CPU")
        n_gpu_layers = 0
    kv = (kv_type or "f16").lower()
    if kv not in KV_TYPES:
        raise UsageError(
            f"Unknown KV-cache type '{kv_type}'.", f"Choose one of: {', '.join(KV_TYPES)}."
        )
    ctx = n_ctx or min(DEFAULT_CTX, info.ctx_train)
    if ctx < 64 or ctx > info.ctx_train:
        raise UsageError(f"Context {ctx} is outside 64..{info.ctx_train} for this model.",
                         f"Pass --ctx between 64 and {info.ctx_train}.")  # fmt: skip
    n_parallel = parallel or 1
    if not 1 <= n_parallel <= MAX_PARALLEL:
        raise UsageError(f"--parallel {n_parallel} is outside 1..{MAX_PARALLEL}.",
                         "4 suits a home server; more only helps with more users at once.")  # fmt: skip
    n = threads or physical_cores()
    # On CPU, llama.cpp's flash-attention path prefills faster but decodes slower once the
    # context passes a few hundred tokens (0.6b Q4_K_M, 2 threads: 28.8 vs 34.4 tok/s at
    # 1,000 tokens); chats grow, so it is off unless a quantized KV cache needs it.
    fa = (kv == "q8_0" or bool(n_gpu_layers)) if flash_attn is None else flash_attn
    if kv == "q8_0" and not fa:
        raise UsageError(
            "A q8_0 KV cache needs flash attention in llama.cpp.",
            "Drop --no-flash-attn or use --kv f16.",
        )
    # On CPU llama.cpp repacks K-quant weights into an interleaved copy; with the file
    # mapped, the mapped pages stay resident too (0.6b Q4_K_M, ctx 4096: peak RSS 1160 vs
    # 959 MiB). Reading the file instead keeps one copy, loads faster, decodes the same.
    mmap = bool(n_gpu_layers)
    return Plan(
        # Asked for N threads, llama.cpp gets N for everything; by default prompts also
        # use the hyper-threads, which help batches of many tokens.
        n_ctx=ctx, n_threads=n, n_threads_batch=n if threads else max(n, os.cpu_count() or n), n_batch=512,
        n_gpu_layers=n_gpu_layers or 0, kv_type=kv, flash_attn=fa, use_mmap=mmap, use_mlock=mlock,
        kv_bytes=int(info.kv_bytes_per_token(kv) * ctx), weights_bytes=info.weights_bytes,
        notes=tuple(notes), n_parallel=n_parallel,
    )  # fmt: skip


def _build_offloads() -> bool:
    import llama_cpp

    return bool(llama_cpp.llama_supports_gpu_offload())
