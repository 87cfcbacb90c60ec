"""Figure 1, the raw engine: prompt tokens/s (pp) and decode tokens/s (tg), measured the
way llama-bench measures them, for llama-bench, edge-qwen's Engine and plain
`llama_cpp.Llama`.

Each measurement is a fresh process (as llama-bench is), so no contender inherits another's
warm caches. Like llama-bench: one warm-up, then pp = N prompt tokens into an empty KV cache
of N tokens, tg = N single-token decodes starting from an empty cache of about N tokens
(decode slows as the cache grows: 0.6b Q4_K_M, no flash attention, 2 threads: 57.9 tok/s
with 256 cells, 54.7 with 4,096). Ours and the plain library also sample greedily after
each decode, which llama-bench does not; that is their real cost. One more row runs our
engine with the servers' context, to show what that context alone costs.

    python -m edge.bench.raw engine|llama MODEL THREADS CTX FLASH(0/1) PP TG   # one JSON line
    python -m edge.bench.raw engine-depth MODEL THREADS 0 FLASH(0/1) DEPTH TG
    (CTX 0: size the cache as llama-bench does)

`measure_depth` is the terminal at depth: decode after a long prompt, our engine with one
slot against llama-bench's `tg` at `-d DEPTH`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.config import Settings
from edge.errors import BenchError

ENGINE = "edge-qwen engine"
PLAIN = "llama-cpp-python Llama"
LLAMA_BENCH = "llama-bench"
PROMPT_TOKEN = 9707  # "Hello": tg starts from a one-token prompt, as near empty as a sampler allows


@dataclass(frozen=True)
class RawSettings:
    """What every contender is given alike."""

    threads: int
    ctx: int
    flash_attn: bool
    pp: int
    tg: int


def at_ctx(ctx: int) -> str:
    """The name of the row that runs our engine with the servers' context."""
    return f"{ENGINE}, ctx {ctx}"


def measure(contender: str, model: Path, s: RawSettings, bin_path: Path | None = None) -> dict:
    """One round for one contender: {"pp_tps": float, "tg_tps": float}."""
    if contender == LLAMA_BENCH:
        assert bin_path is not None
        return _llama_bench(bin_path, model, s)
    kind = "llama" if contender == PLAIN else "engine"
    ctx = s.ctx if contender == at_ctx(s.ctx) else 0
    argv = [
        sys.executable,
        "-m",
        "edge.bench.raw",
        kind,
        str(model),
        str(s.threads),
        str(ctx),
        str(int(s.flash_attn)),
        str(s.pp),
        str(s.tg),
    ]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    if out.returncode != 0:
        raise BenchError(f"{contender} failed: {out.stderr.strip()[-2000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _llama_bench(binary: Path, model: Path, s: RawSettings) -> dict:
    rows = _llama_bench_rows(binary, model, s, ["-p", str(s.pp), "-n", str(s.tg)])
    pp = next(r for r in rows if r["n_prompt"] == s.pp and r["n_gen"] == 0)
    tg = next(r for r in rows if r["n_gen"] == s.tg and r["n_prompt"] == 0)
    return {"pp_tps": float(pp["avg_ts"]), "tg_tps": float(tg["avg_ts"])}


def _llama_bench_rows(binary: Path, model: Path, s: RawSettings, tests: list[str]) -> list:
    argv = [
        str(binary),
        "-m",
        str(model),
        "-t",
        str(s.threads),
        "-fa",
        str(int(s.flash_attn)),
        *tests,
        "-r",
        "1",
        "-ngl",
        "0",
        "-o",
        "json",
    ]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)
    if out.returncode != 0:
        raise BenchError(f"llama-bench failed: {out.stderr.strip()[-2000:]}")
    return list(json.loads(out.stdout))


def measure_depth(
    contender: str, model: Path, s: RawSettings, depth: int, bin_path: Path | None = None
) -> float:
    """Decode tok/s of `s.tg` tokens after `depth` prompt tokens, one slot, a context sized
    as llama-bench sizes it (depth + tg): llama-bench's `tg` at `-d depth`, or our Engine as
    `edge-qwen chat` runs it. `s.pp` and `s.ctx` are not used."""
    if contender == LLAMA_BENCH:
        assert bin_path is not None
        tests = ["-p", "0", "-n", str(s.tg), "-d", str(depth)]
        rows = _llama_bench_rows(bin_path, model, s, tests)
        row = next(r for r in rows if r["n_gen"] == s.tg and r.get("n_depth") == depth)
        return float(row["avg_ts"])
    if contender != ENGINE:
        raise ValueError(contender)
    args = [str(model), str(s.threads), "0", str(int(s.flash_attn)), str(depth), str(s.tg)]
    argv = [sys.executable, "-m", "edge.bench.raw", "engine-depth", *args]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)
    if out.returncode != 0:
        raise BenchError(f"{contender} at depth {depth} failed: {out.stderr.strip()[-2000:]}")
    return float(json.loads(out.stdout.strip().splitlines()[-1])["tg_tps"])


def _prompt(pp: int) -> list[int]:
    # Fixed, varied ordinary tokens (llama-bench uses random ones); content does not change cost.
    return [1000 + (i * 7919) % 100_000 for i in range(pp)]


def _load(model: Path, info: Any, s: RawSettings, ctx: int) -> Any:
    from edge.engine import Engine, SamplingParams
    from edge.engine.plan import make_plan

    plan = make_plan(
        info, Settings(ctx=max(64, s.ctx or ctx), threads=s.threads, flash_attn=s.flash_attn)
    )
    engine = Engine(model, plan, info)
    # A warm-up, as llama-bench does. What it leaves cached is no prefix of what is
    # measured next (the pp prompt starts with another token; tg's one-token prompt
    # is always evaluated for its logits), so nothing measured is served from cache.
    list(engine.generate([PROMPT_TOKEN] * 8, SamplingParams(temperature=0, max_tokens=1)))
    return engine


def _decode(engine: Any, prompt: list[int], tg: int) -> float:
    """tok/s of `tg` tokens after the prompt (the first token, which ends prompt reading,
    is not counted)."""
    from edge.engine import SamplingParams, ThinkingControl, TokenEvent

    # Random weights repeat themselves; the loop guard would end the run early.
    decode = engine.generate(
        prompt,
        SamplingParams(temperature=0, max_tokens=tg + 1),
        thinking=ThinkingControl(loop_guard=False),
    )
    stamps = [e.elapsed for e in decode if isinstance(e, TokenEvent)]
    if len(stamps) != tg + 1:
        raise BenchError(f"the engine stopped after {len(stamps)} of {tg + 1} tokens")
    return tg / (stamps[-1] - stamps[0])


def _engine(model: Path, s: RawSettings) -> dict:
    from edge.engine import Finish, SamplingParams
    from edge.engine.plan import read_model_info

    info = read_model_info(model)
    engine = _load(model, info, s, s.pp + 1)
    prompt = engine.generate(_prompt(s.pp), SamplingParams(temperature=0, max_tokens=1))
    finish = [e for e in prompt if isinstance(e, Finish)][0]
    engine.close()
    engine = _load(model, info, s, s.tg + 2)
    tg_tps = _decode(engine, [PROMPT_TOKEN], s.tg)
    return {"pp_tps": s.pp / finish.ttft, "tg_tps": tg_tps}


def _engine_depth(model: Path, s: RawSettings) -> dict:
    """Decode after `s.pp` prompt tokens (the depth), one slot, as `edge-qwen chat` runs."""
    from edge.engine.plan import read_model_info

    engine = _load(model, read_model_info(model), s, s.pp + s.tg + 2)
    return {"tg_tps": _decode(engine, _prompt(s.pp), s.tg)}


def _plain(model: Path, s: RawSettings) -> dict:
    from llama_cpp import Llama

    def load(ctx: int) -> Llama:
        llm = Llama(
            str(model),
            n_ctx=s.ctx or ctx,
            n_batch=512,
            n_threads=s.threads,
            n_threads_batch=s.threads,
            flash_attn=s.flash_attn,
            verbose=False,
        )
        llm.eval([PROMPT_TOKEN] * 8)  # warm-up
        llm.reset()
        return llm

    llm = load(s.pp)
    start = time.perf_counter()
    llm.eval(_prompt(s.pp))
    pp_tps = s.pp / (time.perf_counter() - start)
    llm.close()
    llm = load(s.tg + 2)
    stamps = []
    chunks: Any = llm.create_completion(
        [PROMPT_TOKEN], max_tokens=s.tg + 1, temperature=0, stream=True
    )  # an iterator when stream=True, whatever its annotation says
    for chunk in chunks:
        if chunk["choices"][0]["text"]:  # the last chunk only carries finish_reason
            stamps.append(time.perf_counter())
    if len(stamps) != s.tg + 1:
        raise BenchError(f"Llama stopped after {len(stamps)} of {s.tg + 1} tokens")
    return {"pp_tps": pp_tps, "tg_tps": s.tg / (stamps[-1] - stamps[0])}


def _main(argv: list[str]) -> int:
    kind, model = argv[0], Path(argv[1])
    threads, ctx, fa, pp, tg = (int(a) for a in argv[2:7])
    s = RawSettings(threads, ctx, bool(fa), pp, tg)
    run = {"engine": _engine, "engine-depth": _engine_depth, "llama": _plain}[kind]
    result = run(model, s)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
