"""The report's "Defaults against defaults" part: the figures of edge.bench.defaults and
the terminal at depth (edge.bench.raw.measure_depth), summarized, judged and tabled.

Pure functions over a model's results entry, as edge.bench.report is; anything missing
shows "–" and judges None.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from edge.bench.report import (
    DASH,
    LLAMA_BENCH,
    LLAMA_SERVER,
    OURS,
    PY_SERVER,
    RSS_SLACK_BYTES,
    Target,
    _bound,
    _count,
    _field,
    _floats,
    _fmt,
    _mib,
    _ms,
    _outcome,
    _ratio,
    _table,
    _verdict,
    median,
)

ENGINE = "edge-qwen engine"
# The issue's bounds for both shapes alike: every figure at least llama-server's
# (TTFT at most), each server on its own defaults.
LIMIT = 1.0
FILLED_LIMIT = 0.8  # our decode with a filled cache ≥ 0.8 × ours with an empty one


@dataclass(frozen=True)
class Figure:
    """One headline figure of the defaults table, compared with llama-server."""

    key: str  # in each server's summary
    scenario: str  # its row's first cell; {k}, {size}, {deep}, {turns} filled in
    what: str
    at_least: bool  # higher is better
    seconds: bool = False  # shown in ms


FIGURES = (
    Figure("fresh_decode_tps", "fresh stream", "decode tok/s", True),
    Figure("fresh_ttft_s", "fresh stream", "TTFT ms", False, seconds=True),
    Figure("filled_decode_tps", "filled cache ({k} × ~{size} tokens)", "decode tok/s", True),
    Figure("deep_decode_tps", "deep context (~{deep} tokens)", "decode tok/s", True),
    Figure("agg4_tps", "4 concurrent clients", "aggregate tok/s", True),
    Figure("last_turn_ttft_s", "multi-turn chat", "turn-{turns} TTFT ms", False, seconds=True),
)


# ---------------------------------------------------------------------------- summary


def summarize(defaults: dict[str, Any]) -> dict[str, Any]:
    """{"ctx", "kv_bytes", "commands", "servers": {name: figures}} from a model's
    "defaults" entry; each server's figures are those `FIGURES` name, plus
    "empty_decode_tps", "filled_conversations", "peak_rss_bytes" and the two sweeps."""
    names = list(
        dict.fromkeys(
            n
            for key in ("fresh", "occupancy", "depth", "concurrency", "multiturn", "memory")
            for n in defaults.get(key) or {}
        )
    )
    return {
        "ctx": defaults.get("ctx"),
        "kv_bytes": defaults.get("kv_bytes"),
        "conversation_tokens": defaults.get("conversation_tokens"),
        "deep": defaults.get("deep"),
        "commands": defaults.get("commands") or {},
        "servers": {name: _server(defaults, name) for name in names},
    }


def _server(d: dict[str, Any], name: str) -> dict[str, Any]:
    fresh = (d.get("fresh") or {}).get(name) or []
    occupancy = _occupancy((d.get("occupancy") or {}).get(name) or [])
    depth = _depth((d.get("depth") or {}).get(name) or [])
    empty = next((p for p in occupancy if p["conversations"] == 0), None)
    filled = max(occupancy, key=lambda p: p["conversations"], default=None)
    deep = next((p for p in depth if p["depth"] == d.get("deep")), None)
    turns = [r for r in (d.get("multiturn") or {}).get(name) or [] if r]
    return {
        "fresh_decode_tps": median(_field(fresh, "decode_tps")),
        "fresh_ttft_s": median(_field(fresh, "ttft_s")),
        "empty_decode_tps": empty["decode_tps"] if empty else None,
        "filled_decode_tps": filled["decode_tps"] if filled and filled is not empty else None,
        "filled_conversations": filled["conversations"] if filled else None,
        "deep_decode_tps": deep["decode_tps"] if deep else None,
        "agg4_tps": ((d.get("concurrency") or {}).get(name) or {}).get("aggregate_tps"),
        "agg4_errors": ((d.get("concurrency") or {}).get(name) or {}).get("errors"),
        "agg4_requests": ((d.get("concurrency") or {}).get(name) or {}).get("requests"),
        "turns": max((len(r) for r in turns), default=None),
        "last_turn_ttft_s": median(_floats(r[-1] for r in turns)),
        "peak_rss_bytes": ((d.get("memory") or {}).get(name) or {}).get("peak_rss_bytes"),
        "shelf_peak_bytes": ((d.get("memory") or {}).get(name) or {}).get("shelf_peak_bytes"),
        "occupancy": occupancy,
        "depth": depth,
    }


def _occupancy(points: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    out, sent = [], 0.0
    for p in points:
        # The prompt tokens the server counted in every conversation sent so far.
        sent += sum(_field(p.get("fills") or [], "prompt_tokens"))
        out.append(
            {
                "conversations": p.get("conversations", 0),
                "cached_tokens": p.get("cached_tokens"),  # as asked
                "prompt_tokens": sent or None,
                "decode_tps": median(_field(p.get("probes") or [], "decode_tps")),
            }
        )
    return out


def _depth(points: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "depth": p.get("depth"),
            "prompt_tokens": p.get("prompt_tokens"),
            "decode_tps": p.get("decode_tps"),
        }
        for p in points
    ]


def raw_depth(raw: dict[str, Any]) -> list[dict[str, Any]]:
    """The terminal at depth: per depth, the engine's and llama-bench's median tg tok/s."""
    depths = sorted({int(k) for by_depth in raw.values() for k in by_depth or {}})
    rows = []
    for depth in depths:
        ours = median(_floats((raw.get(ENGINE) or {}).get(str(depth)) or []))
        ref = median(_floats((raw.get(LLAMA_BENCH) or {}).get(str(depth)) or []))
        rows.append(
            {"depth": depth, "engine": ours, "llama_bench": ref, "ratio": _ratio(ours, ref)}
        )
    return rows


# ---------------------------------------------------------------------------- targets


def targets(model: dict[str, Any]) -> list[Target]:
    """The issue's verdicts for one model's results entry: each figure of `FIGURES`
    against llama-server, ours filled against ours empty, and peak RSS."""
    s = summarize(model.get("defaults") or {})
    verdicts = judge(s, model.get("quant", "?"), model.get("file_bytes"))
    return [replace(t, shape=model.get("shape")) for t in verdicts]


def judge(s: dict[str, Any], quant: str, file_bytes: int | None) -> list[Target]:
    """`targets` on a `summarize`d defaults entry."""
    ours = s["servers"].get(OURS) or {}
    ref = s["servers"].get(LLAMA_SERVER) or {}
    labels = _labels(s)
    verdicts = []
    for f in FIGURES:
        mine, theirs = ours.get(f.key), ref.get(f.key)
        verdicts.append(
            _verdict(
                f"{f.scenario.format(**labels)}: {f.what.format(**labels)}",
                _bound(f.at_least, LIMIT, LLAMA_SERVER),
                quant,
                _ratio(mine, theirs),
                LIMIT,
                f.at_least,
                f"{_show(mine, f)} vs {_show(theirs, f)}",
            )
        )
    if ours.get("agg4_errors"):  # a faster total with failed clients is no win
        agg = FIGURES.index(next(f for f in FIGURES if f.key == "agg4_tps"))
        t = verdicts[agg]
        detail = f"{t.detail}; {ours['agg4_errors']} of our requests failed"
        verdicts[agg] = replace(t, met=False if t.met is not None else None, detail=detail)
    return [*verdicts, _filled_target(ours, quant), _rss_target(file_bytes, s, ours, quant)]


def _filled_target(ours: dict[str, Any], quant: str) -> Target:
    filled, empty = ours.get("filled_decode_tps"), ours.get("empty_decode_tps")
    return _verdict(
        "filled cache: our decode tok/s",
        f"≥ {FILLED_LIMIT:.2f} × ours with an empty cache",
        quant,
        _ratio(filled, empty),
        FILLED_LIMIT,
        True,
        f"{_fmt(filled, '.1f')} vs {_fmt(empty, '.1f')} tok/s",
    )


def _rss_target(gguf: int | None, s: dict[str, Any], ours: dict[str, Any], q: str) -> Target:
    # The shelf's RAM (finished conversations' KV, under its own cap) is in the RSS by
    # design; the bound checks that nothing else grows.
    rss, kv, shelf = ours.get("peak_rss_bytes"), s.get("kv_bytes"), ours.get("shelf_peak_bytes")
    bound = None if kv is None or gguf is None else int(gguf) + int(kv) + RSS_SLACK_BYTES
    if bound is not None and shelf:
        bound += int(shelf)
    return _verdict(
        "peak RSS on defaults",
        f"≤ GGUF + KV (ctx {_fmt(s.get('ctx'), 'd')}) + shelf + 200 MiB",
        q,
        _ratio(rss, bound),
        1.0,
        False,
        f"{_mib(rss)} MiB vs bound {_mib(bound)} MiB"
        + (f" (shelf peak {_mib(shelf)} MiB)" if shelf else ""),
    )


def _labels(s: dict[str, Any]) -> dict[str, str]:
    ours = s["servers"].get(OURS) or {}
    return {
        "k": _fmt(ours.get("filled_conversations"), "d"),
        "size": _fmt(s.get("conversation_tokens"), "d"),
        "deep": _fmt(s.get("deep"), "d"),
        "turns": _fmt(ours.get("turns"), "d"),
    }


def _show(value: float | None, f: Figure) -> str:
    return f"{_ms(value)} ms" if f.seconds else f"{_fmt(value, '.1f')} tok/s"


# ---------------------------------------------------------------------------- Markdown


def section(models: Sequence[dict[str, Any]], suffix: str) -> str | None:
    """`### Defaults against defaults{suffix}` with one block per model (as
    edge.bench.report summarizes it: "defaults" from `summarize`, "raw_depth" from
    `raw_depth`) that has defaults figures; None when none has."""
    blocks = [_model_block(m) for m in models if _measured(m)]
    if not blocks:
        return None
    return "\n\n".join([f"### Defaults against defaults{suffix}", *blocks])


def _measured(model: dict[str, Any]) -> bool:
    return bool((model.get("defaults") or {}).get("servers") or model.get("raw_depth"))


def _model_block(model: dict[str, Any]) -> str:
    s = model["defaults"]
    commands = "; ".join(f"`{c}`" for c in s["commands"].values()) or DASH
    intro = (
        f"#### {model.get('quant', '?')}\n\nEach server started with only model, threads and "
        f"context (ctx {_fmt(s.get('ctx'), 'd')}): {commands}."
    )
    parts = [
        intro,
        _headline_table(model, s) or "_not measured_",
        _sweep_table("Decode tok/s against cache occupancy", s, "occupancy") or "",
        _sweep_table("Decode tok/s against depth", s, "depth") or "",
        _raw_depth_table(model.get("raw_depth") or []) or "",
    ]
    return "\n\n".join(p for p in parts if p)


SERVERS = (OURS, LLAMA_SERVER, PY_SERVER)


def _headline_table(model: dict[str, Any], s: dict[str, Any]) -> str | None:
    """One row per figure of `FIGURES`, then ours filled vs empty, then peak RSS."""
    if not s["servers"]:
        return None
    each = [s["servers"].get(n) or {} for n in SERVERS]
    labels, verdicts = _labels(s), judge(s, model.get("quant", "?"), model.get("file_bytes"))
    rows = []
    for f, t in zip(FIGURES, verdicts, strict=False):
        cells = [_cell(e, f) for e in each]
        first = [f.scenario.format(**labels), f.what.format(**labels)]
        rows.append([*first, *cells, _fmt(t.value, ".2f"), t.target, _outcome(t)])
    filled, rss = verdicts[len(FIGURES)], verdicts[len(FIGURES) + 1]
    own = [_fmt(_ratio(e.get("filled_decode_tps"), e.get("empty_decode_tps")), ".2f") for e in each]
    peaks = [_mib(e.get("peak_rss_bytes")) for e in each]
    rows += [
        ["filled vs empty cache", "decode ratio", *own, DASH, filled.target, _outcome(filled)],
        ["every scenario", "peak RSS MiB", *peaks, DASH, rss.target, _outcome(rss)],
    ]
    headers = ["scenario", "figure", *SERVERS, "ours / llama-server", "target", "verdict"]
    return _table(headers, rows)


def _cell(figures: dict[str, Any], f: Figure) -> str:
    value = figures.get(f.key)
    text = _ms(value) if f.seconds else _fmt(value, ".1f")
    if f.key != "agg4_tps" or not figures.get("agg4_errors"):
        return text
    return f"{text} ({figures['agg4_errors']} of {_count(figures.get('agg4_requests'))} failed)"


def _sweep_table(title: str, s: dict[str, Any], key: str) -> str | None:
    ours = (s["servers"].get(OURS) or {}).get(key) or []
    ref = (s["servers"].get(LLAMA_SERVER) or {}).get(key) or []
    if not ours and not ref:
        return None
    first, counted = (
        ("cached conversations", "their prompt tokens (ours)")
        if key == "occupancy"
        else ("depth (tokens asked)", "prompt tokens (ours)")
    )
    headers = [first, counted, f"{OURS} tok/s", f"{LLAMA_SERVER} tok/s", "ratio"]
    x = "conversations" if key == "occupancy" else "depth"
    rows = []
    for i in range(max(len(ours), len(ref))):
        a = ours[i] if i < len(ours) else {}
        b = ref[i] if i < len(ref) else {}
        point = a.get(x, b.get(x))
        rows.append(
            [
                _fmt(point, "d"),
                _fmt(a.get("prompt_tokens"), ".0f"),
                _fmt(a.get("decode_tps"), ".1f"),
                _fmt(b.get("decode_tps"), ".1f"),
                _fmt(_ratio(a.get("decode_tps"), b.get("decode_tps")), ".2f"),
            ]
        )
    return f"{title}:\n\n" + _table(headers, rows)


def _raw_depth_table(rows: list[dict[str, Any]]) -> str | None:
    if not rows:
        return None
    headers = ["depth (tokens)", f"{ENGINE} tg tok/s", f"{LLAMA_BENCH} tg tok/s", "ratio"]
    cells = [
        [
            str(r["depth"]),
            _fmt(r["engine"], ".1f"),
            _fmt(r["llama_bench"], ".1f"),
            _fmt(r["ratio"], ".2f"),
        ]
        for r in rows
    ]
    return "The terminal at depth (one slot, same settings as the raw engine):\n\n" + _table(
        headers, cells
    )
