"""How to load a model: GPU layers, context, KV-cache type, threads — computed without loading it.

The fit planner. From the GGUF's own tensor sizes and KV geometry, the free VRAM of the
best GPU and the free RAM, it picks where each layer goes, the context, the KV-cache type
and flash attention, leaving headroom for the desktop. Its arithmetic follows how llama.cpp
places a model (see `footprint`) and its compute-buffer estimate was checked against the
sizes llama.cpp itself reports; `edge-qwen doctor` prints every term. Explicit wishes win;
what the planner changes to make them fit, it says in `Plan.notes`.
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edge.config import Settings
from edge.errors import OutOfMemoryError, UsageError

MiB = 1 << 20
KV_TYPES = {"f16": (1, 2.0), "q8_0": (8, 34 / 32), "f32": (0, 4.0)}  # ggml type id, bytes/element
DEFAULT_CTX = 8192
# Without --ctx, a GPU plan shrinks the context to these before it leaves layers on the
# CPU, where decoding is several times slower; an asked-for context is kept.
SHRINK_CTX = (4096, 2048)
MIN_AUTO_CTX = 2048
MIN_RETRY_CTX = 512  # a load that runs out of memory halves the context down to this
RETRY_NOTE = "out of memory at load, so"
N_BATCH = 512  # tokens per llama_decode (also the micro-batch): the compute buffer scales with it
# Outside llama.cpp's buffers: the Python process, llama.cpp's code and the tokenizer
# (the server's peak RSS minus weights, KV cache and compute buffer was 165 MiB).
RUNTIME_RAM = 200 * MiB
# Outside llama.cpp's buffers on the GPU: cuBLAS's workspace, ggml's pool of scratch memory
# for quantized matmuls and flash attention, CUDA graphs.
CUDA_RESERVE = 192 * MiB
# Left free for the desktop and other programs to grow: 8% of the card, at least 256 MiB.
DESKTOP_SHARE, DESKTOP_MIN = 0.08, 256 * MiB
# The shelf (edge.engine.shelf): finished conversations' KV parked in RAM while others run.
# By default an eighth of the RAM free at start, at most 2 GiB: 2 GiB holds ~18,000 tokens
# of Qwen3-0.6B's f16 KV (a day of a household's conversations, or an agent's long prompt
# and a few chats beside it), and an eighth leaves an 8 GB laptop most of its memory.
SHELF_SHARE, SHELF_MAX = 1 / 8, 2 << 30
# The prompt cache's disk tier (edge.engine.diskcache): by default a tenth of the disk free
# at start, at most 8 GiB. An agent's prefix is 0.8-2 GiB of Qwen3-0.6B's f16 KV (7-19k
# tokens at 112 KiB), so 8 GiB keeps the three agents people run and a day's long chats; a
# tenth leaves a nearly full laptop disk nearly all its room.
DISK_SHARE, DISK_MAX = 1 / 10, 8 << 30


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
    layer_bytes: tuple[int, ...] = ()  # each repeating block's weights
    embd_bytes: int = 0  # the token embedding: llama.cpp keeps the input layer in RAM
    output_bytes: int = 0  # output norm + lm head (a second copy of the embedding when tied)
    tied: bool = True  # the lm head is the token embedding (Qwen3-0.6B's is)
    n_embd: int = 1024
    n_ff: int = 3072
    n_head: int = 16
    n_vocab: int = 151936

    def kv_bytes_per_token(self, kv_type: str) -> float:
        """K and V for every layer: Qwen3-0.6B in f16 is 28 × 8 × 128 × 2 × 2 B = 112 KiB."""
        return self.layers * self.kv_heads * self.head_dim * 2 * KV_TYPES[kv_type][1]

    def block_bytes(self) -> tuple[int, ...]:
        """Per-layer weights; spread evenly when the header's tensor list was not read."""
        if self.layer_bytes:
            return self.layer_bytes
        rest = self.weights_bytes - self.embd_bytes - self.output_bytes
        return (max(0, rest) // self.layers,) * self.layers


@dataclass(frozen=True)
class Budget:
    """The memory a plan may use; zero/None where there is no GPU or the figure is unknown."""

    gpu: str | None = None  # the GPU's name, e.g. "NVIDIA GeForce RTX 4060"
    vram_total: int = 0
    vram_free: int = 0
    ram_available: int | None = None

    @property
    def vram_headroom(self) -> int:
        """VRAM left unused: the desktop's share plus CUDA's own scratch memory."""
        if not self.gpu:
            return 0
        return max(DESKTOP_MIN, int(self.vram_total * DESKTOP_SHARE)) + CUDA_RESERVE

    @property
    def vram_budget(self) -> int:
        """What llama.cpp's buffers may take on the GPU."""
        return max(0, self.vram_free - self.vram_headroom)


@dataclass(frozen=True)
class Footprint:
    """Bytes a placement needs on each side (the arithmetic doctor shows)."""

    gpu_weights: int
    gpu_kv: int
    gpu_compute: int
    ram_weights: int
    ram_kv: int
    ram_compute: int

    @property
    def vram(self) -> int:
        return self.gpu_weights + self.gpu_kv + self.gpu_compute

    @property
    def ram(self) -> int:
        return self.ram_weights + self.ram_kv + self.ram_compute + RUNTIME_RAM


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
    shelf_bytes: int = 0  # RAM for finished sequences' KV parked out of the cache
    disk_bytes: int = 0  # disk for long prompts' KV under the home's prompt-cache/
    gpu: str | None = None  # the GPU the layers go to
    vram_bytes: int = 0  # predicted use of llama.cpp's buffers on the GPU
    ram_bytes: int = 0  # predicted resident memory of the process
    budget: Budget = field(default_factory=Budget)
    # What was asked for (None: the planner chose), kept so that a load that runs out of
    # memory can be re-planned smaller without overriding it.
    wishes: Settings = field(default_factory=lambda: Settings())

    @property
    def n_outputs_max(self) -> int:
        """Logits rows per decode: one per sequence. llama.cpp's default (n_batch rows) sizes
        the compute buffer for 512 × 151,936 floats: ~280 MiB that is never read."""
        return self.n_parallel

    def describe(self, info: ModelInfo) -> str:
        """One line, e.g.
        `Qwen3-0.6B Q8_0 · CPU, 2 threads · ctx 8192 · KV f16 (896 MiB) · weights 604 MiB`."""
        if self.n_gpu_layers == 0:
            where = "CPU"
        else:
            on = min(self.n_gpu_layers, info.layers + 1)
            where = f"{self.gpu or 'GPU'}: {on}/{info.layers + 1} layers"
            where += f" ({self.vram_bytes / MiB:.0f} MiB VRAM)" if self.vram_bytes else ""
        return (
            f"{info.name} {info.file_type} · {where}, {self.n_threads} threads · ctx {self.n_ctx}"
            f" · KV {self.kv_type} ({self.kv_bytes / MiB:.0f} MiB)"
            f"{f' shared by {self.n_parallel} sequences' if self.n_parallel > 1 else ''}"
            f"{' · flash attn' if self.flash_attn else ''}"
            f" · weights {self.weights_bytes / MiB:.0f} MiB"
            f"{f' · shelf ≤ {self.shelf_bytes / MiB:.0f} MiB' if self.shelf_bytes else ''}"
            f"{f' · disk cache ≤ {self.disk_bytes / MiB:.0f} MiB' if self.disk_bytes else ''}"
        ) + "".join(f" ({note})" for note in self.notes)


def read_model_info(path: Path) -> ModelInfo:
    """Read the header fields the plan needs (milliseconds: tensors are not loaded)."""
    from edge.model.gguf_meta import qwen3_header
    from edge.model.quantize import type_name

    h = qwen3_header(path)
    m = h.metadata
    heads = int(m["qwen3.attention.head_count"])
    layers = int(m["qwen3.block_count"])
    sizes = h.tensor_sizes
    blocks = [0] * layers
    for name, nbytes in sizes.items():
        if name.startswith("blk."):
            index = int(name.split(".")[1])
            if 0 <= index < layers:
                blocks[index] += nbytes
    embd = sizes.get("token_embd.weight", 0)
    # A tied lm head (Qwen3-0.6B's) is the embedding again; on a GPU llama.cpp loads a copy.
    tied = "output.weight" not in sizes
    output = sizes.get("output.weight", embd) + sizes.get("output_norm.weight", 0)
    embd_shape = h.tensor_shapes.get("token_embd.weight", (0, 151936))
    return ModelInfo(
        path=path,
        name=str(m.get("general.name", path.stem)),
        file_type=type_name(m.get("general.file_type")),
        layers=layers,
        kv_heads=int(m.get("qwen3.attention.head_count_kv", heads)),
        head_dim=int(m.get("qwen3.attention.key_length", m["qwen3.embedding_length"] // heads)),
        ctx_train=int(m.get("qwen3.context_length", 40960)),
        weights_bytes=h.tensor_bytes,
        layer_bytes=tuple(blocks),
        embd_bytes=embd,
        output_bytes=output,
        tied=tied,
        n_embd=int(m["qwen3.embedding_length"]),
        n_ff=int(m.get("qwen3.feed_forward_length", 4 * int(m["qwen3.embedding_length"]))),
        n_head=heads,
        n_vocab=int(embd_shape[-1]),
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


def available_ram() -> int | None:
    """Bytes of memory available to new programs (Linux MemAvailable), or None if unknown."""
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None


def detect_budget(offload: bool) -> Budget:
    """Free RAM, and the offload device with the most free VRAM when the build can use one."""
    ram = available_ram()
    if not offload:
        return Budget(ram_available=ram)
    from edge.engine.gpu import best_gpu, offload_devices

    gpu = best_gpu(offload_devices())
    if gpu is None:
        return Budget(ram_available=ram)
    return Budget(gpu.description or gpu.name, gpu.total_bytes, gpu.free_bytes, ram)


# -- the arithmetic ---------------------------------------------------------------------


def padded_ctx(n_ctx: int) -> int:
    """llama.cpp rounds the KV cache up to a multiple of 256 cells."""
    return math.ceil(n_ctx / 256) * 256


def compute_bytes(info: ModelInfo, n_ctx: int, flash_attn: bool, outputs: int) -> int:
    """llama.cpp's worst-case compute buffer for a 512-token micro-batch.

    Activations of the widest layer (the FFN's three n_ff rows and the attention's rows),
    the attention mask over the whole cache (f16 with flash attention), or without it the
    full K·Q matrix of every head (f32), and the logits rows. Checked against the size
    llama.cpp reports on CPU: 0.6b shape, ctx 2,048–40,960, with and without flash
    attention, it is 0–3% above; tiny shape 10–18% above (tests/unit/test_plan.py and
    tests/live/test_plan.py keep it so).
    """
    ub = min(N_BATCH, padded_ctx(n_ctx))
    ctx = padded_ctx(n_ctx)
    rows = 3 * info.n_ff + (4 * info.n_embd if flash_attn else 0)
    attention = ctx * ub * 2 if flash_attn else ctx * ub * (4 * info.n_head + 4)
    return ub * 4 * rows + attention + info.n_vocab * outputs * 4 + MiB


def footprint(
    info: ModelInfo, n_gpu_layers: int, n_ctx: int, kv_type: str, flash_attn: bool, outputs: int = 1
) -> Footprint:
    """Bytes on the GPU and in RAM when the last `n_gpu_layers` layers are offloaded.

    llama.cpp counts the output layer as layer n+1: offloading n+1 puts everything but the
    token embedding on the GPU (the input layer stays in RAM; a tied lm head is copied).
    Each layer's KV cache lives where the layer does.
    """
    n = info.layers
    on_gpu = max(0, min(n_gpu_layers, n))
    output_gpu = n_gpu_layers > n
    blocks = info.block_bytes()
    kv_layer = int(info.kv_bytes_per_token(kv_type) / n * padded_ctx(n_ctx))
    compute = compute_bytes(info, n_ctx, flash_attn, outputs)
    # In RAM a tied head reads the embedding itself: only the output norm is extra.
    cpu_output = info.output_bytes - (info.embd_bytes if info.tied else 0)
    if n_gpu_layers <= 0:
        gpu_compute, ram_compute = 0, compute
    elif output_gpu:
        gpu_compute, ram_compute = compute, 16 * MiB  # the host side only stages inputs/logits
    else:
        # Layers left in RAM compute there; llama.cpp may also run their big prompt matmuls
        # on the GPU by copying the weights over, so the GPU side holds the largest of them.
        gpu_compute, ram_compute = compute + info.output_bytes, compute
    return Footprint(
        gpu_weights=sum(blocks[n - on_gpu :]) + (info.output_bytes if output_gpu else 0),
        gpu_kv=kv_layer * on_gpu,
        gpu_compute=gpu_compute,
        ram_weights=sum(blocks[: n - on_gpu])
        + info.embd_bytes
        + (0 if output_gpu else max(0, cpu_output)),
        ram_kv=kv_layer * (n - on_gpu),
        ram_compute=ram_compute,
    )


# -- the planner ------------------------------------------------------------------------


@dataclass
class _Choice:
    n_gpu_layers: int
    n_ctx: int
    kv: str
    fa: bool
    notes: list[str]


def make_plan(
    info: ModelInfo,
    settings: Settings | None = None,
    *,
    gpu_offload: bool | None = None,
    budget: Budget | None = None,
) -> Plan:
    """The plan for `info` on this machine; what `settings` asks for wins.

    `gpu_offload` says whether the llama.cpp build can offload (None: ask it); `budget` is
    the free memory (None: measure it now). gpu_layers None means as many as fit.
    """
    s = settings or Settings()
    if s.ctx is not None and s.ctx > info.ctx_train:
        raise UsageError(
            f"Context {s.ctx} is outside 64..{info.ctx_train} for this model.",
            f"Pass --ctx between 64 and {info.ctx_train}.",
        )
    if s.kv == "q8_0" and s.flash_attn is False:
        raise UsageError(
            "A q8_0 KV cache needs flash attention in llama.cpp.",
            "Drop --no-flash-attn or use --kv f16.",
        )
    offload = gpu_offload if gpu_offload is not None else _build_offloads()
    notes: list[str] = []
    n_gpu_layers = s.gpu_layers
    if n_gpu_layers and not offload:
        notes.append("this llama.cpp build has no GPU offload, so it runs on the CPU")
        n_gpu_layers = 0
    if budget is None:
        budget = detect_budget(offload and n_gpu_layers != 0)
    n_parallel = s.parallel or 1
    if n_gpu_layers is None and offload and budget.gpu:
        choice = _fit_gpu(info, budget, s.ctx, s.kv, s.flash_attn, n_parallel)
    else:
        choice = _fixed(info, budget, s.ctx, s.kv, s.flash_attn, n_gpu_layers or 0, n_parallel)
    choice = _fit_ram(info, budget, choice, s.ctx, s.kv, s.flash_attn, n_parallel)
    return _finish(info, choice, notes, s, n_parallel, budget)


def _fixed(
    info: ModelInfo,
    budget: Budget,
    n_ctx: int | None,
    kv: str | None,
    fa: bool | None,
    layers: int,
    parallel: int,
) -> _Choice:
    """A placement the user chose (or the CPU): kept, with a warning when it looks too big."""
    layers = min(layers, info.layers + 1) if layers > 0 else 0
    ctx = n_ctx or min(DEFAULT_CTX, info.ctx_train)
    kv_type = kv or "f16"
    # On CPU, llama.cpp's flash-attention path prefills faster but decodes slower once the
    # context passes a few hundred tokens (0.6b Q4_K_M, 2 threads: 28.8 vs 34.4 tok/s at
    # 1,000 tokens); chats grow, so it is off unless a quantized KV cache needs it. On a
    # GPU it is faster and saves the K·Q matrix (1 GiB at 32k tokens).
    flash = (kv_type == "q8_0" or layers > 0) if fa is None else fa
    notes = []
    if layers and budget.gpu:
        need = footprint(info, layers, ctx, kv_type, flash, parallel).vram
        if need > budget.vram_budget:
            notes.append(
                f"{layers} layers need ~{need // MiB} MiB of VRAM but "
                f"{budget.vram_budget // MiB} MiB is free after headroom: "
                "if loading fails, fewer layers are tried"
            )
    return _Choice(layers, ctx, kv_type, flash, notes)


def _fit_gpu(
    info: ModelInfo,
    budget: Budget,
    n_ctx: int | None,
    kv: str | None,
    fa: bool | None,
    parallel: int,
) -> _Choice:
    """Everything on the GPU if it fits, f16 KV before q8_0; a context nobody asked for
    shrinks before any layer stays in RAM; then as many layers as fit (partial offload)."""
    flash = True if fa is None else fa
    kvs = [kv] if kv else (["f16", "q8_0"] if flash else ["f16"])
    whole, room = info.layers + 1, budget.vram_budget
    ctx = n_ctx or min(DEFAULT_CTX, info.ctx_train)

    def fits(layers: int, c: int, kv_type: str) -> bool:
        return footprint(info, layers, c, kv_type, flash, parallel).vram <= room

    for c in [ctx] + ([] if n_ctx else [x for x in SHRINK_CTX if x < ctx]):
        for kv_type in kvs:
            if fits(whole, c, kv_type):
                notes = []
                if c != ctx:
                    notes.append(f"context {c}: the most that fits in {room // MiB} MiB of VRAM")
                if kv_type != kvs[0]:
                    notes.append(f"KV cache q8_0 to fit {c} tokens in {room // MiB} MiB of VRAM")
                return _Choice(whole, c, kv_type, flash, notes)
    kv_type = kvs[-1]  # partial offload: the smaller cache leaves room for more layers
    layers = next((n for n in range(info.layers, 0, -1) if fits(n, ctx, kv_type)), 0)
    if layers:
        full = footprint(info, whole, ctx, kv_type, flash, parallel).vram
        return _Choice(
            layers,
            ctx,
            kv_type,
            flash,
            [
                f"{layers}/{whole} layers on the GPU: all of them need {full // MiB} MiB of VRAM, "
                f"{room // MiB} MiB is free after headroom"
            ],
        )
    cpu = _fixed(info, budget, n_ctx, kv, fa, 0, parallel)
    cpu.notes.append(
        f"{budget.vram_free // MiB} MiB of free VRAM is not enough for one layer "
        f"(headroom {budget.vram_headroom // MiB} MiB): running on the CPU"
    )
    return cpu


def _fit_ram(
    info: ModelInfo,
    budget: Budget,
    choice: _Choice,
    n_ctx: int | None,
    kv: str | None,
    fa: bool | None,
    parallel: int,
) -> _Choice:
    """Shrink the context (and quantize the KV cache, if allowed) until the RAM side fits."""
    ram = budget.ram_available
    if ram is None:
        return choice

    def need(c: _Choice) -> int:
        return footprint(info, c.n_gpu_layers, c.n_ctx, c.kv, c.fa, parallel).ram

    if need(choice) <= ram:
        return choice
    kvs = [choice.kv] if kv or fa is False or choice.kv == "q8_0" else [choice.kv, "q8_0"]
    ctx = choice.n_ctx
    while ctx >= min(MIN_AUTO_CTX, choice.n_ctx):
        for kv_type in kvs:
            trial = _Choice(
                choice.n_gpu_layers,
                ctx,
                kv_type,
                choice.fa or kv_type == "q8_0",
                list(choice.notes),
            )
            if need(trial) <= ram:
                if ctx != choice.n_ctx:
                    asked = "the requested" if n_ctx else "the default"
                    trial.notes.append(
                        f"context {ctx} instead of {asked} {choice.n_ctx}: "
                        f"{ram // MiB} MiB of RAM is free"
                    )
                if kv_type != choice.kv:
                    trial.notes.append(f"KV cache q8_0 to fit in {ram // MiB} MiB of RAM")
                return trial
        ctx //= 2
    smallest = _Choice(choice.n_gpu_layers, min(MIN_AUTO_CTX, choice.n_ctx), kvs[-1], choice.fa, [])
    raise OutOfMemoryError(
        f"{info.name} {info.file_type} needs at least {need(smallest) // MiB} MiB of RAM; "
        f"{ram // MiB} MiB is available.",
        "Close other programs, or use a smaller quantization (edge-qwen pull --quant Q4_K_M).",
    )


def _finish(
    info: ModelInfo, c: _Choice, notes: list[str], wishes: Settings, parallel: int, budget: Budget
) -> Plan:
    threads = wishes.threads
    n = threads or physical_cores()
    return Plan(
        # Asked for N threads, llama.cpp gets N for everything; by default prompts also
        # use the hyper-threads, which help batches of many tokens.
        n_threads=n,
        n_threads_batch=n if threads else max(n, os.cpu_count() or n),
        n_batch=N_BATCH,
        use_mlock=False,
        weights_bytes=info.weights_bytes,
        notes=tuple(notes + c.notes),
        n_parallel=parallel,
        shelf_bytes=shelf_bytes(wishes, budget),
        disk_bytes=disk_bytes(wishes),
        wishes=wishes,
        **_placement(info, c.n_gpu_layers, c.n_ctx, c.kv, c.fa, parallel, budget),
    )


def explain(plan: Plan) -> list[str]:
    """Why the plan chose its attention kernel and its shelf, for doctor, one line each."""
    w = plan.wishes
    if w.flash_attn is not None:
        fa = "as asked"
    elif plan.n_gpu_layers > 0:
        fa = "on a GPU it is faster and keeps the K·Q matrix out of VRAM"
    elif plan.kv_type == "q8_0":
        fa = "a q8_0 KV cache needs it"
    else:
        fa = (
            "on a CPU llama.cpp decodes faster without it past ~300 tokens of context "
            "(llama-bench tg, 0.6b Q4_K_M, 2 threads: 12.4 vs 9.0 tok/s at 3,500; ~5% slower "
            "under 200); cached conversations wait on the shelf, so they cost running ones "
            "nothing"
        )
    if w.cache_ram is not None:
        cap = "--cache-ram"
    else:
        cap = f"an eighth of free RAM, at most {SHELF_MAX // MiB} MiB"
    shelf = (
        f"shelf: up to {plan.shelf_bytes / MiB:.0f} MiB of RAM ({cap}) for finished "
        "conversations' KV while others run; the KV cache then holds only running ones"
        if plan.shelf_bytes
        else "shelf: none (--cache-ram 0): finished conversations are dropped while others run"
    )
    cap = "--cache-disk" if w.cache_disk is not None else "a tenth of free disk, at most 8 GiB"
    disk = (
        f"disk cache: up to {plan.disk_bytes / MiB:.0f} MiB under {w.home / 'prompt-cache'}"
        f" ({cap}) for prompts of 1,024 tokens or more, across restarts and sleep"
        if plan.disk_bytes
        else "disk cache: none (--cache-disk 0, or no free disk): long prompts are read again"
        " after a restart"
    )
    return [f"flash attention {'on' if plan.flash_attn else 'off'}: {fa}", shelf, disk]


def disk_bytes(wishes: Settings) -> int:
    """The disk tier's cap: --cache-disk if given, else `DISK_SHARE` of the home's free disk
    up to `DISK_MAX`."""
    if wishes.cache_disk is not None:
        return wishes.cache_disk * MiB
    folder = wishes.home
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return 0
    return min(DISK_MAX, int(free * DISK_SHARE)) // MiB * MiB


def shelf_bytes(wishes: Settings, budget: Budget) -> int:
    """The shelf's cap: --cache-ram if given, else `SHELF_SHARE` of free RAM up to `SHELF_MAX`."""
    if wishes.cache_ram is not None:
        return wishes.cache_ram * MiB
    if budget.ram_available is None:
        return SHELF_MAX // 2
    return min(SHELF_MAX, int(budget.ram_available * SHELF_SHARE)) // MiB * MiB


def _placement(
    info: ModelInfo, layers: int, ctx: int, kv: str, fa: bool, parallel: int, budget: Budget
) -> dict[str, Any]:
    """The plan fields that follow from where the layers go and how big the cache is."""
    fp = footprint(info, layers, ctx, kv, fa, parallel)
    return {
        "n_gpu_layers": layers,
        "n_ctx": ctx,
        "kv_type": kv,
        "flash_attn": fa,
        # On CPU llama.cpp repacks K-quant weights into an interleaved copy; with the file
        # mapped, the mapped pages stay resident too (0.6b Q4_K_M, ctx 4096: peak RSS 1160
        # vs 959 MiB). Reading the file instead keeps one copy, loads faster, decodes the
        # same. Fully offloaded, llama.cpp unmaps what went to the GPU: mapping costs nothing.
        "use_mmap": layers > info.layers,
        "kv_bytes": int(info.kv_bytes_per_token(kv) * ctx),
        "vram_bytes": fp.vram,
        "ram_bytes": fp.ram,
        "gpu": budget.gpu if layers else None,
        "budget": budget,
    }


def smaller(info: ModelInfo, plan: Plan, budget: Budget | None = None) -> Plan | None:
    """The next plan to try after `plan` ran out of memory, or None when nothing is smaller.

    First a fresh plan from what is free now (another program may have taken VRAM since),
    if it needs less; then half the GPU layers; then, on the CPU, half the context.
    """
    w = plan.wishes
    if plan.n_gpu_layers > 0:
        if budget is not None and w.gpu_layers is None:
            try:
                fresh = make_plan(info, w, gpu_offload=True, budget=budget)
            except OutOfMemoryError:
                fresh = None
            if fresh is not None and fresh.vram_bytes < plan.vram_bytes:
                return replace(fresh, notes=(*fresh.notes, f"{RETRY_NOTE} re-planned"))
        layers = plan.n_gpu_layers // 2 if plan.n_gpu_layers > 1 else 0
        return _retry(info, plan, layers, plan.n_ctx, budget, f"{layers} layers on the GPU")
    if plan.n_ctx // 2 >= MIN_RETRY_CTX:
        ctx = plan.n_ctx // 2
        return _retry(info, plan, 0, ctx, budget, f"context {ctx}")
    return None


def _retry(
    info: ModelInfo, plan: Plan, layers: int, ctx: int, budget: Budget | None, what: str
) -> Plan:
    return replace(
        plan,
        notes=(*(n for n in plan.notes if not n.startswith(RETRY_NOTE)), f"{RETRY_NOTE} {what}"),
        **_placement(
            info, layers, ctx, plan.kv_type, plan.flash_attn, plan.n_parallel, budget or plan.budget
        ),
    )


def _build_offloads() -> bool:
    from edge.engine.gpu import supports_gpu_offload

    return supports_gpu_offload()
