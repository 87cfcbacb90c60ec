"""`edge-qwen bench`'s pieces that need no model: the shapes, the reference build's cache,
the servers' command lines, the order of rounds, the peak RSS of a process. The quick run
and the argument checks, as processes: tests/live/test_bench.py; the defaults scenarios:
test_bench_defaults.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edge.bench import models, reference, run, servers
from edge.errors import ReferenceBuildError
from edge.model import synthetic

SERVERS = {"edge-qwen serve", "llama-server", "llama_cpp.server"}


def test_the_gpu_proxy_runs_on_one_thread_whatever_threads_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[tuple[str, str]] = []

    def fake_model(cache: Path, quant: str, log: object, shape: str = "0.6b") -> Path:
        made.append((shape, quant))
        return cache / f"qwen3-{shape}-{quant}.gguf"

    monkeypatch.setattr("edge.bench.models.bench_model", fake_model)
    lines: list[str] = []
    opts = run.BenchOptions(out=tmp_path, threads=4, cache=tmp_path / "cache")
    groups = run._groups(opts, 4, lines.append)
    assert [(g.shape, g.threads) for g in groups] == [("0.6b", 4), ("gpu-proxy", 1)]
    assert made == [("0.6b", "Q4_K_M"), ("0.6b", "Q8_0"), ("gpu-proxy", "Q4_K_M")]
    assert any("gpu-proxy" in line and "--threads 4 does not apply" in line for line in lines)
    made.clear()
    opts = run.BenchOptions(out=tmp_path, quick=True, shapes=("gpu-proxy",), quants=("Q8_0",))
    opts.cache = tmp_path / "cache"
    assert [(g.shape, g.threads) for g in run._groups(opts, 2, lines.append)] == [("gpu-proxy", 1)]
    assert made == [("gpu-proxy", "Q8_0")]  # --quant applies to the proxy too


def test_bench_model_names_include_the_shape(tmp_path: Path) -> None:
    for shape in ("0.6b", "gpu-proxy"):
        name = f"qwen3-{shape}-seed0-Q4_K_M.gguf"
        (tmp_path / name).write_bytes(b"cached")
        assert models.bench_model(tmp_path, "Q4_K_M", lambda _: None, shape=shape).name == name
    assert set(models.SHAPES) <= set(synthetic.SHAPES)


def test_reference_build_without_cmake_says_how_to_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no cmake, no compiler
    with pytest.raises(ReferenceBuildError) as err:
        reference.ensure(tmp_path / "cache", log=lambda _: None)
    assert "cmake" in err.value.message and "--no-reference" in (err.value.hint or "")


def test_reference_cache_follows_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGE_QWEN_REFERENCE_DIR", str(tmp_path / "ref"))
    assert reference.default_cache() == tmp_path / "ref"
    assert reference.find() is None  # nothing built there
    monkeypatch.delenv("EDGE_QWEN_REFERENCE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert reference.default_cache() == tmp_path / "xdg" / "edge-qwen" / "reference"


def test_every_server_gets_the_same_settings(tmp_path: Path) -> None:
    s = servers.ServerSettings(tmp_path / "m.gguf", threads=3, ctx=2048, flash_attn=False)
    lines = {
        name: servers.command(name, s, 9999, tmp_path / "llama-server", parallel=4)
        for name in sorted(SERVERS)
    }
    for name, argv in lines.items():
        joined = " ".join(argv)
        assert str(s.model) in argv and "9999" in argv, name
        assert "2048" in argv and "3" in argv, name
        assert "off" in argv or "False" in argv or "--no-flash-attn" in argv, name
        assert "0.0.0.0" not in joined, name  # loopback only
    assert lines["llama-server"][lines["llama-server"].index("-np") + 1] == "4"


def test_interleaving_rotates_the_order_each_round() -> None:
    order: list[tuple[str, int]] = []

    class Named:
        def __init__(self, name: str) -> None:
            self.name = name

    named = [Named("a"), Named("b"), Named("c")]
    got = servers.interleaved(named, 3, lambda sv, r: order.append((sv.name, r)) or r)  # type: ignore[arg-type, func-returns-value]
    assert [n for n, _ in order] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert got == {"a": [0, 1, 2], "b": [0, 1, 2], "c": [0, 1, 2]}


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="VmHWM is Linux's")
def test_peak_rss_reads_the_live_process() -> None:
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; b = bytearray(80 << 20); time.sleep(30)"]
    )
    try:
        server = servers.Server("x", proc, 0, Path("/dev/null"))
        peak = None
        for _ in range(100):  # wait (at most 10 s) until the 80 MiB is allocated
            peak = server.peak_rss()
            if peak and peak > 80 << 20:
                break
            import time

            time.sleep(0.1)
        assert peak is not None and peak > 80 << 20
    finally:
        proc.kill()
        proc.wait()
