"""`edge-qwen bench`: every figure of BENCHMARKS.md, measured side by side in one run.

For each shape of the synthetic model (or the user's --model) and each quantization: the
raw engine (figure 1), then the three servers, all started together so their requests can
interleave (figures 2–4), then 1..N concurrent clients (figure 5; llama-server and
edge-qwen restarted with --parallel equal to the client count), and each server's peak
memory (figure 6). Then what users see (edge.bench.defaults): our engine and llama-bench
decoding at depth, and every server started with its own defaults. Writes results.json
(every raw number, each model tagged with its shape and thread count), PNG plots and a
Markdown section per shape.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shlex
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edge.bench import defaults, raw, servers
from edge.bench.defaults import DefaultsSizes
from edge.bench.models import SHAPES
from edge.bench.servers import LLAMA_SERVER, OURS, PY_SERVER, Server, ServerSettings
from edge.config import Settings
from edge.errors import UsageError

Log = Callable[[str], None]


@dataclass(frozen=True)
class Sizes:
    """How much of each figure to measure."""

    pp_tokens: int
    tg_tokens: int
    rounds: int  # raw-engine rounds
    stream_tokens: int
    stream_rounds: int
    nonstream_rounds: int
    turns: int
    turn_tokens: int
    turn_repeats: int
    clients: tuple[int, ...]
    client_tokens: int


FULL = Sizes(512, 128, 5, 128, 5, 3, 6, 32, 3, (1, 2, 4, 8), 64)
QUICK = Sizes(128, 32, 1, 32, 2, 1, 3, 8, 1, (1, 2, 4, 8), 16)


@dataclass
class BenchOptions:
    """One benchmark run."""

    out: Path
    quick: bool = False
    quants: tuple[str, ...] = ()
    shapes: tuple[str, ...] = ()  # of edge.bench.models.SHAPES; default: all of them
    model: Path | None = None  # a GGUF of the user's; default: the synthetic checkpoint
    threads: int | None = None
    ctx: int = 4096
    flash_attn: bool | None = None
    reference: bool = True
    reference_dir: Path | None = None
    cache: Path | None = None
    markdown: Path | None = None
    command: str = field(default_factory=lambda: _invocation(sys.argv))
    defaults: bool = True  # also measure every server started with its own defaults
    defaults_ctx: int = 8192  # the context those starts give (llama-server users' common -c)

    @property
    def sizes(self) -> Sizes:
        return QUICK if self.quick else FULL

    @property
    def defaults_sizes(self) -> DefaultsSizes:
        return defaults.QUICK if self.quick else defaults.FULL


def _invocation(argv: list[str]) -> str:
    """The command line to print beside the results, as the person typed it."""
    if argv[0].endswith("bench.py"):
        return shlex.join(["python", "scripts/bench.py", *argv[1:]])
    return shlex.join(["edge-qwen", *argv[1:]])


def run(opts: BenchOptions, log: Log) -> dict[str, Any]:
    """Measure everything, write results.json, plots and Markdown; return the results."""
    from edge.bench import reference, report
    from edge.bench.plots import plot
    from edge.engine.plan import physical_cores

    _check(opts)
    opts.out.mkdir(parents=True, exist_ok=True)
    ref = reference.ensure(opts.reference_dir, log) if opts.reference else None
    groups = _groups(opts, opts.threads or physical_cores(), log)
    results: dict[str, Any] = {"meta": _meta(opts, ref), "models": []}
    for group in groups:
        if group.shape is not None:
            results["meta"]["shapes"][group.shape] = SHAPES[group.shape].about
        fa = _flash_attn(group, opts)
        for path in group.paths:
            _measure(path, group, fa, opts, ref, results, log)
    plots = plot(results, opts.out)
    base = opts.markdown.parent if opts.markdown else opts.out
    rel = {k: os.path.relpath(v, base) for k, v in plots.items()}
    section = report.markdown(results, rel)
    (opts.out / "summary.md").write_text(section, encoding="utf-8")
    if opts.markdown:
        report.update_markdown_file(opts.markdown, section)
    return results


def _check(opts: BenchOptions) -> None:
    """Options checked and names normalized now: a typo fails at once, not after minutes
    of building."""
    from edge.model.quantize import quant_type

    if opts.model is not None and opts.quants:
        raise UsageError(
            "--quant picks the synthetic model's type; it cannot apply to --model.",
            "Give one of them.",
        )
    if opts.model is not None and opts.shapes:
        raise UsageError(
            "--shape picks the synthetic model's shape; it cannot apply to --model.",
            "Give one of them.",
        )
    for name in opts.shapes:
        if name not in SHAPES:
            raise UsageError(
                f"Unknown benchmark shape {name!r}.", f"Choose from: {', '.join(SHAPES)}."
            )
    opts.quants = tuple(quant_type(q).name for q in opts.quants)
    opts.shapes = tuple(dict.fromkeys(opts.shapes))  # a repeated --shape runs once


@dataclass(frozen=True)
class _Group:
    """Models measured with the same thread count, under one heading of the report."""

    shape: str | None  # None: the user's --model
    threads: int
    paths: list[Path]


def _groups(opts: BenchOptions, threads: int, log: Log) -> list[_Group]:
    """Every model to measure, made (or found in the cache) before any is measured."""
    if opts.model is not None:
        return [_Group(None, threads, [opts.model])]
    from edge.bench.models import bench_model

    cache = opts.cache or Settings().home / "bench"
    groups = []
    for name in opts.shapes or tuple(SHAPES):
        shape = SHAPES[name]
        if shape.threads is not None:
            ignored = f"; --threads {opts.threads} does not apply to it" if opts.threads else ""
            log(f"{name}: every contender runs with {_threads(shape.threads)}{ignored}.")
        quants = opts.quants or (shape.quants[:1] if opts.quick else shape.quants)
        paths = [bench_model(cache, q, log, shape=name) for q in quants]
        groups.append(_Group(name, shape.threads or threads, paths))
    return groups


def _flash_attn(group: _Group, opts: BenchOptions) -> bool:
    """--flash-attn if given, else what edge-qwen's plan would pick, given to everyone."""
    if opts.flash_attn is not None:
        return opts.flash_attn
    from edge.engine.plan import make_plan, read_model_info

    info = read_model_info(group.paths[0])
    return make_plan(info, Settings(ctx=opts.ctx, threads=group.threads)).flash_attn


def _measure(
    path: Path,
    group: _Group,
    fa: bool,
    opts: BenchOptions,
    ref: Any,
    results: dict[str, Any],
    log: Log,
) -> None:
    """Every figure for one model file, appended to results["models"]."""
    from edge.engine.plan import read_model_info

    info = read_model_info(path)
    entry: dict[str, Any] = {
        "shape": group.shape,
        "threads": group.threads,
        "flash_attn": fa,
        "quant": info.file_type,
        "path": str(path),
        "file_bytes": path.stat().st_size,
        "kv_bytes": int(info.kv_bytes_per_token("f16") * opts.ctx),
    }
    results["models"].append(entry)
    log(f"— {path.name} ({_threads(group.threads)}): raw engine")
    entry["raw"] = _raw(path, group.threads, opts, fa, ref, log)
    settings = ServerSettings(path, group.threads, opts.ctx, fa)
    entry.update(_served(settings, opts, ref.llama_server if ref else None, log))
    _write_json(opts.out / "results.json", results)  # partial results survive a crash
    if opts.defaults:
        _measure_defaults(entry, group.threads, fa, opts, ref, log)
        _write_json(opts.out / "results.json", results)


def _measure_defaults(
    entry: dict[str, Any], threads: int, fa: bool, opts: BenchOptions, ref: Any, log: Log
) -> None:
    """What users see: the terminal at depth, then every server on its own defaults."""
    path = Path(entry["path"])
    log(f"— {path.name}: our engine and llama-bench at depth")
    entry["raw_depth"] = _raw_depth(path, threads, fa, opts, ref, log)
    log(f"— {path.name}: defaults against defaults (ctx {opts.defaults_ctx})")
    s = ServerSettings(path, threads, opts.defaults_ctx, fa)
    llama_server = ref.llama_server if ref else None
    got = defaults.measure(s, opts.defaults_sizes, _logs(opts), llama_server, log)
    kv = entry["kv_bytes"] * opts.defaults_ctx // opts.ctx  # f16 KV grows with the context
    entry["defaults"] = {**got, "kv_bytes": kv}


def _raw_depth(path: Path, threads: int, fa: bool, opts: BenchOptions, ref: Any, log: Log) -> dict:
    """{contender: {depth: [tg tok/s per round]}}, contenders in rotating order."""
    d = opts.defaults_sizes
    s = raw.RawSettings(threads, 0, fa, 0, opts.sizes.tg_tokens)
    names = ([raw.LLAMA_BENCH] if ref else []) + [raw.ENGINE]
    out: dict[str, dict[str, list[float]]] = {n: {str(k): [] for k in d.raw_depths} for n in names}
    for r in range(d.raw_rounds):
        k = r % len(names)
        for depth in d.raw_depths:
            for name in names[k:] + names[:k]:
                tps = raw.measure_depth(name, path, s, depth, ref.llama_bench if ref else None)
                log(f"  {name} at depth {depth}: tg {tps:.2f} tok/s")
                out[name][str(depth)].append(tps)
    return out


def _raw(path: Path, threads: int, opts: BenchOptions, fa: bool, ref: Any, log: Log) -> dict:
    z = opts.sizes
    s = raw.RawSettings(threads, opts.ctx, fa, z.pp_tokens, z.tg_tokens)
    names = ([raw.LLAMA_BENCH] if ref else []) + [raw.ENGINE, raw.PLAIN, raw.at_ctx(opts.ctx)]
    out: dict[str, dict[str, list[float]]] = {n: {"pp_tps": [], "tg_tps": []} for n in names}
    for r in range(z.rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            got = raw.measure(name, path, s, ref.llama_bench if ref else None)
            log(f"  {name}: pp {got['pp_tps']:.1f} tok/s, tg {got['tg_tps']:.2f} tok/s")
            for key in ("pp_tps", "tg_tps"):
                out[name][key].append(got[key])
    return out


def _served(s: ServerSettings, opts: BenchOptions, llama_server: Path | None, log: Log) -> dict:
    z = opts.sizes
    names = [OURS] + ([LLAMA_SERVER] if llama_server else []) + [PY_SERVER]
    running: list[Server] = []
    peaks: dict[str, int] = {}
    try:
        for name in names:
            log(f"  starting {name}")
            running.append(servers.start(name, s, _logs(opts), llama_server))
        out = _single_client(running, z, log)
        out["concurrency"] = _concurrency(running, s, opts, llama_server, peaks, log)
    finally:
        for server in running:
            _note_peak(server, peaks)
            server.stop()
    out["memory"] = {name: {"peak_rss_bytes": peaks.get(name)} for name in names}
    return out


def _single_client(running: list[Server], z: Sizes, log: Log) -> dict:
    log("  streamed requests")
    stream = servers.interleaved(
        running,
        z.stream_rounds,
        lambda sv, r: _strip(servers.stream_chat(sv, servers.user(f"s{r}"), z.stream_tokens)),
    )
    log("  non-streamed requests")
    plain = servers.interleaved(
        running,
        z.nonstream_rounds,
        lambda sv, r: servers.plain_chat(sv, servers.user(f"n{r}"), z.stream_tokens),
    )
    log("  multi-turn conversations")
    turns = servers.interleaved(
        running,
        z.turn_repeats,
        lambda sv, r: servers.multiturn(sv, f"m{r}", z.turns, z.turn_tokens),
    )
    return {"stream": stream, "nonstream": plain, "multiturn": turns}


def _concurrency(
    running: list[Server],
    s: ServerSettings,
    opts: BenchOptions,
    llama_server: Path | None,
    peaks: dict[str, int],
    log: Log,
) -> dict:
    z = opts.sizes
    out: dict[str, dict[str, Any]] = {sv.name: {} for sv in running}
    for i, n in enumerate(z.clients):
        for j, sv in enumerate(running):
            if sv.name in (OURS, LLAMA_SERVER) and n > 1:  # slots are fixed at start: --parallel n
                _note_peak(sv, peaks)
                sv.stop()
                running[j] = servers.start(sv.name, s, _logs(opts), llama_server, parallel=n)
        k = i % len(running)
        for sv in running[k:] + running[:k]:
            got = servers.concurrent(sv, f"c{n}", n, z.client_tokens)
            log(
                f"  {sv.name}, {n} clients: "
                f"{got['aggregate_tps']:.1f} tok/s, {got['errors']} errors"
            )
            out[sv.name][str(n)] = got
    return out


def _threads(n: int) -> str:
    return f"{n} thread{'' if n == 1 else 's'}"


def _logs(opts: BenchOptions) -> Path:
    """Each server's own log, for when one misbehaves."""
    folder = opts.out / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _note_peak(server: Server, peaks: dict[str, int]) -> None:
    peak = server.peak_rss()
    if peak is not None:
        peaks[server.name] = max(peak, peaks.get(server.name, 0))


def _strip(result: dict) -> dict:
    return {k: v for k, v in result.items() if k != "text"}


def _meta(opts: BenchOptions, ref: Any) -> dict[str, Any]:
    from edge import __version__
    from edge.engine import llama_cpp_version

    z = opts.sizes
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": opts.command,
        "quick": opts.quick,
        "machine": {
            "cpu": _cpu_name(),
            "cores": os.cpu_count(),
            "ram_gib": _ram_gib(),
            "os": platform.platform(),
        },
        "versions": {
            "edge_qwen": __version__,
            "llama_cpp_python": llama_cpp_version(),
            "python": platform.python_version(),
            "reference": f"llama.cpp vendored in llama-cpp-python {ref.version}" if ref else None,
        },
        "shapes": {},  # name -> what it stands for; threads and flash_attn are per model
        "defaults": (
            {"ctx": opts.defaults_ctx, **_listed(asdict(opts.defaults_sizes))}
            if opts.defaults
            else None
        ),
        "settings": {
            "ctx": opts.ctx,
            "kv_type": "f16",
            **_listed(asdict(z)),
        },
    }


def _listed(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()}


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.partial")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(tmp, path)
