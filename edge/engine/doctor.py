"""What this machine and build can do, and the plan the engine would use: `edge-qwen doctor`.

`report()` gathers plain data (JSON-ready) and the problems found; `render()` turns it into
the lines a person reads. Problems are what stops `chat`/`serve` from working (exit 1);
warnings are what makes them slower than they could be.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from edge.config import Settings
from edge.engine.gpu import build_info
from edge.engine.plan import (
    Budget,
    MiB,
    ModelInfo,
    Plan,
    available_ram,
    explain,
    footprint,
    physical_cores,
)
from edge.errors import EdgeError

CUDA_INSTALL_HINT = (
    'reinstall with CUDA: CMAKE_ARGS="-DGGML_CUDA=on" pip install --force-reinstall '
    "--no-cache-dir --no-binary llama-cpp-python llama-cpp-python==<version> "
    "(README: Install with CUDA)"
)


def report(settings: Settings) -> tuple[dict[str, Any], list[str], list[str]]:
    """Everything doctor shows, the problems (empty when all is well) and the warnings.

    The plan is made for `settings.model` from `settings`, as chat (or serve with
    `parallel`) would make it.
    """
    from edge.engine.gpu import nvml_devices, offload_devices
    from edge.model.store import ModelStore

    problems: list[str] = []
    warnings: list[str] = []
    build = build_info()
    gpus = offload_devices() if build["gpu_offload"] else []
    nvidia, nvml_reason = nvml_devices()
    store = ModelStore(settings.models_dir)
    data: dict[str, Any] = {
        "build": build,
        "gpus": [asdict(d) for d in gpus],
        "nvml": {"devices": [asdict(d) for d in nvidia], "unavailable": nvml_reason},
        "cpu_cores": {"physical": physical_cores(), "logical": os.cpu_count()},
        "ram_available_bytes": available_ram(),
        "settings": settings.shown(),
        "store": str(store.root),
        "models": [e.name for e in store.entries()],
    }
    gpu_backends = [b for b in build["backends"] if b not in ("CPU", "BLAS", "RPC")]
    if gpu_backends and not gpus:
        warnings.append(
            f"this llama.cpp build has {', '.join(gpu_backends)} but found no GPU it "
            "can use (no GPU, or its driver is missing or older than the toolkit the "
            "build used), so everything runs on the CPU"
        )
    elif nvidia and not build["gpu_offload"]:
        names = ", ".join(d.description for d in nvidia)
        warnings.append(
            f"NVIDIA GPU found ({names}) but this llama.cpp build cannot offload to "
            f"it, so everything runs on the CPU: {CUDA_INSTALL_HINT}"
        )
    try:
        data["plan"] = _plan(settings)
    except EdgeError as exc:
        problems.append(exc.message + (f" ({exc.hint})" if exc.hint else ""))
    return data, problems, warnings


def _plan(settings: Settings) -> dict[str, Any]:
    from edge.engine.plan import make_plan, read_model_info
    from edge.model.pipeline import ensure_model

    path = ensure_model(settings.model, settings)
    info = read_model_info(Path(path))
    plan = make_plan(info, settings)
    return plan_data(path, info, plan)


def plan_data(path: Path, info: ModelInfo, plan: Plan) -> dict[str, Any]:
    """The plan and its arithmetic, JSON-ready."""
    return {
        "model": str(path),
        "summary": plan.describe(info),
        **{k: v for k, v in asdict(plan).items() if k not in ("budget", "wishes")},
        "notes": list(plan.notes),
        "why": explain(plan),
        "kv_bytes_per_token": info.kv_bytes_per_token(plan.kv_type),
        "layers": info.layers,
        "budget": {
            **asdict(plan.budget),
            "vram_headroom": plan.budget.vram_headroom,
            "vram_budget": plan.budget.vram_budget,
        },
        "arithmetic": arithmetic(info, plan),
    }


def arithmetic(info: ModelInfo, plan: Plan) -> dict[str, Any]:
    """Every term of the plan's memory, as doctor prints it."""
    fp = footprint(
        info, plan.n_gpu_layers, plan.n_ctx, plan.kv_type, plan.flash_attn, plan.n_outputs_max
    )
    blocks = info.block_bytes()
    on_gpu = min(plan.n_gpu_layers, info.layers)
    return {
        "layers_on_gpu": on_gpu,
        "output_on_gpu": plan.n_gpu_layers > info.layers,
        "bytes_per_layer": sum(blocks) // max(1, len(blocks)),
        "output_layer_bytes": info.output_bytes,
        "output_tied": info.tied,
        "token_embedding_bytes": info.embd_bytes,
        "kv_bytes_per_token": info.kv_bytes_per_token(plan.kv_type),
        **asdict(fp),
        "vram_bytes": fp.vram,
        "ram_bytes": fp.ram,
    }


def render(data: dict[str, Any]) -> list[str]:
    """The report as lines of text."""
    b = data["build"]
    ram = data["ram_available_bytes"]
    cores = data["cpu_cores"]
    lines = [
        f"llama-cpp-python {b['llama_cpp_python']} · backends {', '.join(b['backends'])}"
        f" · GPU offload {'yes' if b['gpu_offload'] else 'no'}",
        f"CPU: {cores['physical']} cores ({cores['logical']} threads) · "
        f"{' '.join(b['cpu_features']) or 'no SIMD features reported'}",
        f"RAM available: {_mib(ram) if ram else 'unknown'}",
    ]
    for g in data["gpus"]:
        lines.append(
            f"GPU {g['name']}: {g['description']} · {_mib(g['free_bytes'])} free of "
            f"{_mib(g['total_bytes'])}"
        )
    if not data["gpus"]:
        seen = data["nvml"]["devices"]
        lines.append(
            "GPU: none that this build can use"
            + (f" (NVML sees {', '.join(d['description'] for d in seen)})" if seen else "")
        )
    lines.append(f"store: {data['store']} ({len(data['models'])} models)")
    lines.append(render_settings(data["settings"]))
    if "plan" in data:
        lines += render_plan(data["plan"])
    return lines


def render_settings(shown: dict[str, Any]) -> str:
    """One line: the settings that differ from the defaults, and where to change them."""
    defaults = Settings(home=Path(shown["home"])).shown()
    changed = [f"{k}={v}" for k, v in shown.items() if v != defaults[k]]
    return (
        f"settings: {' '.join(changed) if changed else 'all defaults'} "
        "(each one: EDGE_QWEN_<NAME> or its flag; --json lists them all)"
    )


def render_plan(plan: dict[str, Any]) -> list[str]:
    """The plan's lines: where each part goes and what it costs."""
    a, budget = (
        plan["arithmetic"],
        Budget(
            **{k: plan["budget"][k] for k in ("gpu", "vram_total", "vram_free", "ram_available")}
        ),
    )
    lines = [f"plan: {plan['summary']}", f"  model: {plan['model']}"]
    kv_on = {(True, False): "GPU", (False, True): "RAM"}.get((a["gpu_kv"] > 0, a["ram_kv"] > 0))
    where = kv_on or f"{_mib(a['gpu_kv'])} GPU + {_mib(a['ram_kv'])} RAM"
    lines.append(
        f"  layers: {plan['layers']} × {_mib(a['bytes_per_layer'])}, "
        f"{a['layers_on_gpu']} of them on the GPU"
    )
    if a["output_on_gpu"]:
        output = f"{_mib(a['output_layer_bytes'])} on the GPU" + (
            " (a copy of the tied embedding)" if a["output_tied"] else ""
        )
    else:
        output = "the token embedding (tied)" if a["output_tied"] else _mib(a["output_layer_bytes"])
        output += " in RAM"
    lines.append(
        f"  output layer: {output}; token embedding {_mib(a['token_embedding_bytes'])} "
        "in RAM (llama.cpp keeps the input layer there)"
    )
    lines.append(
        f"  KV cache: {a['kv_bytes_per_token'] / 1024:.0f} KiB/token × {plan['n_ctx']} "
        f"tokens = {_mib(a['gpu_kv'] + a['ram_kv'])} ({plan['kv_type']}, {where})"
    )
    lines.append(f"  compute buffers: {_mib(a['gpu_compute'])} GPU + {_mib(a['ram_compute'])} RAM")
    if a["layers_on_gpu"] or a["output_on_gpu"]:
        lines.append(
            f"  VRAM: {_mib(a['gpu_weights'])} weights + {_mib(a['gpu_kv'])} KV + "
            f"{_mib(a['gpu_compute'])} compute = {_mib(a['vram_bytes'])} of "
            f"{_mib(budget.vram_budget)} usable ({_mib(budget.vram_free)} free − "
            f"{_mib(budget.vram_headroom)} headroom)"
        )
    lines.append(
        f"  RAM: {_mib(a['ram_weights'])} weights + {_mib(a['ram_kv'])} KV + "
        f"{_mib(a['ram_compute'])} compute + runtime = {_mib(a['ram_bytes'])}"
        + (f" of {_mib(budget.ram_available)} available" if budget.ram_available else "")
        + (f", and the shelf up to {_mib(plan['shelf_bytes'])}" if plan["shelf_bytes"] else "")
    )
    lines += [f"  {line}" for line in plan.get("why", [])]
    return lines


def _mib(n: float) -> str:
    return f"{n / MiB:,.0f} MiB" if n < 10 * 1024 * MiB else f"{n / (1024 * MiB):.1f} GiB"
