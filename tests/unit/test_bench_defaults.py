"""Defaults against defaults (edge.bench.defaults, edge.bench.defaults_report) on
handmade results and fake servers: the command lines, the prompts, the order of
requests, the summary, the verdicts, the tables and the plots. No model runs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from edge.bench import defaults, defaults_report, raw, run, servers
from edge.bench.plots import plot
from edge.bench.report import DASH, MIB, OURS, markdown, summarize

LLAMA = "llama-server"
PY = "llama_cpp.server"

# What each defaults start may say besides its program: model, threads, context, where
# to listen, and llama-server's --jinja/--no-webui (no speed setting among them).
ALLOWED = {
    OURS: {"-m", "--port", "--threads", "--ctx"},
    LLAMA: {"-m", "--host", "--port", "-t", "-c", "--jinja", "--no-webui"},
    PY: {"--model", "--host", "--port", "--n_threads", "--n_ctx"},
}


def _flags(argv: list[str]) -> set[str]:
    return {a for a in argv if a.startswith("-") and a != "-m" or a == "-m"}


@pytest.mark.parametrize("name", sorted(ALLOWED))
def test_defaults_commands_carry_only_model_threads_and_context(tmp_path: Path, name: str) -> None:
    s = servers.ServerSettings(tmp_path / "m.gguf", threads=3, ctx=8192, flash_attn=True)
    argv = servers.defaults_command(name, s, 9999, tmp_path / "llama-server")
    program = argv.index("serve") + 1 if name == OURS else 3 if name == PY else 1
    flags = [a for a in argv[program:] if a.startswith("-")]
    assert set(flags) == ALLOWED[name], argv
    assert len(flags) == len(set(flags)), argv
    assert str(s.model) in argv and "3" in argv and "8192" in argv and "9999" in argv
    # The equal-settings start is unchanged: it still forces flash attention and slots.
    forced = servers.command(name, s, 9999, tmp_path / "llama-server", parallel=4)
    assert len(forced) > len(argv)


def test_defaults_start_drops_the_settings_a_server_reads_from_its_environment() -> None:
    env = {
        "PATH": "/bin",
        "EDGE_QWEN_HOME": "/h",
        "EDGE_QWEN_PARALLEL": "8",
        "EDGE_QWEN_FLASH_ATTN": "1",
        "LLAMA_ARG_N_PARALLEL": "1",
    }
    assert servers._plain_env(env) == {"PATH": "/bin", "EDGE_QWEN_HOME": "/h"}


def test_bench_options_default_to_a_context_of_8192_for_the_defaults() -> None:
    opts = run.BenchOptions(out=Path("x"))
    assert opts.defaults and opts.defaults_ctx == 8192
    assert opts.defaults_sizes is defaults.FULL
    assert run.BenchOptions(out=Path("x"), quick=True).defaults_sizes is defaults.QUICK


@pytest.mark.parametrize("z", [defaults.FULL, defaults.QUICK])
def test_sizes_fit_the_context_and_name_their_headline_points(z: defaults.DefaultsSizes) -> None:
    assert z.deep in z.depths and list(z.depths) == sorted(z.depths)
    assert z.conversations[0] == 0 and list(z.conversations) == sorted(z.conversations)
    cached = max(z.conversations) * z.conversation_tokens
    assert cached + 1000 < 8192 and max(z.depths) + z.stream_tokens < 8192
    assert z.clients == 4 and z.turns == 6


def test_full_sizes_are_the_issues() -> None:
    z = defaults.FULL
    assert (max(z.conversations), z.conversation_tokens, z.deep) == (4, 1536, 3584)
    assert z.raw_depths == (1024, 4096)


def test_quick_sizes_stay_small() -> None:
    z = defaults.QUICK
    assert max(z.conversations) * z.conversation_tokens <= 600
    assert max(z.depths) <= 600 and z.stream_tokens <= 16 and max(z.raw_depths) <= 512


# ---------------------------------------------------------------- prompts


def test_filler_has_about_the_tokens_asked_and_a_longer_one_extends_a_shorter() -> None:
    short, long = defaults.filler("deep", 300), defaults.filler("deep", 600)
    assert long.startswith(short) and long != short
    for text, tokens in ((short, 300), (long, 600)):
        chars = tokens * defaults.CHARS_PER_TOKEN
        assert chars <= len(text) < chars + 120
    other = defaults.filler("conv1", 300)
    assert other.startswith("(conv1)") and other[20:200] != short[20:200]


def test_filler_lengths_are_right_in_qwens_own_tokens() -> None:
    from tokenizers import Tokenizer

    from edge.model.synthetic import tokenizer_files_dir

    tokenizer = Tokenizer.from_file(str(tokenizer_files_dir() / "tokenizer.json"))
    for tokens in (300, 1536, 3584):
        got = len(tokenizer.encode(defaults.filler("deep", tokens)).ids)
        assert 0.95 * tokens <= got <= 1.05 * tokens, (tokens, got)


def test_the_probe_system_prompt_is_over_half_of_what_a_probe_leaves_cached() -> None:
    for z in (defaults.FULL, defaults.QUICK):
        system_tokens = len(defaults.probe_system(z)) / defaults.CHARS_PER_TOKEN
        question_tokens = len(servers.QUESTION) / 3 + 10  # generously, with the template
        assert system_tokens > system_tokens / 2 + (question_tokens + z.stream_tokens) / 2
    a, b = defaults.probe("S", 0), defaults.probe("S", 1)
    assert a[0] == b[0] and a[1] != b[1]


# ---------------------------------------------------------------- request order


class _Fake:
    def __init__(self, name: str) -> None:
        self.name = name


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, int]]:
    seen: list[tuple[str, str, int]] = []

    def fake_stream(sv: Any, messages: list[dict[str, str]], max_tokens: int) -> dict:
        seen.append((sv.name, messages[-1]["content"][:12], max_tokens))
        content = messages[-1]["content"]
        return {"decode_tps": 10.0, "ttft_s": 0.1, "text": "x", "prompt_tokens": len(content) // 4}

    monkeypatch.setattr(servers, "stream_chat", fake_stream)
    return seen


def test_occupancy_fills_conversations_once_and_probes_after_each_step(calls: list) -> None:
    z = defaults.FULL
    got = defaults.occupancy([_Fake("a"), _Fake("b")], z, lambda _: None)  # type: ignore[list-item]
    fills = [c for c in calls if c[2] == z.fill_tokens]
    assert [c[1][:6] for c in fills if c[0] == "a"] == [f"(conv{i}" for i in range(4)]
    assert len([c for c in calls if c[2] == z.stream_tokens]) == 2 * 4 * z.probe_rounds
    points = got["a"]
    assert [p["conversations"] for p in points] == [0, 1, 2, 4]
    assert [p["cached_tokens"] for p in points] == [0, 1536, 3072, 6144]
    assert [len(p["fills"]) for p in points] == [0, 1, 1, 2]
    assert all("text" not in r for p in points for r in p["fills"] + p["probes"])
    # The order rotates step by step: a first, then b first.
    firsts = [c[0] for c in calls if c[2] == z.fill_tokens]
    assert firsts[:2] == ["b", "a"]  # step 1 (the first with a fill) starts with b


def test_depth_sends_growing_prompts_of_one_conversation(calls: list) -> None:
    z = defaults.QUICK
    got = defaults.depth([_Fake("a"), _Fake("b")], z, lambda _: None)  # type: ignore[list-item]
    assert [p["depth"] for p in got["a"]] == list(z.depths)
    assert all(c[1].startswith("(deep)") for c in calls)
    assert [c[0] for c in calls] == ["a", "b", "b", "a"]


# ---------------------------------------------------------------- the terminal at depth


def test_llama_bench_at_depth_asks_tg_at_d(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []
    rows = [
        {"n_prompt": 0, "n_gen": 32, "n_depth": 512, "avg_ts": 41.5},
        {"n_prompt": 0, "n_gen": 32, "n_depth": 0, "avg_ts": 99.0},
    ]

    def fake_run(argv: list[str], **_: Any) -> subprocess.CompletedProcess:
        seen.append(argv)
        return subprocess.CompletedProcess(argv, 0, json.dumps(rows), "")

    monkeypatch.setattr(raw.subprocess, "run", fake_run)
    s = raw.RawSettings(threads=2, ctx=0, flash_attn=True, pp=0, tg=32)
    assert raw.measure_depth(raw.LLAMA_BENCH, Path("m.gguf"), s, 512, Path("lb")) == 41.5
    argv = seen[0]
    for flag, value in (("-p", "0"), ("-n", "32"), ("-d", "512"), ("-t", "2"), ("-fa", "1")):
        assert argv[argv.index(flag) + 1] == value, argv
    with pytest.raises(ValueError):
        raw.measure_depth(raw.PLAIN, Path("m.gguf"), s, 512)


# ---------------------------------------------------------------- report


def _stream(decode: float, ttft: float = 0.1, prompt: int | None = None) -> dict:
    return {"decode_tps": decode, "ttft_s": ttft, "tokens": 16, "prompt_tokens": prompt}


def _points(decodes: list[list[float]]) -> list[dict]:
    steps = (0, 1, 2, 4)
    fills = (0, 1, 1, 2)
    return [
        {
            "conversations": k,
            "cached_tokens": k * 1536,
            "fills": [_stream(5.0, 1.0, 1550)] * n,
            "probes": [_stream(d) for d in ds],
        }
        for k, n, ds in zip(steps, fills, decodes, strict=True)
    ]


def _defaults() -> dict[str, Any]:
    return {
        "ctx": 8192,
        "kv_bytes": 896 * MIB,
        "conversation_tokens": 1536,
        "deep": 3584,
        "commands": {OURS: "python -m edge.cli serve -m m.gguf --port 0 --threads 2 --ctx 8192"},
        "fresh": {
            OURS: [_stream(50, 0.1), _stream(52, 0.3)],
            LLAMA: [_stream(50, 0.2)],
            PY: [_stream(40, 0.4)],
        },
        "occupancy": {
            OURS: _points([[50], [48], [45], [40, 42]]),
            LLAMA: _points([[50], [50], [50], [50]]),
        },
        "depth": {
            OURS: [
                {"depth": 512, "prompt_tokens": 530, "decode_tps": 48.0},
                {"depth": 3584, "prompt_tokens": 3600, "decode_tps": 40.0},
            ],
            LLAMA: [
                {"depth": 512, "prompt_tokens": 529, "decode_tps": 48.0},
                {"depth": 3584, "prompt_tokens": 3601, "decode_tps": 44.0},
            ],
        },
        "concurrency": {OURS: {"aggregate_tps": 120.0}, LLAMA: {"aggregate_tps": 100.0}},
        "multiturn": {OURS: [[0.1, 0.2, 0.3], [0.1, 0.2, 0.5]], LLAMA: [[0.1, 0.2, 0.4]]},
        "memory": {OURS: {"peak_rss_bytes": 1000 * MIB}, LLAMA: {"peak_rss_bytes": 900 * MIB}},
    }


def _model(shape: str = "0.6b") -> dict[str, Any]:
    return {
        "shape": shape,
        "threads": 2 if shape == "0.6b" else 1,
        "quant": "Q4_K_M",
        "path": f"/c/qwen3-{shape}-Q4_K_M.gguf",
        "file_bytes": 400 * MIB,
        "kv_bytes": 448 * MIB,
        "defaults": _defaults(),
        "raw_depth": {
            "llama-bench": {"1024": [50.0, 52.0], "4096": [40.0]},
            "edge-qwen engine": {"1024": [51.0], "4096": [38.0]},
        },
    }


@pytest.fixture
def results() -> dict[str, Any]:
    return {"meta": {"settings": {"ctx": 4096}}, "models": [_model()]}


def test_summary_reads_each_headline_figure(results: dict) -> None:
    s = json.loads(json.dumps(summarize(results)))["models"][0]["defaults"]["servers"]
    ours, ref = s[OURS], s[LLAMA]
    assert (ours["fresh_decode_tps"], ours["fresh_ttft_s"]) == (51.0, pytest.approx(0.2))
    assert (ours["empty_decode_tps"], ours["filled_decode_tps"]) == (50.0, 41.0)
    assert ours["filled_conversations"] == 4 and ours["deep_decode_tps"] == 40.0
    assert (ours["agg4_tps"], ours["last_turn_ttft_s"]) == (120.0, pytest.approx(0.4))
    assert [p["prompt_tokens"] for p in ours["occupancy"]] == [None, 1550, 3100, 6200]
    assert ref["deep_decode_tps"] == 44.0 and s[PY]["fresh_decode_tps"] == 40.0
    assert s[PY]["filled_decode_tps"] is None  # it sat the sweep out


def test_verdicts_ratio_ours_over_llama_server(results: dict) -> None:
    verdicts = defaults_report.targets(results["models"][0])
    got = [(t.figure, round(t.value, 3) if t.value else None, t.met) for t in verdicts]
    assert got == [
        ("fresh stream: decode tok/s", 1.02, True),
        ("fresh stream: TTFT ms", 1.0, True),  # 0.2 s both: at the limit is within it
        ("filled cache (4 × ~1536 tokens): decode tok/s", 0.82, False),
        ("deep context (~3584 tokens): decode tok/s", 0.909, False),
        ("4 concurrent clients: aggregate tok/s", 1.2, True),
        ("multi-turn chat: turn-3 TTFT ms", 1.0, True),
        ("filled cache: our decode tok/s", 0.82, True),  # ≥ 0.8 × ours empty
        ("peak RSS on defaults", round(1000 / 1496, 3), True),  # GGUF 400 + KV 896 + 200
    ]
    assert all(t.shape == "0.6b" for t in verdicts)
    assert verdicts[0].target == "≥ 1.00 × llama-server"
    assert verdicts[1].target == "≤ 1.00 × llama-server"
    assert summarize(results)["defaults_targets"][2]["met"] is False


def test_the_rss_bound_counts_the_shelf_and_nothing_else(results: dict) -> None:
    memory = results["models"][0]["defaults"]["memory"]
    memory[OURS] = {"peak_rss_bytes": 2000 * MIB, "shelf_peak_bytes": 400 * MIB}
    rss = defaults_report.targets(results["models"][0])[-1]
    assert rss.figure == "peak RSS on defaults" and rss.met is False  # 2000 > 1496 + 400
    assert "(shelf peak 400 MiB)" in rss.detail and "shelf" in rss.target
    memory[OURS]["shelf_peak_bytes"] = 600 * MIB
    assert defaults_report.targets(results["models"][0])[-1].met is True  # 2000 ≤ 2096


@pytest.mark.parametrize(("ours_filled", "met"), [([39.9], False), ([40.0], True), ([60.0], True)])
def test_filled_against_empty_flips_at_0_8(results: dict, ours_filled: list, met: bool) -> None:
    results["models"][0]["defaults"]["occupancy"][OURS][-1]["probes"] = [
        _stream(d) for d in ours_filled
    ]
    assert defaults_report.targets(results["models"][0])[6].met is met


@pytest.mark.parametrize(("ttft", "met"), [(0.39, True), (0.41, False)])
def test_turn_ttft_flips_at_1_0(results: dict, ttft: float, met: bool) -> None:
    results["models"][0]["defaults"]["multiturn"][OURS] = [[0.1, ttft]]
    assert defaults_report.targets(results["models"][0])[5].met is met


def test_failed_clients_fail_the_4_clients_verdict_and_show(results: dict) -> None:
    conc = results["models"][0]["defaults"]["concurrency"]
    conc[PY] = {"aggregate_tps": 15.5, "errors": 3, "requests": 4}
    assert defaults_report.targets(results["models"][0])[4].met is True
    row = _headline(markdown(results))["4 concurrent clients / aggregate tok/s"]
    assert row[:4] == ["120.0", "100.0", "15.5 (3 of 4 failed)", "1.20"]
    conc[OURS].update(errors=1, requests=4)
    verdict = defaults_report.targets(results["models"][0])[4]
    assert verdict.met is False and "1 of our requests failed" in verdict.detail


def test_the_gpu_proxy_is_judged_by_the_same_bounds(results: dict) -> None:
    results["models"][0]["shape"] = "gpu-proxy"
    verdicts = defaults_report.targets(results["models"][0])
    assert [t.limit for t in verdicts] == [1.0] * 6 + [0.8, 1.0]
    assert all(t.shape == "gpu-proxy" for t in verdicts)


def _table_rows(md: str, first: str, keys: int = 1) -> dict[str, list[str]]:
    """The rows of the table after `first`, keyed by their first `keys` cells (" / ")."""
    block = md.split("### Defaults against defaults", 1)[1]
    rest = block[block.index(first) :]
    table = rest.split("\n\n")[1 if first.endswith(":") else 0]
    lines = [line for line in table.splitlines() if line.startswith("| ")][1:]  # no header
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    return {" / ".join(row[:keys]): row[keys:] for row in cells}


def _headline(md: str) -> dict[str, list[str]]:
    return _table_rows(md, "| scenario |", keys=2)


def test_markdown_has_a_defaults_section_with_the_scenarios_and_ratios(results: dict) -> None:
    md = markdown(results)
    assert "### Defaults against defaults — `0.6b`, 2 threads" in md
    assert "`python -m edge.cli serve -m m.gguf --port 0 --threads 2 --ctx 8192`" in md
    rows = _headline(md)
    assert rows["fresh stream / decode tok/s"] == [
        "51.0",
        "50.0",
        "40.0",
        "1.02",
        "≥ 1.00 × llama-server",
        "met by 2.0%",
    ]
    assert rows["fresh stream / TTFT ms"][:4] == ["200.0", "200.0", "400.0", "1.00"]
    assert rows["filled cache (4 × ~1536 tokens) / decode tok/s"][:4] == [
        "41.0",
        "50.0",
        DASH,
        "0.82",
    ]
    assert rows["deep context (~3584 tokens) / decode tok/s"][-1] == "missed by 9.1%"
    assert rows["multi-turn chat / turn-3 TTFT ms"][:2] == ["400.0", "400.0"]
    assert rows["filled vs empty cache / decode ratio"][:2] == ["0.82", "1.00"]
    assert rows["every scenario / peak RSS MiB"][:2] == ["1000", "900"]


def test_markdown_has_the_sweeps_and_the_terminal_at_depth(results: dict) -> None:
    md = markdown(results)
    occupancy = _table_rows(md, "Decode tok/s against cache occupancy:")
    assert occupancy["4"] == ["6200", "41.0", "50.0", "0.82"]
    depth = _table_rows(md, "Decode tok/s against depth:")
    assert depth["3584"] == ["3600", "40.0", "44.0", "0.91"]
    terminal = _table_rows(md, "The terminal at depth (one slot, same settings as the raw engine):")
    assert terminal == {"1024": ["51.0", "51.0", "1.00"], "4096": ["38.0", "40.0", "0.95"]}


def test_no_defaults_figures_no_section_and_missing_ones_dash(results: dict) -> None:
    model = results["models"][0]
    del model["defaults"]["concurrency"], model["defaults"]["depth"]
    md = markdown(results)
    row = _headline(md)["4 concurrent clients / aggregate tok/s"]
    assert row[:4] == [DASH, DASH, DASH, DASH] and row[-1] == DASH
    assert "Decode tok/s against depth" not in md
    del model["defaults"], model["raw_depth"]
    assert "Defaults against defaults" not in markdown(results)
    assert defaults_report.targets(model)[0].met is None


def test_two_plots_per_shape_one_line_per_server(tmp_path: Path, results: dict) -> None:
    results["models"].append(_model("gpu-proxy"))
    written = plot(results, tmp_path)
    for shape in ("0.6b", "gpu-proxy"):
        for name in ("occupancy", "depth"):
            assert written[f"{name}-{shape}"].read_bytes().startswith(b"\x89PNG")
    md = markdown(results, {k: f"out/{p.name}" for k, p in written.items()})
    assert "(out/occupancy-gpu-proxy.png)" in md.split("## Shape `gpu-proxy`", 1)[1]
