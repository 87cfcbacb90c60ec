"""Turn a benchmark results dict into a summary, target verdicts and Markdown tables
(the PNG plots are edge.bench.plots).

Pure functions over the dict the measuring code writes; nothing here runs a model. Any
contender or section may be missing (no reference built, a section skipped): tables then
show "–", targets carry `None`, and nothing raises. Contender names are free strings; only
the three the targets compare are named here. Models carry the shape they were made in
(None: a GGUF of the user's); each shape gets its own section and targets table.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from edge.errors import UsageError
from edge.fileio import atomic_output

OURS = "edge-qwen serve"
LLAMA_BENCH = "llama-bench"
LLAMA_SERVER = "llama-server"

BEGIN_MARKER = "<!-- bench:begin -->"
END_MARKER = "<!-- bench:end -->"
DASH = "–"
MIB = 2**20
RSS_SLACK_BYTES = 200 * MIB  # room for the Python/HTTP process around weights and KV cache

PY_SERVER = "llama_cpp.server"
MAX_STRIP_POINTS = 50

# Limits every shape shares.
BENCH_DECODE_LIMIT = 0.97  # streamed decode vs llama-bench's raw tg
TURN_LIMIT = 1.2
RSS_LIMIT = 1.0
PY_LIMIT = 2.5
TTFT95_LIMIT = 1.5
FAIR_LIMIT = 2.0


@dataclass(frozen=True)
class Limits:
    """The targets against llama-server that differ by shape (issue 13)."""

    decode: float  # streamed decode tok/s ≥ decode × llama-server's
    ttft: float  # median streamed TTFT ≤ ttft × llama-server's
    agg4: float  # 4 clients' aggregate tok/s ≥ agg4 × llama-server's (-np 4)
    agg8: float  # the same with 8 clients


SHAPE_LIMITS = {
    # On a CPU llama.cpp's compute dominates: match llama-server within noise.
    "0.6b": Limits(decode=0.97, ttft=1.05, agg4=1.0, agg8=1.0),
    # In the GPU regime our per-token work is what differs: be at least as fast.
    "gpu-proxy": Limits(decode=1.0, ttft=1.0, agg4=1.05, agg8=1.05),
}
DEFAULT_LIMITS = SHAPE_LIMITS["0.6b"]  # a GGUF of the user's is judged as the 0.6b is


@dataclass(frozen=True)
class Target:
    """One target verdict for one model: `value` (the measured ratio) and `met` are None
    when not measured."""

    figure: str  # what is compared: "streamed decode tok/s"
    target: str  # the bound it must meet: "≥ 0.97 × llama-server"
    quant: str
    value: float | None
    limit: float
    at_least: bool  # met when value ≥ limit; else when value ≤ limit
    met: bool | None
    detail: str
    shape: str | None = None

    @property
    def margin(self) -> float | None:
        """How far past the limit (> 0: met) or short of it (< 0), as a fraction of it."""
        if self.value is None or self.limit == 0:
            return None
        gap = self.value - self.limit if self.at_least else self.limit - self.value
        return gap / self.limit


# ---------------------------------------------------------------------------- statistics


def percentile(values: Iterable[float], q: float) -> float | None:
    """The q-th percentile (0–100) by linear interpolation between closest ranks.

    This is numpy's default ("type 7"): position (n − 1)·q/100 in the sorted values,
    interpolated between its neighbours. One value gives that value; none gives None.
    """
    ordered = sorted(values)
    if not ordered:
        return None
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def median(values: Iterable[float]) -> float | None:
    """The median (the mean of the middle two for an even count); None when empty."""
    return percentile(values, 50)


def p95(values: Iterable[float]) -> float | None:
    """The 95th percentile by linear interpolation (see `percentile`); None when empty."""
    return percentile(values, 95)


def _ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or den == 0:
        return None
    return num / den


def _floats(values: Iterable[Any]) -> list[float]:
    # A failed round may leave a None; it is not a measurement, so it is skipped.
    return [float(v) for v in values if v is not None]


def _stats(values: Iterable[Any]) -> dict[str, Any]:
    vals = _floats(values)
    return {
        "n": len(vals),
        "median": median(vals),
        "p95": p95(vals),
        "min": min(vals) if vals else None,
        "max": max(vals) if vals else None,
    }


def _field(rounds: Sequence[dict[str, Any]], key: str) -> list[float]:
    return _floats(r.get(key) for r in rounds)


def _section(model: dict[str, Any], name: str) -> dict[str, Any]:
    return model.get(name) or {}


# ---------------------------------------------------------------------------- summary


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    """Statistics per figure, JSON-serialisable: `{"meta", "models": [...], "targets": [...]}`.

    Each model entry has `shape`, `threads`, `quant`, `path`, `file_bytes`, `kv_bytes` and
    one dict per section keyed by contender: `raw`, `stream`, `nonstream`, `multiturn`,
    `concurrency`, `memory`; `defaults` and `raw_depth` are edge.bench.defaults_report's
    summaries, and "defaults_targets" that module's verdicts.
    Series become `{"n", "median", "p95", "min", "max"}` (seconds or tokens/s, as measured).
    """
    from edge.bench import defaults_report  # it imports this module's helpers

    models = [_summarize_model(m) for m in results.get("models") or []]
    verdicts = [t for m in models for t in _model_targets(m)]
    defaults = [t for m in results.get("models") or [] for t in defaults_report.targets(m)]
    return {
        "meta": results.get("meta") or {},
        "models": models,
        "targets": [{**asdict(t), "margin": t.margin} for t in verdicts],
        "defaults_targets": [{**asdict(t), "margin": t.margin} for t in defaults],
    }


def _settings(results: dict[str, Any]) -> dict[str, Any]:
    return (results.get("meta") or {}).get("settings") or {}


def _summarize_model(model: dict[str, Any]) -> dict[str, Any]:
    from edge.bench import defaults_report  # it imports this module's helpers

    return {
        "shape": model.get("shape"),
        "threads": model.get("threads"),
        "quant": model.get("quant", "?"),
        "path": model.get("path"),
        "file_bytes": model.get("file_bytes"),
        "kv_bytes": model.get("kv_bytes"),
        "raw": _raw_summary(_section(model, "raw")),
        "stream": _stream_summary(_section(model, "stream")),
        "nonstream": _nonstream_summary(_section(model, "nonstream")),
        "multiturn": _multiturn_summary(_section(model, "multiturn")),
        "concurrency": _concurrency_summary(_section(model, "concurrency")),
        "memory": _memory_summary(_section(model, "memory"), model),
        "defaults": defaults_report.summarize(_section(model, "defaults")),
        "raw_depth": defaults_report.raw_depth(_section(model, "raw_depth")),
    }


def _raw_summary(raw: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, dict[str, Any]] = {
        name: {"pp_tps": _stats(r.get("pp_tps") or []), "tg_tps": _stats(r.get("tg_tps") or [])}
        for name, r in raw.items()
    }
    bench_tg = out.get(LLAMA_BENCH, {}).get("tg_tps", {}).get("median")
    for entry in out.values():
        entry["tg_vs_llama_bench"] = _ratio(entry["tg_tps"]["median"], bench_tg)
    return out


def _stream_summary(stream: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, rounds in stream.items():
        rounds = rounds or []
        out[name] = {
            "rounds": len(rounds),
            "ttft_s": _stats(_field(rounds, "ttft_s")),
            # Inter-token gaps are pooled across rounds: the tail is what a reader notices.
            "itl_s": _stats(v for r in rounds for v in r.get("itl_s") or []),
            "decode_tps": _stats(_field(rounds, "decode_tps")),
            "total_s": _stats(_field(rounds, "total_s")),
            "tokens": median(_field(rounds, "tokens")),
        }
    return out


def _nonstream_summary(nonstream: dict[str, Any]) -> dict[str, Any]:
    return {
        name: {
            "rounds": len(rounds or []),
            "first_visible_s": _stats(_field(rounds or [], "first_visible_s")),
            "total_s": _stats(_field(rounds or [], "total_s")),
            "tokens": median(_field(rounds or [], "tokens")),
        }
        for name, rounds in nonstream.items()
    }


def _multiturn_summary(multiturn: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, repeats in multiturn.items():
        # A failed turn stays a None in its place so later turns keep their numbers.
        repeats = [list(r) for r in repeats or [] if r]
        turns = max((len(r) for r in repeats), default=0)
        per_turn = [median(_floats(r[i] for r in repeats if len(r) > i)) for i in range(turns)]
        # Paired per repeat, so a slow repeat does not skew turn N against another's turn 1.
        ratios = [r[-1] / r[0] for r in repeats if len(r) > 1 and r[0] and r[-1] is not None]
        out[name] = {
            "repeats": len(repeats),
            "turn_ttft_s": per_turn,
            "last_over_first": median(ratios),
        }
    return out


def _concurrency_summary(concurrency: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, by_clients in concurrency.items():
        rows = {}
        for clients in sorted(by_clients or {}, key=int):
            run = by_clients[clients] or {}
            ttft = _floats(run.get("ttft_s") or [])
            rows[str(clients)] = {
                "clients": int(clients),
                "aggregate_tps": run.get("aggregate_tps"),
                "ttft_p50_s": median(ttft),
                "ttft_p95_s": p95(ttft),
                "errors": run.get("errors"),
                "requests": run.get("requests"),
                "tokens": run.get("tokens"),
                "wall_s": run.get("wall_s"),
                "client_tps_min": min(_floats(run.get("client_tps") or []), default=None),
                "client_tps_max": max(_floats(run.get("client_tps") or []), default=None),
            }
        out[name] = rows
    return out


def _rss_bound(model: dict[str, Any]) -> int | None:
    file_bytes, kv_bytes = model.get("file_bytes"), model.get("kv_bytes")
    if file_bytes is None or kv_bytes is None:
        return None
    return int(file_bytes) + int(kv_bytes) + RSS_SLACK_BYTES


def _memory_summary(memory: dict[str, Any], model: dict[str, Any]) -> dict[str, Any]:
    bound = _rss_bound(model)
    out = {}
    for name, entry in memory.items():
        rss = (entry or {}).get("peak_rss_bytes")
        within = None if rss is None or bound is None else rss <= bound
        out[name] = {"peak_rss_bytes": rss, "bound_bytes": bound, "within_bound": within}
    return out


# ---------------------------------------------------------------------------- targets


def targets(results: dict[str, Any]) -> list[Target]:
    """Every target verdict for every model, in the order the models were run."""
    models = [_summarize_model(m) for m in results.get("models") or []]
    return [t for m in models for t in _model_targets(m)]


def _model_targets(s: dict[str, Any]) -> list[Target]:
    """Issue 13's targets against llama-server first (their limits by shape), then the
    targets every shape shares."""
    limits = SHAPE_LIMITS.get(s.get("shape") or "", DEFAULT_LIMITS)
    verdicts = [
        _stream_decode_target(s, limits.decode),
        _ttft_target(s, limits.ttft),
        _aggregate_target(s, "4", limits.agg4),
        _aggregate_target(s, "8", limits.agg8),
        _rss_target(s),
        _bench_decode_target(s),
        _turn_target(s),
        *_concurrency_targets(s),
    ]
    return [replace(t, shape=s.get("shape")) for t in verdicts]


def _verdict(
    figure: str,
    target: str,
    quant: str,
    value: float | None,
    limit: float,
    at_least: bool,
    detail: str,
) -> Target:
    if value is None:
        return Target(figure, target, quant, None, limit, at_least, None, f"not measured: {detail}")
    met = value >= limit if at_least else value <= limit
    return Target(figure, target, quant, value, limit, at_least, met, detail)


def _bound(at_least: bool, limit: float, versus: str) -> str:
    return f"{'≥' if at_least else '≤'} {limit:.2f} × {versus}"


def _get(summary: dict[str, Any], *keys: str) -> Any:
    node: Any = summary
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _stream_decode_target(s: dict[str, Any], limit: float) -> Target:
    ours = _get(s, "stream", OURS, "decode_tps", "median")
    ref = _get(s, "stream", LLAMA_SERVER, "decode_tps", "median")
    detail = f"median {_fmt(ours, '.1f')} vs {_fmt(ref, '.1f')} tok/s"
    return _verdict(
        "streamed decode tok/s",
        _bound(True, limit, LLAMA_SERVER),
        s["quant"],
        _ratio(ours, ref),
        limit,
        True,
        detail,
    )


def _ttft_target(s: dict[str, Any], limit: float) -> Target:
    ours = _get(s, "stream", OURS, "ttft_s", "median")
    ref = _get(s, "stream", LLAMA_SERVER, "ttft_s", "median")
    detail = f"median {_ms(ours)} vs {_ms(ref)} ms"
    return _verdict(
        "streamed TTFT",
        _bound(False, limit, LLAMA_SERVER),
        s["quant"],
        _ratio(ours, ref),
        limit,
        False,
        detail,
    )


def _aggregate_target(s: dict[str, Any], clients: str, limit: float) -> Target:
    ours = _get(s, "concurrency", OURS, clients, "aggregate_tps")
    ref = _get(s, "concurrency", LLAMA_SERVER, clients, "aggregate_tps")
    detail = f"{_fmt(ours, '.1f')} vs {_fmt(ref, '.1f')} tok/s"
    return _verdict(
        f"{clients} clients: aggregate tok/s",
        _bound(True, limit, LLAMA_SERVER),
        s["quant"],
        _ratio(ours, ref),
        limit,
        True,
        detail,
    )


def _concurrency_targets(s: dict[str, Any]) -> list[Target]:
    """Several users at once: 4 clients against llama-cpp-python's server and llama-server's
    TTFT tail; 8 clients with no errors and no client starved."""
    at4 = {name: rows.get("4") or {} for name, rows in (s.get("concurrency") or {}).items()}
    ours, ref, py = at4.get(OURS, {}), at4.get(LLAMA_SERVER, {}), at4.get(PY_SERVER, {})
    q = s["quant"]
    agg = [r.get("aggregate_tps") for r in (ours, py)]
    vs_py = _verdict(
        "4 clients: aggregate tok/s",
        _bound(True, PY_LIMIT, PY_SERVER),
        q,
        _ratio(agg[0], agg[1]),
        PY_LIMIT,
        True,
        f"{_fmt(agg[0], '.1f')} vs {_fmt(agg[1], '.1f')} tok/s",
    )
    t95 = [r.get("ttft_p95_s") for r in (ours, ref)]
    ttft = _verdict(
        "4 clients: TTFT p95",
        _bound(False, TTFT95_LIMIT, LLAMA_SERVER),
        q,
        _ratio(t95[0], t95[1]),
        TTFT95_LIMIT,
        False,
        f"{_ms(t95[0])} vs {_ms(t95[1])} ms",
    )
    at8 = _get(s, "concurrency", OURS, "8") or {}
    lo, hi, errors = at8.get("client_tps_min"), at8.get("client_tps_max"), at8.get("errors")
    spread = _ratio(hi, lo) if errors == 0 else None
    fair = _verdict(
        "8 clients: fastest / slowest client, no errors",
        f"≤ {FAIR_LIMIT:.2f}",
        q,
        spread,
        FAIR_LIMIT,
        False,
        f"{_count(errors)} errors; client tok/s {_fmt(lo, '.1f')}–{_fmt(hi, '.1f')}",
    )
    return [vs_py, ttft, fair]


def _bench_decode_target(s: dict[str, Any]) -> Target:
    ours = _get(s, "stream", OURS, "decode_tps", "median")
    ref = _get(s, "raw", LLAMA_BENCH, "tg_tps", "median")
    detail = f"{_fmt(ours, '.1f')} tok/s streamed vs {_fmt(ref, '.1f')} tok/s raw"
    return _verdict(
        "streamed decode tok/s",
        _bound(True, BENCH_DECODE_LIMIT, f"{LLAMA_BENCH} tg"),
        s["quant"],
        _ratio(ours, ref),
        BENCH_DECODE_LIMIT,
        True,
        detail,
    )


def _turn_target(s: dict[str, Any]) -> Target:
    entry = _get(s, "multiturn", OURS) or {}
    per_turn = entry.get("turn_ttft_s") or []
    first = _ms(per_turn[0]) if per_turn else DASH
    last = _ms(per_turn[-1]) if per_turn else DASH
    detail = (
        f"median over {entry.get('repeats', 0)} repeats of turn-N/turn-1 TTFT; "
        f"per-turn medians {first} ms → {last} ms"
    )
    return _verdict(
        "turn-N TTFT",
        _bound(False, TURN_LIMIT, "turn 1"),
        s["quant"],
        entry.get("last_over_first"),
        TURN_LIMIT,
        False,
        detail,
    )


def _rss_target(s: dict[str, Any]) -> Target:
    rss = _get(s, "memory", OURS, "peak_rss_bytes")
    bound = _get(s, "memory", OURS, "bound_bytes") or _rss_bound(s)
    detail = (
        f"peak RSS {_mib(rss)} MiB vs bound {_mib(bound)} MiB "
        f"(GGUF {_mib(s.get('file_bytes'))} + KV {_mib(s.get('kv_bytes'))} + 200)"
    )
    return _verdict(
        "peak RSS",
        _bound(False, RSS_LIMIT, "(GGUF + KV + 200 MiB)"),
        s["quant"],
        _ratio(rss, bound),
        RSS_LIMIT,
        False,
        detail,
    )


# ---------------------------------------------------------------------------- Markdown


def _fmt(value: float | None, spec: str) -> str:
    return DASH if value is None else format(value, spec)


def _ms(seconds: float | None) -> str:
    return _fmt(None if seconds is None else seconds * 1000, ".1f")


def _count(value: Any) -> str:
    return DASH if value is None else str(value)


def _mib(n_bytes: float | None) -> str:
    return _fmt(None if n_bytes is None else n_bytes / MIB, ".0f")


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _names(*sections: dict[str, Any]) -> list[str]:
    """Contender names across sections, in first-seen order."""
    return list(dict.fromkeys(name for section in sections for name in section))


def markdown(results: dict[str, Any], plots: dict[str, str] | None = None) -> str:
    """The full Markdown section: run header, then per shape its tables per model quant,
    its targets and its plot links.

    `plots` maps a plot key (see `plot_key`) to the image path relative to the Markdown file.
    """
    summary = summarize(results)
    settings = _settings(results)
    parts = [_header(summary["meta"])]
    if not summary["models"]:
        parts.append("No models were measured.")
    for shape, models in by_shape(summary["models"]):
        parts += _shape_section(shape, models, summary["meta"], settings, plots or {})
    return "\n\n".join(parts) + "\n"


def by_shape(models: Sequence[dict[str, Any]]) -> list[tuple[str | None, list[dict[str, Any]]]]:
    """Models grouped by their `shape` (None: a GGUF of the user's), in first-seen order."""
    groups: dict[str | None, list[dict[str, Any]]] = {}
    for model in models:
        groups.setdefault(model.get("shape"), []).append(model)
    return list(groups.items())


def plot_key(name: str, shape: str | None) -> str:
    """The key (and file stem) of plot `name` for one shape's models."""
    return name if shape is None else f"{name}-{shape}"


def _shape_section(
    shape: str | None,
    models: list[dict[str, Any]],
    meta: dict[str, Any],
    settings: dict[str, Any],
    plots: dict[str, str],
) -> list[str]:
    parts = []
    suffix = ""
    if shape is not None:
        suffix = f" — `{shape}`, {_threads(models[0], settings)}"
        about = (meta.get("shapes") or {}).get(shape)
        parts.append(f"## Shape `{shape}`" + (f"\n\n{about}" if about else ""))
    parts += [_model_block(m, settings) for m in models]
    parts.append(_targets_block([t for m in models for t in _model_targets(m)], suffix))
    from edge.bench import defaults_report  # it imports this module's helpers

    if defaults := defaults_report.section(models, suffix):
        parts.append(defaults)
    links = {n: plots[plot_key(n, shape)] for n in PLOT_TITLES if plot_key(n, shape) in plots}
    if links:
        parts.append(_plots_block(links, suffix))
    return parts


def _threads(model: dict[str, Any], settings: dict[str, Any]) -> str:
    # Results written before shapes had one thread count in the run's settings.
    n = model.get("threads") or settings.get("threads")
    return f"{_count(n)} thread{'' if n == 1 else 's'}"


def _header(meta: dict[str, Any]) -> str:
    machine = meta.get("machine") or {}
    versions = meta.get("versions") or {}
    settings = meta.get("settings") or {}
    machine_text = ", ".join(
        [
            str(machine.get("cpu", DASH)),
            f"{machine.get('cores', DASH)} cores",
            f"{machine.get('ram_gib', DASH)} GiB RAM",
            str(machine.get("os", DASH)),
        ]
    )
    lines = [
        f"## Results — {meta.get('date', DASH)}",
        "",
        f"- **Command:** `{meta.get('command', DASH)}`"
        + (" (quick run: fewer rounds, numbers are indicative)" if meta.get("quick") else ""),
        f"- **Machine:** {machine_text}",
        "- **Versions:** " + (", ".join(f"{k} {v}" for k, v in versions.items()) or DASH),
        "- **Settings:** " + (", ".join(f"{k}={v}" for k, v in settings.items()) or DASH),
    ]
    return "\n".join(lines)


def _model_block(s: dict[str, Any], settings: dict[str, Any]) -> str:
    name = Path(s["path"]).name if s.get("path") else s["quant"]
    title = (
        f"### {s['quant']} — `{name}` (GGUF {_mib(s.get('file_bytes'))} MiB, "
        f"KV {_mib(s.get('kv_bytes'))} MiB at ctx {settings.get('ctx', DASH)}, "
        f"{_threads(s, settings)})"
    )
    blocks = [
        title,
        _sub("1. Raw engine", _raw_table(s, settings)),
        _sub("2. Streamed request", _stream_table(s)),
        _sub("3. Streaming vs non-streaming", _visible_table(s)),
        _sub("4. Multi-turn", _multiturn_table(s, settings)),
        _sub("5. Concurrency", _concurrency_table(s)),
        _sub("6. Memory", _memory_table(s)),
    ]
    return "\n\n".join(blocks)


def _sub(title: str, table: str | None) -> str:
    return f"#### {title}\n\n{table or '_not measured_'}"


def _raw_table(s: dict[str, Any], settings: dict[str, Any]) -> str | None:
    raw = s["raw"]
    if not raw:
        return None
    pp, tg = settings.get("pp_tokens", DASH), settings.get("tg_tokens", DASH)
    headers = [
        "contender",
        f"prompt tok/s (pp {pp}) median",
        "p95",
        f"decode tok/s (tg {tg}) median",
        "p95",
        "decode vs llama-bench",
    ]
    rows = [
        [
            name,
            _fmt(e["pp_tps"]["median"], ".1f"),
            _fmt(e["pp_tps"]["p95"], ".1f"),
            _fmt(e["tg_tps"]["median"], ".1f"),
            _fmt(e["tg_tps"]["p95"], ".1f"),
            _fmt(e["tg_vs_llama_bench"], ".2f"),
        ]
        for name, e in raw.items()
    ]
    return _table(headers, rows)


def _stream_table(s: dict[str, Any]) -> str | None:
    if not s["stream"]:
        return None
    headers = [
        "server",
        "TTFT ms median",
        "TTFT ms p95",
        "inter-token ms p50",
        "inter-token ms p95",
        "decode tok/s median",
        "total s median",
        "tokens",
    ]
    rows = [
        [
            name,
            _ms(e["ttft_s"]["median"]),
            _ms(e["ttft_s"]["p95"]),
            _ms(e["itl_s"]["median"]),
            _ms(e["itl_s"]["p95"]),
            _fmt(e["decode_tps"]["median"], ".1f"),
            _fmt(e["total_s"]["median"], ".2f"),
            _fmt(e["tokens"], ".0f"),
        ]
        for name, e in s["stream"].items()
    ]
    return _table(headers, rows)


def _visible_table(s: dict[str, Any]) -> str | None:
    names = _names(s["stream"], s["nonstream"])
    if not names:
        return None
    headers = [
        "server",
        "first visible token, streamed (ms)",
        "first visible, non-streamed (ms)",
        "full answer, streamed (s)",
        "full answer, non-streamed (s)",
        "peak RSS MiB",
    ]
    rows = [
        [
            name,
            _ms(_get(s, "stream", name, "ttft_s", "median")),
            _ms(_get(s, "nonstream", name, "first_visible_s", "median")),
            _fmt(_get(s, "stream", name, "total_s", "median"), ".2f"),
            _fmt(_get(s, "nonstream", name, "total_s", "median"), ".2f"),
            _mib(_get(s, "memory", name, "peak_rss_bytes")),
        ]
        for name in names
    ]
    return _table(headers, rows)


def _multiturn_table(s: dict[str, Any], settings: dict[str, Any]) -> str | None:
    multiturn = s["multiturn"]
    if not multiturn:
        return None
    measured = max((len(e["turn_ttft_s"]) for e in multiturn.values()), default=0)
    turns = int(settings.get("turns") or measured) or 1
    headers = ["server"] + [f"turn {i + 1} ms" for i in range(turns)] + [f"turn {turns} / turn 1"]
    rows = []
    for name, e in multiturn.items():
        per_turn = list(e["turn_ttft_s"]) + [None] * turns
        cells = [_ms(v) for v in per_turn[:turns]]
        rows.append([name, *cells, _fmt(e["last_over_first"], ".2f")])
    return _table(headers, rows)


def _concurrency_table(s: dict[str, Any]) -> str | None:
    if not s["concurrency"]:
        return None
    headers = [
        "server",
        "clients",
        "aggregate tok/s",
        "TTFT p50 ms",
        "TTFT p95 ms",
        "client tok/s min–max",
        "errors/requests",
    ]
    rows = [
        [
            name,
            str(row["clients"]),
            _fmt(row["aggregate_tps"], ".1f"),
            _ms(row["ttft_p50_s"]),
            _ms(row["ttft_p95_s"]),
            _span(row.get("client_tps_min"), row.get("client_tps_max")),
            f"{_count(row['errors'])}/{_count(row['requests'])}",
        ]
        for name, by_clients in s["concurrency"].items()
        for row in by_clients.values()
    ]
    return _table(headers, rows)


def _span(lo: float | None, hi: float | None) -> str:
    return DASH if lo is None or hi is None else f"{lo:.1f}–{hi:.1f}"


def _yes_no(flag: bool | None) -> str:
    return DASH if flag is None else ("yes" if flag else "no")


def _memory_table(s: dict[str, Any]) -> str | None:
    if not s["memory"]:
        return None
    headers = ["server", "peak RSS MiB", "GGUF MiB", "KV MiB", "bound MiB", "within bound"]
    rows = [
        [
            name,
            _mib(e["peak_rss_bytes"]),
            _mib(s.get("file_bytes")),
            _mib(s.get("kv_bytes")),
            _mib(e["bound_bytes"]),
            _yes_no(e["within_bound"]),
        ]
        for name, e in s["memory"].items()
    ]
    return _table(headers, rows)


def _targets_block(verdicts: list[Target], suffix: str = "") -> str:
    title = f"### Targets{suffix}\n\n"
    if not verdicts:
        return title + "_not measured_"
    headers = ["quant", "figure", "target", "measured", "verdict", "detail"]
    rows = [
        [t.quant, t.figure, t.target, _fmt(t.value, ".3f"), _outcome(t), t.detail] for t in verdicts
    ]
    return title + _table(headers, rows)


def _outcome(t: Target) -> str:
    """The distance to the limit, relative to it: "met by 4.2%", "missed by 3.0%"."""
    margin = t.margin
    if t.met is None or margin is None:
        return DASH
    return f"{'met' if t.met else 'missed'} by {abs(margin):.1%}"


PLOT_TITLES = {
    "ttft": "Streamed time to first token per server",
    "itl": "Inter-token latency per server",
    "throughput": "Aggregate decode throughput vs concurrent clients",
    "occupancy": "Decode tok/s vs cached tokens, each server on its defaults",
    "depth": "Decode tok/s vs context depth, each server on its defaults",
}


def _plots_block(plots: dict[str, str], suffix: str = "") -> str:
    links = [f"![{PLOT_TITLES.get(name, name)}]({path})" for name, path in plots.items()]
    return f"### Plots{suffix}\n\n" + "\n\n".join(links)


# ---------------------------------------------------------------------------- file update


def update_markdown_file(path: Path, section: str) -> None:
    """Put `section` between the bench markers in `path`, keeping everything outside them.

    A missing file is created with a `# Benchmarks` title; a file without markers gets the
    marked section appended. The file is replaced atomically, never left half-written.
    """
    text = path.read_text(encoding="utf-8") if path.exists() else None
    new_text = _splice(text, section)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        tmp.write_text(new_text, encoding="utf-8")


def _splice(text: str | None, section: str) -> str:
    block = f"{BEGIN_MARKER}\n{section.strip()}\n{END_MARKER}"
    if text is None:
        return f"# Benchmarks\n\n{block}\n"
    begin = text.find(BEGIN_MARKER)
    end = text.find(END_MARKER, begin + len(BEGIN_MARKER)) if begin >= 0 else -1
    if begin < 0 and END_MARKER not in text:
        return (text.rstrip("\n") + "\n\n" if text.strip() else "") + block + "\n"
    if begin < 0 or end < 0:
        # Guessing where a lone marker's partner should be could delete hand-written text.
        raise UsageError(
            "The benchmark markers in the Markdown file are unbalanced.",
            f"Keep one {BEGIN_MARKER} followed by one {END_MARKER}, or remove both.",
        )
    return text[:begin] + block + text[end + len(END_MARKER) :]
