"""`edge-qwen bench` as a process: the quick run as a smoke test (every figure made, the
defaults against defaults ones too, values not judged) and its argument checks. The pure
pieces are in tests/unit/test_bench.py.

The quick run builds upstream llama.cpp once into the reference cache (minutes, the first
time on a machine) and measures the real contenders: llama-bench, our engine, plain
llama-cpp-python, and the three servers over HTTP on 127.0.0.1.
"""

from __future__ import annotations

import json
from pathlib import Path

from edge.bench import defaults_report
from edge.bench.report import BEGIN_MARKER, END_MARKER, summarize, targets
from tests.support.cli import assert_clean_failure, run_cli

CONTENDERS_RAW = {
    "llama-bench",
    "edge-qwen engine",
    "llama-cpp-python Llama",
    "edge-qwen engine, ctx 4096",
}
SERVERS = {"edge-qwen serve", "llama-server", "llama_cpp.server"}


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
