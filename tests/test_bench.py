"""`edge-qwen bench`: the quick run as a smoke test (every figure made, the defaults
against defaults ones too, values not judged), plus its argument checks and the pure
pieces (the defaults scenarios' are in test_bench_defaults.py).

The quick run builds upstream llama.cpp once into the reference cache (minutes, the first
time on a machine) and measures the real contenders: llama-bench, our engine, plain
llama-cpp-python, and the three servers over HTTP on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from edge.bench import defaults_report, models, reference, run, servers
from edge.bench.report import BEGIN_MARKER, END_MARKER, summarize, targets
from edge.errors import ReferenceBuildError
from edge.model import synthetic
from tests.support.cli import assert_clean_failure, run_cli

CONTENDERS_RAW = {
    "llama-bench",
    "edge-qwen engine",
    "llama-cpp-python Llama",
    "edge-qwen engine, ctx 4096",
}
SERVERS = {"edge-qwen serve", "llama-server", "llama_cpp.server"}


@pytest.mark.slow
def test_quick_bench_makes_every_figure(
    tmp_path: Path, cli_env: dict[str, str], bench_home: Path
) -> None:
    cli_env["EDGE_QWEN_HOME"] = str(bench_home)
    out, md = tmp_path / "out", tmp_path / "BENCHMARKS.md"
    md.write_text("# Benchmarks\n\nHand-written text stays.\n", encoding="utf-8")
    # One shape keeps the smoke test's cost; the gpu-proxy runs the same code with 1 thread.
    argv = ["bench", "--quick", "--shape", "0.6b", "--out", str(out), "--markdown", str(md)]
    proc = run_cli(argv, cli_env, 1800)
    assert proc.returncode == 0, proc.stderr[-3000:]

    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert results["meta"]["quick"] is True
    (model,) = results["models"]
    assert model["shape"] == "0.6b" and model["threads"] >= 1, model
    assert "0.6b" in results["meta"]["shapes"]
    assert model["quant"] == "Q4_K_M" and model["file_bytes"] > 300e6 and model["kv_bytes"] > 0
    s = results["meta"]["settings"]
    assert set(model["raw"]) == CONTENDERS_RAW
    for name, figures in model["raw"].items():
        assert len(figures["pp_tps"]) == len(figures["tg_tps"]) == s["rounds"], name
        assert all(v > 0 for v in figures["pp_tps"] + figures["tg_tps"]), name
    for section in ("stream", "nonstream", "multiturn", "concurrency", "memory"):
        assert set(model[section]) == SERVERS, section
    for name in SERVERS:
        rounds = model["stream"][name]
        assert len(rounds) == s["stream_rounds"]
        for r in rounds:  # every answer ran to max_tokens, one chunk a token
            assert r["tokens"] == s["stream_tokens"] and r["ttft_s"] > 0, (name, r)
            assert len(r["itl_s"]) == r["chunks"] - 1 > 0, (name, r)
        assert all(r["tokens"] == s["stream_tokens"] for r in model["nonstream"][name])
        assert [len(t) for t in model["multiturn"][name]] == [s["turns"]] * s["turn_repeats"]
        assert set(model["concurrency"][name]) == {str(n) for n in s["clients"]}
        assert model["memory"][name]["peak_rss_bytes"] > model["file_bytes"] / 2
    ours = model["concurrency"]["edge-qwen serve"]
    assert all(level["errors"] == 0 for level in ours.values()), ours

    _assert_defaults_figures(model, results["meta"]["defaults"])

    verdicts = targets(results)
    assert len(verdicts) == 10 and all(t.value is not None for t in verdicts), verdicts
    verdicts = defaults_report.targets(model)
    assert len(verdicts) == 8 and all(t.value is not None for t in verdicts), verdicts
    assert summarize(results)["models"][0]["raw"]["llama-bench"]
    for name in ("ttft", "itl", "throughput", "occupancy", "depth"):
        assert (out / f"{name}-0.6b.png").read_bytes().startswith(b"\x89PNG"), name
    text = md.read_text(encoding="utf-8")
    assert "Hand-written text stays." in text and BEGIN_MARKER in text and END_MARKER in text
    assert "llama-server" in text and "out/ttft-0.6b.png" in text
    assert "### Targets — `0.6b`" in text
    assert "### Defaults against defaults — `0.6b`" in text and "out/depth-0.6b.png" in text
    assert "llama-bench" in proc.stdout  # the summary is printed too


def _assert_defaults_figures(model: dict, z: dict) -> None:
    """Every defaults scenario ran on every server it is meant for, sizes as asked."""
    d = model["defaults"]
    assert d["ctx"] == z["ctx"] == 8192 and set(d["commands"]) == SERVERS
    for name in SERVERS:
        assert len(d["fresh"][name]) == z["fresh_rounds"], name
        assert [len(t) for t in d["multiturn"][name]] == [z["turns"]] * z["turn_repeats"]
        assert d["concurrency"][name]["requests"] == z["clients"], name
        assert d["memory"][name]["peak_rss_bytes"] > model["file_bytes"] / 2, name
    for name in SERVERS - {"llama_cpp.server"}:  # it sits the sweeps out
        points = d["occupancy"][name]
        assert [p["conversations"] for p in points] == z["conversations"], name
        assert all(r["decode_tps"] > 0 for p in points for r in p["probes"]), name
        assert [p["depth"] for p in d["depth"][name]] == z["depths"], name
        for p in d["depth"][name]:  # the prompt lengths asked for are the ones sent
            assert 0.9 * p["depth"] <= p["prompt_tokens"] <= 1.1 * p["depth"] + 30, (name, p)
        assert d["concurrency"][name]["errors"] == 0, name
    assert set(model["raw_depth"]) == {"llama-bench", "edge-qwen engine"}
    tps = [v for by_depth in model["raw_depth"].values() for vs in by_depth.values() for v in vs]
    assert len(tps) == 2 * len(z["raw_depths"]) * z["raw_rounds"] and min(tps) > 0


def test_bench_refuses_a_missing_model_file(tmp_path: Path, cli_env: dict[str, str]) -> None:
    proc = run_cli(
        ["bench", "--model", str(tmp_path / "nope.gguf"), "--out", str(tmp_path)], cli_env
    )
    assert_clean_failure(proc, 2, "No GGUF file")
    assert not (tmp_path / "results.json").exists()


def test_bench_refuses_an_unknown_quant_before_building_anything(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    proc = run_cli(["bench", "--quant", "Q9_X", "--out", str(tmp_path / "o")], cli_env)
    assert_clean_failure(proc, 2, "Q9_X")
    assert not (Path(cli_env["EDGE_QWEN_HOME"]) / "bench").exists()


def test_bench_refuses_an_unknown_shape_before_building_anything(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    proc = run_cli(["bench", "--shape", "7b", "--out", str(tmp_path / "o")], cli_env)
    assert_clean_failure(proc, 2, "'7b'", "0.6b, gpu-proxy")
    assert not (Path(cli_env["EDGE_QWEN_HOME"]) / "bench").exists()
    assert not (tmp_path / "o").exists()


def test_bench_refuses_a_shape_with_a_users_model(tmp_path: Path, cli_env: dict[str, str]) -> None:
    gguf = tmp_path / "mine.gguf"
    gguf.write_bytes(b"GGUF")
    argv = ["bench", "--model", str(gguf), "--shape", "gpu-proxy", "--out", str(tmp_path / "o")]
    assert_clean_failure(run_cli(argv, cli_env), 2, "--shape", "--model")
    assert not (tmp_path / "o").exists()


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
