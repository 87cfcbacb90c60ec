"""What this machine and build can do, and the plan the engine would use: `edge-qwen doctor`."""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from edge.config import Settings
from edge.errors import EdgeError


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


def build_info() -> dict[str, Any]:
    """llama.cpp as built into llama-cpp-python: version, backends, CPU features."""
    import llama_cpp

    system = llama_cpp.llama_print_system_info().decode("utf-8", errors="replace").strip()
    return {
        "llama_cpp_python": llama_cpp.__version__,
        "gpu_offload": bool(llama_cpp.llama_supports_gpu_offload()),
        "mmap": bool(llama_cpp.llama_supports_mmap()),
        "mlock": bool(llama_cpp.llama_supports_mlock()),
        "system_info": system,
    }


def report(settings: Settings, model: str | None) -> tuple[dict[str, Any], list[str]]:
    """Everything doctor shows, and the problems found (empty when all is well)."""
    from edge.store import ModelStore

    problems: list[str] = []
    store = ModelStore(settings.models_dir)
    data: dict[str, Any] = {
        "build": build_info(),
        "cpu_cores": os.cpu_count(),
        "ram_available_bytes": available_ram(),
        "store": str(store.root),
        "models": [e.name for e in store.entries()],
    }
    try:
        data["plan"] = _plan(settings, model)
    except EdgeError as exc:
        problems.append(exc.message + (f" ({exc.hint})" if exc.hint else ""))
    return data, problems


def _plan(settings: Settings, model: str | None) -> dict[str, Any]:
    from edge.pipeline import ensure_model
    from edge.plan import make_plan, read_model_info

    path = ensure_model(model, settings)
    info = read_model_info(Path(path))
    plan = make_plan(info, threads=settings.threads)
    return {
        "model": str(path),
        "summary": plan.describe(info),
        **asdict(plan),
        "kv_bytes_per_token": info.kv_bytes_per_token(plan.kv_type),
        "layers": info.layers,
    }
