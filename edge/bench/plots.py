"""PNG plots of a benchmark's results: TTFT and inter-token latency distributions per
server, aggregate throughput against concurrent clients, and (each server on its own
defaults) decode against cache occupancy and against depth (one file per shape, one
panel per quant)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.bench.defaults_report import raw_depth
from edge.bench.defaults_report import summarize as summarize_defaults
from edge.bench.report import (
    MAX_STRIP_POINTS,
    PLOT_TITLES,
    _concurrency_summary,
    _field,
    _floats,
    _section,
    by_shape,
    plot_key,
)
from edge.fileio import atomic_output

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def plot(results: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write `ttft`, `itl` and `throughput` PNGs into `out_dir`, one file per shape (named
    by `plot_key`: `ttft-gpu-proxy.png`; `ttft.png` for a GGUF of the user's) with one
    panel per quant.

    A plot with no data for any quant is not written; the returned dict maps the key of
    each plot written to its path.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for shape, models in by_shape(results.get("models") or []):
        for name, path in _plot_shape(models, out_dir, shape).items():
            written[plot_key(name, shape)] = path
    return written


def _plot_shape(models: list[dict[str, Any]], out_dir: Path, shape: str | None) -> dict[str, Path]:
    # Imported here: matplotlib takes most of a second to import and only plotting needs it.
    from matplotlib.figure import Figure

    drawers: dict[str, tuple[str, Callable[[Axes, dict[str, Any]], bool]]] = {
        "ttft": ("stream", _draw_ttft),
        "itl": ("stream", _draw_itl),
        "throughput": ("concurrency", _draw_throughput),
        "occupancy": ("defaults", _draw_occupancy),
        "depth": ("defaults", _draw_depth),
    }
    written: dict[str, Path] = {}
    for name, (section, draw) in drawers.items():
        if not any(_section(m, section) for m in models):
            continue
        # A bare Figure renders with Agg on savefig, without touching pyplot's global backend.
        fig = Figure(figsize=(5.5 * len(models), 4), layout="constrained")
        axes = fig.subplots(1, len(models), squeeze=False)[0]
        for ax, model in zip(axes, models, strict=True):
            if not draw(ax, model):
                ax.text(0.5, 0.5, "not measured", ha="center", va="center")
            label = " ".join(str(x) for x in (shape, model.get("quant", "?")) if x)
            if n := model.get("threads"):
                label += f", {n} thread{'' if n == 1 else 's'}"
            ax.set_title(f"{PLOT_TITLES[name]}\n{label}", fontsize=9)
        written[name] = _save(fig, out_dir / f"{plot_key(name, shape)}.png")
    return written


def _save(fig: Any, path: Path) -> Path:
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return path


def _boxes(ax: Axes, series: dict[str, list[float]], ylabel: str) -> bool:
    series = {name: vals for name, vals in series.items() if vals}
    if not series:
        return False
    ax.boxplot(list(series.values()))
    # A box over a handful of rounds hides how few they are, so small series show each sample.
    for i, vals in enumerate(series.values(), start=1):
        if len(vals) <= MAX_STRIP_POINTS:
            ax.plot([i] * len(vals), vals, "o", alpha=0.4, markersize=3)
    ax.set_xticks(range(1, len(series) + 1), list(series), rotation=15, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    return True


def _draw_ttft(ax: Axes, model: dict[str, Any]) -> bool:
    stream = _section(model, "stream")
    series = {n: [v * 1000 for v in _field(rounds or [], "ttft_s")] for n, rounds in stream.items()}
    return _boxes(ax, series, "TTFT (ms)")


def _draw_itl(ax: Axes, model: dict[str, Any]) -> bool:
    stream = _section(model, "stream")
    series = {
        n: [v * 1000 for r in rounds or [] for v in _floats(r.get("itl_s") or [])]
        for n, rounds in stream.items()
    }
    return _boxes(ax, series, "inter-token latency (ms)")


def _draw_throughput(ax: Axes, model: dict[str, Any]) -> bool:
    clients: set[int] = set()
    for name, by_clients in _concurrency_summary(_section(model, "concurrency")).items():
        rows = [r for r in by_clients.values() if r["aggregate_tps"] is not None]
        if rows:
            xs = [r["clients"] for r in rows]
            ax.plot(xs, [r["aggregate_tps"] for r in rows], marker="o", label=name)
            clients.update(xs)
    if not clients:
        return False
    ax.set_xscale("log", base=2)  # client counts usually double: 1, 2, 4, 8
    ax.set_xticks(sorted(clients), [str(c) for c in sorted(clients)])
    ax.set_xticks([], minor=True)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("concurrent clients")
    ax.set_ylabel("aggregate generated tok/s")
    ax.legend(fontsize=8)
    return True


def _lines(ax: Axes, lines: dict[str, list[tuple[float, float]]], xlabel: str) -> bool:
    """One line per name through its (x, decode tok/s) points; "(terminal)" ones dashed."""
    drawn = False
    for name, points in lines.items():
        points = sorted(p for p in points if p[1] is not None)
        if points:
            style = "--" if name.endswith("(terminal)") else "-"
            ax.plot(*zip(*points, strict=True), style, marker="o", label=name)
            drawn = True
    if drawn:
        ax.set_ylim(bottom=0)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("decode tok/s")
        ax.legend(fontsize=8)
    return drawn


def _draw_occupancy(ax: Axes, model: dict[str, Any]) -> bool:
    servers = summarize_defaults(_section(model, "defaults"))["servers"]
    lines = {
        name: [
            (p["prompt_tokens"] or p["cached_tokens"] or 0, p["decode_tps"]) for p in e["occupancy"]
        ]
        for name, e in servers.items()
    }
    return _lines(ax, lines, "prompt tokens of the conversations sent before (cached)")


def _draw_depth(ax: Axes, model: dict[str, Any]) -> bool:
    servers = summarize_defaults(_section(model, "defaults"))["servers"]
    lines = {
        name: [(p["prompt_tokens"] or p["depth"], p["decode_tps"]) for p in e["depth"]]
        for name, e in servers.items()
    }
    rows = raw_depth(_section(model, "raw_depth"))
    for key, name in (("engine", "edge-qwen engine"), ("llama_bench", "llama-bench tg")):
        lines[f"{name} (terminal)"] = [(r["depth"], r[key]) for r in rows]
    return _lines(ax, lines, "context depth (prompt tokens)")
