"""edge.bench.report on fabricated results: statistics, tables, verdicts, plots, file update."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edge.bench.plots import plot
from edge.bench.report import (
    BEGIN_MARKER,
    DASH,
    END_MARKER,
    MIB,
    OURS,
    Target,
    markdown,
    median,
    p95,
    summarize,
    targets,
    update_markdown_file,
)
from edge.errors import UsageError

# The order of the targets per model: issue 13's against llama-server, then the shared ones.
DECODE, TTFT, AGG4, AGG8, RSS, BENCH_DECODE, TURN, VS_PY, TTFT95, FAIR = range(10)
N_TARGETS = 10


def _model(quant: str) -> dict[str, Any]:
    """One model's results with numbers chosen so medians and p95s are easy by hand."""
    return {
        "quant": quant,
        "path": f"/cache/qwen3-0.6b-{quant}.gguf",
        "file_bytes": 400 * MIB,
        "kv_bytes": 200 * MIB,
        "raw": {
            "llama-bench": {"pp_tps": [100, 110, 120, 130, 140], "tg_tps": [50, 52, 54, 56, 58]},
            "edge-qwen engine": {"pp_tps": [90, 100], "tg_tps": [51, 53]},
        },
        "stream": {
            OURS: [
                {
                    "ttft_s": 0.1,
                    "itl_s": [0.01, 0.02],
                    "decode_tps": 53,
                    "total_s": 2.0,
                    "tokens": 128,
                },
                {"ttft_s": 0.2, "itl_s": [0.03], "decode_tps": 54, "total_s": 2.5, "tokens": 128},
                {
                    "ttft_s": 0.3,
                    "itl_s": [0.04, 0.05],
                    "decode_tps": 55,
                    "total_s": 3.0,
                    "tokens": 128,
                },
            ],
            "llama-server": [
                {"ttft_s": 0.2, "itl_s": [0.02], "decode_tps": 54, "total_s": 2.4, "tokens": 128},
            ],
        },
        "nonstream": {
            OURS: [
                {"first_visible_s": 2.6, "total_s": 2.6, "tokens": 128},
                {"first_visible_s": 2.8, "total_s": 2.8, "tokens": 128},
            ],
        },
        "multiturn": {
            OURS: [[0.1, 0.11, 0.11], [0.2, 0.2, 0.22], [0.1, 0.1, 0.1]],
        },
        "concurrency": {
            OURS: {
                "10": {"aggregate_tps": 90.0, "ttft_s": [0.1, 0.3], "errors": 1, "requests": 10},
                "1": {"aggregate_tps": 50.0, "ttft_s": [0.1], "errors": 0, "requests": 1},
                "2": {
                    "aggregate_tps": 70.0,
                    "ttft_s": [0.1, 0.2],
                    "errors": 0,
                    "requests": 2,
                    "client_tps": [40.0, 30.0],
                },
            },
        },
        "memory": {
            OURS: {"peak_rss_bytes": 800 * MIB},
            "llama-server": {"peak_rss_bytes": 700 * MIB},
        },
    }


def _results(*quants: str) -> dict[str, Any]:
    return {
        "meta": {
            "date": "2026-11-24T22:40:00Z",
            "command": "edge-qwen bench --quick",
            "quick": True,
            "machine": {"cpu": "AMD EPYC", "cores": 2, "ram_gib": 23.4, "os": "Linux-6.1"},
            "versions": {"edge_qwen": "0.1.0", "llama_cpp_python": "0.3.36"},
            "settings": {"ctx": 4096, "pp_tokens": 512, "tg_tokens": 128, "turns": 3},
        },
        "models": [_model(q) for q in quants],
    }


@pytest.fixture
def results() -> dict[str, Any]:
    return _results("Q4_K_M")


def _rows(md: str, quant: str, title: str) -> dict[str, list[str]]:
    """Cells after the first of each table row in one quant's subsection, keyed by the first."""
    block = md.split(f"### {quant}", 1)[1].split("\n### ", 1)[0]
    sub = block.split(f"#### {title}", 1)[1].split("\n#### ", 1)[0]
    lines = [line for line in sub.splitlines() if line.startswith("| ")][1:]  # skip the header
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    return {row[0]: row[1:] for row in cells}


# ---------------------------------------------------------------- statistics


@pytest.mark.parametrize(
    ("values", "expected_median", "expected_p95"),
    [
        ([7.0], 7.0, 7.0),
        ([1.0, 2.0], 1.5, 1.95),
        ([5, 1, 4, 2, 3], 3.0, 4.8),
        (list(range(1, 21)), 10.5, 19.05),
    ],
)
def test_median_and_p95_interpolate_linearly(
    values: list[float], expected_median: float, expected_p95: float
) -> None:
    assert median(values) == pytest.approx(expected_median)
    assert p95(values) == pytest.approx(expected_p95)


def test_empty_series_has_no_statistics() -> None:
    assert median([]) is None
    assert p95([]) is None


def test_summary_is_json_serialisable_and_holds_hand_computed_figures(results: dict) -> None:
    summary = json.loads(json.dumps(summarize(results)))
    model = summary["models"][0]
    assert model["raw"]["llama-bench"]["tg_tps"]["median"] == 54
    assert model["raw"]["llama-bench"]["pp_tps"]["p95"] == pytest.approx(138.0)
    assert model["stream"][OURS]["itl_s"]["n"] == 5  # pooled across the three rounds
    assert list(model["concurrency"][OURS]) == ["1", "2", "10"]  # numeric, not string, order
    assert model["multiturn"][OURS]["last_over_first"] == pytest.approx(1.1)
    assert len(summary["targets"]) == N_TARGETS
    assert summary["targets"][DECODE]["margin"] == pytest.approx(1 / 0.97 - 1)


def test_import_does_not_load_matplotlib() -> None:
    code = "import sys, edge.bench.plots; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------- Markdown tables


def test_header_names_machine_versions_date_and_command(results: dict) -> None:
    md = markdown(results)
    assert "2026-11-24T22:40:00Z" in md
    assert "`edge-qwen bench --quick`" in md
    assert "AMD EPYC, 2 cores, 23.4 GiB RAM, Linux-6.1" in md
    assert "llama_cpp_python 0.3.36" in md


def test_raw_table_medians_p95_and_ratio(results: dict) -> None:
    rows = _rows(markdown(results), "Q4_K_M", "1. Raw engine")
    assert rows["llama-bench"] == ["120.0", "138.0", "54.0", "57.6", "1.00"]
    assert rows["edge-qwen engine"] == ["95.0", "99.5", "52.0", "52.9", "0.96"]


def test_streamed_table_pools_inter_token_latencies(results: dict) -> None:
    rows = _rows(markdown(results), "Q4_K_M", "2. Streamed request")
    # TTFT 0.1/0.2/0.3 s; ITL pooled 10..50 ms: p50 30, p95 40 + 0.8 × 10.
    assert rows[OURS] == ["200.0", "290.0", "30.0", "48.0", "54.0", "2.50", "128"]
    assert rows["llama-server"] == ["200.0", "200.0", "20.0", "20.0", "54.0", "2.40", "128"]


def test_streaming_vs_nonstreaming_table(results: dict) -> None:
    rows = _rows(markdown(results), "Q4_K_M", "3. Streaming vs non-streaming")
    assert rows[OURS] == ["200.0", "2700.0", "2.50", "2.70", "800"]
    assert rows["llama-server"] == ["200.0", DASH, "2.40", DASH, "700"]


def test_multiturn_table_per_turn_medians(results: dict) -> None:
    rows = _rows(markdown(results), "Q4_K_M", "4. Multi-turn")
    assert rows[OURS] == ["100.0", "110.0", "110.0", "1.10"]


def test_concurrency_table_sorted_by_clients(results: dict) -> None:
    md = markdown(results)
    sub = md.split("#### 5. Concurrency", 1)[1].split("####", 1)[0]
    lines = [line for line in sub.splitlines() if line.startswith(f"| {OURS}")]
    assert lines == [
        f"| {OURS} | 1 | 50.0 | 100.0 | 100.0 | {DASH} | 0/1 |",
        f"| {OURS} | 2 | 70.0 | 150.0 | 195.0 | 30.0–40.0 | 0/2 |",
        f"| {OURS} | 10 | 90.0 | 200.0 | 290.0 | {DASH} | 1/10 |",
    ]


def test_memory_table_bound_is_gguf_plus_kv_plus_200_mib(results: dict) -> None:
    rows = _rows(markdown(results), "Q4_K_M", "6. Memory")
    assert rows[OURS] == ["800", "400", "200", "800", "yes"]
    results["models"][0]["memory"][OURS]["peak_rss_bytes"] = 800 * MIB + 1
    assert _rows(markdown(results), "Q4_K_M", "6. Memory")[OURS][-1] == "no"


def test_plot_links_are_relative_images(results: dict) -> None:
    md = markdown(results, {"ttft": "plots/ttft.png", "itl": "plots/itl.png"})
    assert "](plots/ttft.png)" in md
    assert "](plots/itl.png)" in md
    assert "![" not in markdown(results)


# ---------------------------------------------------------------- targets


def test_all_targets_met_on_the_reference_numbers(results: dict) -> None:
    verdicts = targets(results)
    met = [t.met for t in verdicts]
    assert met == [True, True, None, None, True, True, True, None, None, None]  # no 4/8 clients
    assert verdicts[DECODE].value == pytest.approx(1.0)  # 54 / 54 (llama-server, streamed)
    assert verdicts[BENCH_DECODE].value == pytest.approx(1.0)  # 54 / 54 (llama-bench tg)
    assert verdicts[RSS].value == pytest.approx(1.0)  # exactly at the bound is within it
    assert verdicts[DECODE].target == "≥ 0.97 × llama-server"
    assert "54.0 vs 54.0 tok/s" in verdicts[DECODE].detail
    assert all(isinstance(t, Target) and t.quant == "Q4_K_M" for t in verdicts)
    assert all(t.shape is None for t in verdicts)


def _set_decode(model: dict, ours: float) -> None:
    model["stream"]["llama-server"] = [{"decode_tps": 100.0}]
    for r in model["stream"][OURS]:
        r["decode_tps"] = ours


def _set_bench_decode(model: dict, ours: float) -> None:
    model["raw"]["llama-bench"]["tg_tps"] = [100.0]
    for r in model["stream"][OURS]:
        r["decode_tps"] = ours


def _set_ttft(model: dict, ours: float) -> None:
    model["stream"]["llama-server"] = [{"ttft_s": 1.0}]
    for r in model["stream"][OURS]:
        r["ttft_s"] = ours


def _set_turn(model: dict, last: float) -> None:
    model["multiturn"][OURS] = [[1.0, 1.0, last]]


def _set_rss(model: dict, delta_bytes: float) -> None:
    model["memory"][OURS]["peak_rss_bytes"] = 800 * MIB + delta_bytes


def _set_clients(n: int) -> Any:
    def setter(model: dict, ours: float) -> None:
        model["concurrency"][OURS][str(n)] = _level(ours, [0.1] * n)
        model["concurrency"]["llama-server"] = {str(n): _level(100.0, [0.1] * n)}

    return setter


@pytest.mark.parametrize(
    ("index", "setter", "value", "met"),
    [
        (DECODE, _set_decode, 96.0, False),
        (DECODE, _set_decode, 98.0, True),
        (BENCH_DECODE, _set_bench_decode, 96.0, False),
        (BENCH_DECODE, _set_bench_decode, 98.0, True),
        (TTFT, _set_ttft, 1.04, True),
        (TTFT, _set_ttft, 1.06, False),
        (AGG4, _set_clients(4), 99.0, False),
        (AGG4, _set_clients(4), 100.0, True),
        (AGG8, _set_clients(8), 99.0, False),
        (AGG8, _set_clients(8), 100.0, True),
        (TURN, _set_turn, 1.19, True),
        (TURN, _set_turn, 1.21, False),
        (RSS, _set_rss, -MIB, True),
        (RSS, _set_rss, MIB, False),
    ],
)
def test_verdict_flips_across_each_limit(
    results: dict, index: int, setter: Any, value: float, met: bool
) -> None:
    setter(results["models"][0], value)
    verdict = targets(results)[index]
    assert verdict.met is met


@pytest.mark.parametrize(
    ("index", "setter", "value", "met_0_6b", "met_proxy"),
    [
        (DECODE, _set_decode, 99.0, True, False),  # 0.97 vs 1.0 × llama-server
        (TTFT, _set_ttft, 1.02, True, False),  # 1.05 vs 1.0 ×
        (AGG4, _set_clients(4), 103.0, True, False),  # 1.0 vs 1.05 ×
        (AGG8, _set_clients(8), 106.0, True, True),
        (AGG8, _set_clients(8), 101.0, True, False),
    ],
)
def test_the_gpu_proxy_has_its_own_limits(
    results: dict, index: int, setter: Any, value: float, met_0_6b: bool, met_proxy: bool
) -> None:
    model = results["models"][0]
    setter(model, value)
    for shape, met in (("0.6b", met_0_6b), ("gpu-proxy", met_proxy)):
        model["shape"] = shape
        verdict = targets(results)[index]
        assert (verdict.met, verdict.shape) == (met, shape)


def test_a_users_model_is_judged_like_the_0_6b(results: dict) -> None:
    plain = [(t.target, t.limit) for t in targets(results)]
    results["models"][0]["shape"] = "0.6b"
    assert [(t.target, t.limit) for t in targets(results)] == plain


def test_missing_reference_and_sections_give_none_and_dashes(results: dict) -> None:
    model = results["models"][0]
    del model["raw"]["llama-bench"]
    del model["stream"]["llama-server"]
    del model["multiturn"]
    model["memory"] = {}
    verdicts = targets(results)
    assert [t.met for t in verdicts] == [None] * N_TARGETS
    assert [t.value for t in verdicts] == [None] * N_TARGETS
    assert [t.margin for t in verdicts] == [None] * N_TARGETS
    assert all(t.limit is not None for t in verdicts)
    md = markdown(results)
    assert _rows(md, "Q4_K_M", "1. Raw engine")["edge-qwen engine"][-1] == DASH
    assert "#### 4. Multi-turn\n\n_not measured_" in md
    assert "#### 6. Memory\n\n_not measured_" in md
    targets_rows = md.split("### Targets", 1)[1]
    assert f"| {DASH} |" in targets_rows


def test_empty_results_render_without_crashing() -> None:
    md = markdown({})
    assert "No models were measured." in md
    assert targets({}) == []
    bare = {"models": [{"quant": "Q8_0"}]}
    assert "_not measured_" in markdown(bare)
    assert [t.met for t in targets(bare)] == [None] * N_TARGETS


def test_each_quant_gets_its_own_block_and_targets() -> None:
    results = _results("Q4_K_M", "Q8_0")
    md = markdown(results)
    assert "### Q4_K_M" in md and "### Q8_0" in md
    assert [t.quant for t in targets(results)] == ["Q4_K_M"] * N_TARGETS + ["Q8_0"] * N_TARGETS


def _level(
    agg: float, ttft: list[float], errors: int = 0, rates: list[float] | None = None
) -> dict:
    n = len(ttft)
    return {
        "aggregate_tps": agg,
        "ttft_s": ttft,
        "errors": errors,
        "requests": n,
        "client_tps": rates or [10.0] * n,
    }


def test_concurrency_targets_flip_at_their_limits(results: dict) -> None:
    conc = results["models"][0]["concurrency"]
    conc[OURS]["4"] = _level(60.0, [0.1, 0.2, 0.3, 0.4])
    conc[OURS]["8"] = _level(60.0, [0.1] * 8, rates=[10.0] * 7 + [5.0])
    conc["llama-server"] = {"4": _level(60.0, [0.2, 0.2, 0.2, 0.4])}
    conc["llama_cpp.server"] = {"4": _level(24.0, [0.5] * 4, errors=3)}

    def picked() -> list[Target]:
        verdicts = targets(results)
        return [verdicts[i] for i in (AGG4, VS_PY, TTFT95, FAIR)]

    agg, vs_py, ttft, fair = picked()
    assert (agg.value, agg.met) == (pytest.approx(1.0), True)
    assert (vs_py.value, vs_py.met) == (pytest.approx(2.5), True)
    assert ttft.met is True and fair.met is True and fair.value == pytest.approx(2.0)
    conc[OURS]["4"]["aggregate_tps"] = 59.9
    conc[OURS]["8"]["client_tps"][-1] = 4.9
    conc[OURS]["4"]["ttft_s"] = [0.1, 0.2, 0.3, 0.7]  # p95 0.64 s vs 0.37 s: over 1.5x
    agg, vs_py, ttft, fair = picked()
    assert (agg.met, vs_py.met, ttft.met, fair.met) == (False, False, False, False)
    conc[OURS]["8"]["errors"] = 1
    assert targets(results)[FAIR].value is None  # errors: the spread does not count


# ---------------------------------------------------------------- shapes


def _shaped() -> dict[str, Any]:
    """A run of both shapes: 0.6b (2 threads) in two quants, gpu-proxy (1 thread) in one."""
    results = _results("Q4_K_M", "Q8_0", "Q4_K_M")
    for model, shape, threads in zip(
        results["models"], ["0.6b", "0.6b", "gpu-proxy"], [2, 2, 1], strict=True
    ):
        model.update(shape=shape, threads=threads, path=f"/c/qwen3-{shape}-{model['quant']}.gguf")
    proxy = results["models"][2]
    proxy["stream"]["llama-server"][0]["decode_tps"] = 55.0  # ours 54: 0.982, under 1.0
    proxy["stream"]["llama-server"][0]["ttft_s"] = 0.25  # ours 0.2: 0.8, under 1.0
    results["meta"]["shapes"] = {"0.6b": "The real shape.", "gpu-proxy": "The proxy."}
    return results


def _targets_table(md: str, shape: str) -> list[list[str]]:
    block = md.split(f"## Shape `{shape}`", 1)[1].split("\n## ", 1)[0]
    table = block.split("### Targets", 1)[1].split("\n### ", 1)[0]
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines]


def test_each_shape_gets_a_section_with_its_targets_table() -> None:
    md = markdown(_shaped())
    assert md.index("## Shape `0.6b`\n\nThe real shape.") < md.index("## Shape `gpu-proxy`")
    assert "### Targets — `0.6b`, 2 threads" in md
    assert "### Targets — `gpu-proxy`, 1 thread\n" in md
    header, *rows = _targets_table(md, "0.6b")
    assert header == ["quant", "figure", "target", "measured", "verdict", "detail"]
    assert len(rows) == 2 * N_TARGETS  # two quants
    proxy = _targets_table(md, "gpu-proxy")[1:]
    assert [r[0] for r in proxy] == ["Q4_K_M"] * N_TARGETS
    decode, ttft = proxy[DECODE], proxy[TTFT]
    assert decode[1:5] == [
        "streamed decode tok/s",
        "≥ 1.00 × llama-server",
        "0.982",
        "missed by 1.8%",
    ]
    assert ttft[1:5] == ["streamed TTFT", "≤ 1.00 × llama-server", "0.800", "met by 20.0%"]
    assert proxy[AGG4][4] == DASH and proxy[AGG4][5].startswith("not measured")
    assert "(GGUF 400 MiB, KV 200 MiB at ctx 4096, 1 thread)" in md.split("gpu-proxy`", 1)[1]


def test_targets_keep_their_shape() -> None:
    shapes = [t.shape for t in targets(_shaped())]
    assert shapes == ["0.6b"] * 2 * N_TARGETS + ["gpu-proxy"] * N_TARGETS


def test_each_shape_gets_its_own_plot_files_and_links(tmp_path: Path) -> None:
    results = _shaped()
    written = plot(results, tmp_path)
    names = ("ttft", "itl", "throughput")
    assert set(written) == {f"{n}-{s}" for n in names for s in ("0.6b", "gpu-proxy")}
    assert all(p.name == f"{key}.png" for key, p in written.items())
    md = markdown(results, {k: f"out/{p.name}" for k, p in written.items()})
    proxy = md.split("## Shape `gpu-proxy`", 1)[1]
    assert "### Plots — `gpu-proxy`, 1 thread" in proxy
    assert "(out/ttft-gpu-proxy.png)" in proxy and "ttft-0.6b" not in proxy
    assert "(out/ttft-0.6b.png)" in md.split("## Shape `gpu-proxy`", 1)[0]


# ---------------------------------------------------------------- plots


def test_plot_writes_png_files_for_two_quants(tmp_path: Path) -> None:
    results = _results("Q4_K_M", "Q8_0")
    del results["models"][1]["concurrency"]  # one panel with no data must still render
    written = plot(results, tmp_path / "plots")
    assert set(written) >= {"ttft", "itl", "throughput"}
    for path in written.values():
        data = path.read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 1000
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [
        "itl.png",
        "throughput.png",
        "ttft.png",
    ]


def test_plot_skips_a_plot_with_no_data_at_all(tmp_path: Path) -> None:
    results = _results("Q4_K_M")
    del results["models"][0]["concurrency"]
    assert set(plot(results, tmp_path)) == {"ttft", "itl"}


# ---------------------------------------------------------------- file update


def test_update_creates_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "docs" / "BENCHMARKS.md"
    update_markdown_file(path, "## Results\n")
    assert path.read_text() == f"# Benchmarks\n\n{BEGIN_MARKER}\n## Results\n{END_MARKER}\n"


def test_update_replaces_only_between_markers(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"
    before, after = "# Bench\n\nHand-written intro.\n", "\nHand-written notes.\n"
    path.write_text(f"{before}{BEGIN_MARKER}\nold table\n{END_MARKER}{after}")
    update_markdown_file(path, "new table")
    expected = f"{before}{BEGIN_MARKER}\nnew table\n{END_MARKER}{after}"
    assert path.read_text() == expected
    update_markdown_file(path, "new table")  # idempotent
    assert path.read_text() == expected
    assert [p.name for p in tmp_path.iterdir()] == ["BENCHMARKS.md"]  # no temp file left


def test_update_appends_when_markers_are_absent(tmp_path: Path) -> None:
    path = tmp_path / "README.md"
    path.write_text("# Project\n\nText.\n")
    update_markdown_file(path, "section")
    assert path.read_text() == f"# Project\n\nText.\n\n{BEGIN_MARKER}\nsection\n{END_MARKER}\n"


def test_update_refuses_a_lone_marker_and_keeps_the_file(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"
    original = f"# Bench\n{BEGIN_MARKER}\nkeep me\n"
    path.write_text(original)
    with pytest.raises(UsageError):
        update_markdown_file(path, "section")
    assert path.read_text() == original


def test_update_is_atomic_when_the_write_fails(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "BENCHMARKS.md"
    original = f"{BEGIN_MARKER}\nold\n{END_MARKER}\n"
    path.write_text(original)

    real_write = Path.write_text

    def fail(self: Path, *args: Any, **kwargs: Any) -> int:
        real_write(self, "half a tab")  # the temporary file is partly written, then the disk fails
        raise OSError("disk went away")

    monkeypatch.setattr(Path, "write_text", fail)
    with pytest.raises(OSError):
        update_markdown_file(path, "new")
    monkeypatch.undo()
    assert path.read_text() == original
    assert [p.name for p in tmp_path.iterdir()] == ["BENCHMARKS.md"]


def test_module_keeps_its_inputs_untouched(results: dict) -> None:
    snapshot = copy.deepcopy(results)
    summarize(results)
    targets(results)
    markdown(results)
    assert results == snapshot
