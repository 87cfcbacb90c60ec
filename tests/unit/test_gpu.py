"""Device discovery: pure parsing and picking on tables, then the real registry and NVML."""

from __future__ import annotations

import platform
import sys
import types
from pathlib import Path
from typing import Any

import llama_cpp
import pytest

from edge.engine.gpu import (
    Device,
    backends,
    best_gpu,
    cpu_features,
    llama_devices,
    nvml_devices,
    offload_devices,
    offload_subset,
)

GiB = 1024**3

# The string llama_print_system_info gave on the 2-core AMD EPYC dev box (CPU-only build).
EPYC = (
    "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | "
    "AVX512 = 1 | AVX512_VBMI = 1 | AVX512_VNNI = 1 | AVX512_BF16 = 1 | LLAMAFILE = 1 | "
    "OPENMP = 1 | REPACK = 1 | "
)

# llama.cpp's CPU feature names and the /proc/cpuinfo flag each needs (SSE3 is "pni").
X86_FLAGS = {
    "SSE3": "pni",
    "SSSE3": "ssse3",
    "AVX": "avx",
    "AVX2": "avx2",
    "F16C": "f16c",
    "FMA": "fma",
    "BMI2": "bmi2",
    "AVX512": "avx512f",
    "AVX512_VBMI": "avx512vbmi",
    "AVX512_VNNI": "avx512_vnni",
    "AVX512_BF16": "avx512_bf16",
}


def dev(index: int, kind: str, free_gib: float, name: str = "") -> Device:
    total = 64 * GiB
    return Device(index, name or f"D{index}", "test", kind, total, int(free_gib * GiB), "llama.cpp")


def system_info() -> str:
    return llama_cpp.llama_print_system_info().decode("utf-8")


def meminfo_total() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no MemTotal in /proc/meminfo")


# --- cpu_features (pure) ---


def test_cpu_features_of_the_dev_box_string() -> None:
    features = cpu_features(EPYC)
    assert list(features) == [
        "SSE3",
        "SSSE3",
        "AVX",
        "AVX2",
        "F16C",
        "FMA",
        "BMI2",
        "AVX512",
        "AVX512_VBMI",
        "AVX512_VNNI",
        "AVX512_BF16",
        "LLAMAFILE",
        "OPENMP",
        "REPACK",
    ]
    assert all(features.values())


def test_cpu_features_skip_other_backends_sections() -> None:
    text = (
        "CUDA : ARCHS = 500,610,700,750,800,860,890 | USE_GRAPHS = 1 | PEER_MAX_BATCH_SIZE = 128 | "
        "FA_QUANTS = q4_0:q8_0 | CPU : SSE3 = 1 | AVX2 = 1 | "
        "BLAS : ACCELERATE = 1 | "
    )
    assert cpu_features(text) == {"SSE3": True, "AVX2": True}


def test_cpu_features_tolerate_odd_spacing_and_values() -> None:
    text = "  CPU:SSE3=1|AVX2 =  1 |AVX512=0|   SVE_CNT  = 16 | EMPTY = | |\n"
    assert cpu_features(text) == {
        "SSE3": True,
        "AVX2": True,
        "AVX512": False,
        "SVE_CNT": True,
        "EMPTY": False,
    }


def test_cpu_features_merge_a_repeated_section() -> None:
    # Older llama.cpp appended to a static string on every call, so sections could repeat.
    assert cpu_features(EPYC + EPYC) == cpu_features(EPYC)
    text = "CPU : AVX = 1 | CUDA : USE_GRAPHS = 1 | CPU : AVX = 0 | FMA = 1 | "
    assert cpu_features(text) == {"AVX": False, "FMA": True}


def test_cpu_features_of_the_pre_registry_format_and_nothing() -> None:
    legacy = "AVX = 1 | AVX_VNNI = 0 | AVX2 = 1 | FMA = 1 | BLAS = 0 | SSE3 = 1 | "
    assert cpu_features(legacy) == {
        "AVX": True,
        "AVX_VNNI": False,
        "AVX2": True,
        "FMA": True,
        "BLAS": False,
        "SSE3": True,
    }
    assert cpu_features("") == {}
    assert cpu_features("CUDA : ARCHS = 890 | ") == {}


# --- best_gpu / offload_subset (pure) ---


def test_best_gpu_is_the_one_with_most_free_memory() -> None:
    table = [dev(0, "cpu", 60), dev(1, "gpu", 3.5), dev(2, "gpu", 7.9), dev(3, "accel", 50)]
    assert best_gpu(table) == table[2]
    assert best_gpu([dev(0, "gpu", 4), dev(1, "gpu", 4)]) == dev(0, "gpu", 4)  # first on a tie


def test_best_gpu_of_no_offload_device_is_none() -> None:
    assert best_gpu([]) is None
    assert best_gpu([dev(0, "cpu", 60), dev(1, "accel", 60)]) is None


def test_discrete_gpus_win_over_integrated_ones() -> None:
    # llama.cpp uses an iGPU only when there is no discrete GPU, whatever its free memory.
    table = [dev(0, "igpu", 30), dev(1, "gpu", 6), dev(2, "cpu", 60)]
    assert offload_subset(table) == [table[1]]
    assert best_gpu(table) == table[1]
    igpus = [dev(0, "cpu", 60), dev(1, "igpu", 12), dev(2, "igpu", 20)]
    assert offload_subset(igpus) == igpus[1:]
    assert best_gpu(igpus) == igpus[2]


def test_best_gpu_takes_nvml_devices_too() -> None:
    a = Device(0, "0", "NVIDIA GeForce RTX 4060", "gpu", 8 * GiB, 7 * GiB, "nvml")
    b = Device(1, "1", "NVIDIA GeForce RTX 3090", "gpu", 24 * GiB, 20 * GiB, "nvml")
    assert best_gpu([a, b]) == b


# --- the real registry on this machine ---


def test_real_system_info_parses_to_flags_this_cpu_has() -> None:
    features = cpu_features(system_info())
    assert features and all(name.isupper() for name in features)
    cpuinfo = Path("/proc/cpuinfo")
    if platform.machine() not in ("x86_64", "AMD64") or not cpuinfo.exists():
        pytest.skip("cross-check against x86 /proc/cpuinfo flags")
    flags = set(
        next(ln for ln in cpuinfo.read_text().splitlines() if ln.startswith("flags")).split()
    )
    for feature, flag in X86_FLAGS.items():
        if features.get(feature):  # built with it and running, so the CPU must have it
            assert flag in flags, feature


def test_llama_devices_has_one_cpu_with_the_machines_ram() -> None:
    cpus = [d for d in llama_devices() if d.kind == "cpu"]
    assert len(cpus) == 1
    cpu = cpus[0]
    assert cpu.source == "llama.cpp" and cpu.name == "CPU"
    # sysconf(_SC_PHYS_PAGES) x page size: MemTotal up to rounding.
    assert abs(cpu.total_bytes - meminfo_total()) <= 0.02 * meminfo_total()
    # llama.cpp calls free RAM ill-defined and reports all of it: never plan with it.
    assert cpu.free_bytes == cpu.total_bytes


def test_cpu_description_is_the_cpuinfo_model_name() -> None:
    # A check on the char* bindings: llama.cpp reads the same line of /proc/cpuinfo.
    lines = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    models = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")]
    if not models:
        pytest.skip("no model name in /proc/cpuinfo")
    assert next(d for d in llama_devices() if d.kind == "cpu").description == models[0]


def test_indexes_follow_the_registry_order() -> None:
    devices = llama_devices()
    assert [d.index for d in devices] == list(range(len(devices)))
    assert [d.name for d in llama_devices()] == [d.name for d in devices]  # stable


def test_backends_include_cpu() -> None:
    assert "CPU" in backends()


def test_offload_devices_agree_with_llama_supports_gpu_offload() -> None:
    # llama.cpp says yes for a GPU, an iGPU, or an RPC backend (which has no device of its own).
    supported = bool(llama_cpp.llama_supports_gpu_offload())
    assert supported == (bool(offload_devices()) or "RPC" in backends())


@pytest.mark.skipif(bool(llama_cpp.llama_supports_gpu_offload()), reason="a GPU build")
def test_cpu_only_build_offloads_nowhere() -> None:
    assert offload_devices() == []
    assert best_gpu(llama_devices()) is None


# --- NVML ---


def test_nvml_never_raises_and_explains_an_empty_list() -> None:
    devices, reason = nvml_devices()
    assert reason is None or (devices == [] and reason)
    if not Path("/proc/driver/nvidia/version").exists():  # no NVIDIA kernel driver here
        assert devices == []
        assert reason


def test_nvml_without_the_binding(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import raises ImportError
    assert nvml_devices() == ([], "nvidia-ml-py is not installed")


def fake_pynvml(gpus: list[tuple[Any, int | None, int | None]], fail_init: bool = False) -> Any:
    """A stand-in for pynvml: (name, total, free) per GPU; None memory = not supported."""

    class NVMLError(Exception):
        pass

    class NVMLError_NotSupported(NVMLError):  # pynvml's own class name
        pass

    calls: list[str] = []

    def init() -> None:
        calls.append("init")
        if fail_init:
            raise NVMLError("Driver Not Loaded")

    def memory(i: int) -> Any:
        _, total, free = gpus[i]
        if total is None:
            raise NVMLError_NotSupported("Not Supported")
        return types.SimpleNamespace(total=total, free=free, used=total - (free or 0))

    return types.SimpleNamespace(
        NVMLError=NVMLError,
        NVMLError_NotSupported=NVMLError_NotSupported,
        calls=calls,
        nvmlInit=init,
        nvmlShutdown=lambda: calls.append("shutdown"),
        nvmlDeviceGetCount=lambda: len(gpus),
        nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetName=lambda i: gpus[i][0],
        nvmlDeviceGetMemoryInfo=memory,
    )


def test_nvml_devices_from_a_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_pynvml(
        [("NVIDIA GeForce RTX 4060", 8 * GiB, 7 * GiB), (b"NVIDIA GB10", None, None)]
    )
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    devices, reason = nvml_devices()
    assert reason is None
    assert devices == [
        Device(0, "0", "NVIDIA GeForce RTX 4060", "gpu", 8 * GiB, 7 * GiB, "nvml"),
        Device(1, "1", "NVIDIA GB10", "gpu", 0, 0, "nvml"),  # unified memory: none to report
    ]
    assert fake.calls == ["init", "shutdown"]


def test_nvml_without_a_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_pynvml([], fail_init=True)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    assert nvml_devices() == ([], "NVML unavailable: Driver Not Loaded")
    assert fake.calls == ["init"]  # nothing to shut down
