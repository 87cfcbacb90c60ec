"""Compute devices this machine and this llama.cpp build have, for `doctor` and the planner.

Two views, because they disagree in the case that matters most: llama.cpp's device
registry says where this build *can* run, NVML says which NVIDIA GPUs exist at all. An
NVIDIA GPU in NVML but no "gpu" device in llama.cpp means the wheel was built without
CUDA (CMAKE_ARGS="-DGGML_CUDA=on" was missing at install).

llama-cpp-python does not bind ggml's device API, so the few functions used here are
bound with ctypes to the libllama handle llama_cpp already loaded; dlsym on that handle
also searches its dependencies, libggml.so and libggml-base.so, where they live.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

# enum ggml_backend_dev_type in ggml-backend.h (llama-cpp-python 0.3.36). META wraps
# other devices for tensor parallelism; llama.cpp builds it on demand, never registers it.
_KINDS = {0: "cpu", 1: "gpu", 2: "igpu", 3: "accel", 4: "meta"}

_VP = ctypes.c_void_p
_SIZE = ctypes.c_size_t
_SIZE_P = ctypes.POINTER(ctypes.c_size_t)

# The C declarations from ggml-backend.h, as (restype, argtypes).
_SIGNATURES: dict[str, tuple[Any, tuple[Any, ...]]] = {
    "ggml_backend_reg_count": (_SIZE, ()),
    "ggml_backend_reg_get": (_VP, (_SIZE,)),
    "ggml_backend_reg_name": (ctypes.c_char_p, (_VP,)),
    "ggml_backend_dev_count": (_SIZE, ()),
    "ggml_backend_dev_get": (_VP, (_SIZE,)),
    "ggml_backend_dev_name": (ctypes.c_char_p, (_VP,)),
    "ggml_backend_dev_description": (ctypes.c_char_p, (_VP,)),
    "ggml_backend_dev_type": (ctypes.c_int, (_VP,)),
    "ggml_backend_dev_memory": (None, (_VP, _SIZE_P, _SIZE_P)),
}


@dataclass(frozen=True)
class Device:
    """One compute device, as llama.cpp's registry or NVML reports it."""

    index: int  # position in its source's list
    name: str  # e.g. "CUDA0" (llama.cpp) or "0" (nvml)
    description: str  # e.g. "NVIDIA GeForce RTX 4060"
    kind: str  # "gpu" | "igpu" | "accel" | "cpu"
    total_bytes: int
    free_bytes: int
    source: str  # "llama.cpp" | "nvml"


@functools.cache
def _ggml() -> dict[str, Any]:
    """ggml's registry functions, bound once, after llama.cpp's backends are loaded."""
    import llama_cpp
    from llama_cpp import llama_cpp as bindings

    from edge.engine.llama_log import captured_llama_log

    # The first registry call builds it (a CUDA build initialises CUDA then); in a
    # GGML_BACKEND_DL build this also dlopens the backend libraries. Either way it logs,
    # so keep those lines out of the terminal.
    with captured_llama_log() as lines:
        llama_cpp.llama_backend_init()
    for line in lines:
        log.debug("llama.cpp: %s", line.rstrip())
    # Fresh function pointers rather than attributes of the shared CDLL, so setting
    # restype/argtypes here cannot clash with anyone else's binding of the same name.
    lib = bindings._lib
    return {
        name: ctypes.CFUNCTYPE(restype, *argtypes)((name, lib))
        for name, (restype, argtypes) in _SIGNATURES.items()
    }


def _text(raw: bytes | None) -> str:
    return raw.decode("utf-8", errors="replace") if raw else ""


def _llama_device(api: dict[str, Any], index: int) -> Device:
    dev = api["ggml_backend_dev_get"](index)
    free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
    api["ggml_backend_dev_memory"](dev, ctypes.byref(free), ctypes.byref(total))
    return Device(
        index=index,
        name=_text(api["ggml_backend_dev_name"](dev)),
        description=_text(api["ggml_backend_dev_description"](dev)),
        kind=_KINDS.get(api["ggml_backend_dev_type"](dev), "unknown"),
        total_bytes=total.value,
        free_bytes=free.value,
        source="llama.cpp",
    )


def llama_devices() -> list[Device]:
    """Every device in llama.cpp's registry, CPU included, with its memory right now.

    The CPU device reports physical RAM as both total and free (llama.cpp calls "free"
    ill-defined), so use MemAvailable for what RAM is really free.
    """
    api = _ggml()
    return [_llama_device(api, i) for i in range(api["ggml_backend_dev_count"]())]


def offload_subset(devices: list[Device]) -> list[Device]:
    """The devices llama.cpp offloads layers to by default: discrete GPUs, or if there
    are none, integrated ones (the rule in llama_model_load's device selection)."""
    gpus = [d for d in devices if d.kind == "gpu"]
    return gpus or [d for d in devices if d.kind == "igpu"]


def offload_devices() -> list[Device]:
    """The GPU (or, lacking one, integrated GPU) devices this build can offload to."""
    return offload_subset(llama_devices())


def backends() -> list[str]:
    """Names of the registered backends, e.g. ["CPU"] or ["CUDA", "CPU"]."""
    api = _ggml()
    get, name = api["ggml_backend_reg_get"], api["ggml_backend_reg_name"]
    return [_text(name(get(i))) for i in range(api["ggml_backend_reg_count"]())]


def best_gpu(devices: list[Device]) -> Device | None:
    """The offload device with the most free memory (the first on a tie), or None."""
    return max(offload_subset(devices), key=lambda d: d.free_bytes, default=None)


def _nvml_device(nvml: Any, index: int) -> Device:
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    name = nvml.nvmlDeviceGetName(handle)
    try:
        memory = nvml.nvmlDeviceGetMemoryInfo(handle)
        total, free = int(memory.total), int(memory.free)
    except nvml.NVMLError_NotSupported:
        # Unified-memory boards (Jetson, GB10) have no framebuffer to report; the GPU
        # still exists, which is what this view is for.
        total = free = 0
    return Device(
        index=index,
        name=str(index),
        description=name.decode("utf-8", errors="replace") if isinstance(name, bytes) else name,
        kind="gpu",
        total_bytes=total,
        free_bytes=free,
        source="nvml",
    )


def nvml_devices() -> tuple[list[Device], str | None]:
    """NVIDIA GPUs the driver sees, whatever llama.cpp was built with, and the reason
    when NVML cannot be used (no binding, no driver); never raises for those."""
    try:
        import pynvml
    except ImportError:
        return [], "nvidia-ml-py is not installed"
    try:
        pynvml.nvmlInit()
    except (pynvml.NVMLError, OSError) as exc:
        return [], f"NVML unavailable: {exc}"
    try:
        return [_nvml_device(pynvml, i) for i in range(pynvml.nvmlDeviceGetCount())], None
    except pynvml.NVMLError as exc:
        return [], f"NVML query failed: {exc}"
    finally:
        with contextlib.suppress(pynvml.NVMLError):
            pynvml.nvmlShutdown()


def cpu_features(system_info: str) -> dict[str, bool]:
    """The CPU section of llama_print_system_info's text as {feature: enabled}.

    The text is "CUDA : ARCHS = 890 | ... | CPU : SSE3 = 1 | AVX2 = 1 | ": an item
    "NAME : F = V" opens a backend's section. Items before any header are CPU flags
    (the format before llama.cpp had a backend registry); a repeated section merges,
    later values winning. Numeric values other than 0 (SVE_CNT = 16) count as enabled.
    """
    features: dict[str, bool] = {}
    section = "CPU"
    for item in system_info.split("|"):
        head, colon, rest = item.partition(":")
        if colon and "=" not in head:  # a colon after "=" belongs to a value
            section, item = head.strip().upper(), rest
        name, equals, value = item.partition("=")
        if equals and name.strip() and section == "CPU":
            features[name.strip()] = value.strip() not in ("", "0")
    return features


def supports_gpu_offload() -> bool:
    """Whether this llama.cpp build can offload layers at all (a CUDA, Metal… build)."""
    import llama_cpp

    return bool(llama_cpp.llama_supports_gpu_offload())


def build_info() -> dict[str, Any]:
    """llama.cpp as built into llama-cpp-python: version, backends, CPU features."""
    import llama_cpp

    system = llama_cpp.llama_print_system_info().decode("utf-8", errors="replace").strip()
    return {
        "llama_cpp_python": llama_cpp.__version__,
        "backends": backends(),
        "gpu_offload": supports_gpu_offload(),
        "mmap": bool(llama_cpp.llama_supports_mmap()),
        "mlock": bool(llama_cpp.llama_supports_mlock()),
        "cpu_features": [name for name, on in cpu_features(system).items() if on],
        "system_info": system,
    }
