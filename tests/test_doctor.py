"""`edge-qwen doctor`: what this machine and build can do, and the plan with its arithmetic."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from edge.config import Settings
from edge.engine.doctor import plan_data, render_plan
from edge.engine.plan import Budget, make_plan
from tests.support.cli import run_cli
from tests.support.plan import QWEN3_06B, GiB


def test_doctor_on_this_cpu_machine(
    gguf_of: Callable[[str, str], Path], cli_env: dict[str, str]
) -> None:
    model = str(gguf_of("scripted", "Q8_0"))
    proc = run_cli(["doctor", "-m", model], cli_env)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "backends CPU · GPU offload no" in out
    assert "GPU: none that this build can use" in out and "RAM available:" in out
    assert "plan: Qwen3-scripted Q8_0 · CPU" in out
    # Tiny shape: 2 layers x 2 KV heads x 64 x (K and V) x 2 bytes = 1 KiB per token.
    assert "KV cache: 1 KiB/token × 8192 tokens = 8 MiB (f16, RAM)" in out
    assert "RAM: " in out and "VRAM:" not in out  # nothing on a GPU to account for
    assert "warning" not in proc.stderr  # no NVIDIA GPU here, so no wrong-build warning
    assert f"settings: model={model} " in out  # what differs from the defaults

    # The settings come from EDGE_QWEN_* as for every command; the flag wins.
    env = {**cli_env, "EDGE_QWEN_CTX": "2048", "EDGE_QWEN_THREADS": "1"}
    report = json.loads(run_cli(["doctor", "-m", model, "--ctx", "4096", "--json"], env).stdout)
    assert (report["settings"]["ctx"], report["settings"]["threads"]) == (4096, 1)
    assert report["plan"]["n_threads"] == 1
    assert report["gpus"] == [] and report["build"]["gpu_offload"] is False
    assert "CPU" in report["build"]["backends"] and report["build"]["cpu_features"]
    assert report["nvml"]["devices"] == [] and report["nvml"]["unavailable"]
    plan = report["plan"]
    assert (plan["n_ctx"], plan["n_gpu_layers"], plan["vram_bytes"]) == (4096, 0, 0)
    a = plan["arithmetic"]
    assert a["ram_kv"] == 4096 * 1024 and a["gpu_kv"] == 0
    assert a["ram_bytes"] == plan["ram_bytes"] > a["ram_weights"] + a["ram_kv"]
    assert report["problems"] == [] and report["warnings"] == []


def test_doctor_says_why_gpu_layers_are_ignored_and_fails_without_a_model(
    gguf_of: Callable[[str, str], Path], cli_env: dict[str, str]
) -> None:
    model = str(gguf_of("scripted", "Q8_0"))
    report = json.loads(
        run_cli(["doctor", "-m", model, "--gpu-layers", "99", "--json"], cli_env).stdout
    )
    assert report["plan"]["n_gpu_layers"] == 0
    assert any("no GPU offload" in n for n in report["plan"]["notes"])
    empty = json.loads(run_cli(["doctor", "--json"], cli_env).stdout)
    assert empty["models"] == [] and "plan" not in empty
    assert any("No model pulled yet" in p for p in empty["problems"])
    missing = run_cli(["doctor"], cli_env)
    assert missing.returncode == 1 and "problem: No model pulled yet" in missing.stderr


def test_the_arithmetic_of_a_gpu_plan_reads_term_by_term() -> None:
    budget = Budget("NVIDIA GeForce RTX 4060", 8 * GiB, 7 * GiB, 16 * GiB)
    plan = make_plan(QWEN3_06B, Settings(ctx=4096), gpu_offload=True, budget=budget)
    lines = render_plan(plan_data(Path("m.gguf"), QWEN3_06B, plan))
    text = "\n".join(lines)
    assert lines[0].startswith("plan: Qwen3-0.6B Q8_0 · NVIDIA GeForce RTX 4060: 29/29 layers")
    assert "layers: 28 × 16 MiB, 28 of them on the GPU" in text
    assert "output layer: 158 MiB on the GPU (a copy of the tied embedding)" in text
    assert "KV cache: 112 KiB/token × 4096 tokens = 448 MiB (f16, GPU)" in text
    # weights 604 + KV 448 + compute 32 = 1,084 MiB; headroom 8% of 8 GiB + 192 MiB = 847.
    assert (
        "VRAM: 604 MiB weights + 448 MiB KV + 32 MiB compute = 1,084 MiB of 6,321 MiB usable"
        in text
    )
    assert "(7,168 MiB free − 847 MiB headroom)" in text
    assert "flash attention on: on a GPU it is faster" in text
    assert "shelf: up to 2048 MiB of RAM (an eighth of free RAM" in text

    split = make_plan(
        QWEN3_06B,
        Settings(ctx=32768),
        gpu_offload=True,
        budget=Budget("laptop", 4 * GiB, 1500 * 2**20, 16 * GiB),
    )
    text = "\n".join(render_plan(plan_data(Path("m.gguf"), QWEN3_06B, split)))
    assert f"{split.n_gpu_layers} of them on the GPU" in text and "GPU + " in text  # KV split
    assert "output layer: the token embedding (tied) in RAM" in text


def test_a_cpu_plan_says_why_flash_attention_is_off_and_what_the_shelf_holds() -> None:
    budget = Budget(ram_available=4 * GiB)
    plan = make_plan(QWEN3_06B, Settings(ctx=8192), gpu_offload=False, budget=budget)
    text = "\n".join(render_plan(plan_data(Path("m.gguf"), QWEN3_06B, plan)))
    assert "flash attention off: on a CPU llama.cpp decodes faster without it" in text
    assert "shelf: up to 512 MiB of RAM (an eighth of free RAM, at most 2048 MiB)" in text
    assert "and the shelf up to 512 MiB" in text
    asked = make_plan(QWEN3_06B, Settings(cache_ram=0, flash_attn=True), gpu_offload=False)
    text = "\n".join(render_plan(plan_data(Path("m.gguf"), QWEN3_06B, asked)))
    assert "flash attention on: as asked" in text and "shelf: none (--cache-ram 0)" in text


def test_a_cuda_build_without_a_usable_gpu_is_explained(
    gguf_of: Callable[[str, str], Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # What the CUDA wheel built by scripts/check_cuda_build.sh reports on this GPU-less
    # machine (seen for real: "backends CUDA, CPU · GPU offload no"); faked here because the
    # test environment has the CPU wheel.
    import edge.engine.doctor as doctor

    real = doctor.build_info()
    monkeypatch.setattr(doctor, "build_info", lambda: {**real, "backends": ["CUDA", "CPU"]})
    data, problems, warnings = doctor.report(
        Settings(home=tmp_path, model=str(gguf_of("tiny", "Q8_0")))
    )
    assert problems == [] and data["plan"]["n_gpu_layers"] == 0
    assert any("has CUDA but found no GPU" in w for w in warnings), warnings
