"""`edge-qwen doctor` on this machine, as a process: what it and the build can do, and the
plan for a model. The plan's arithmetic alone: tests/unit/test_doctor.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from edge.config import Settings
from tests.support.cli import run_cli


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
