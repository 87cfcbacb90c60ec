"""How many replicas for N users: a small discrete-time simulation from bench figures.

    python scripts/sizing.py --users 40 --think 30 --answer 200 --ttft-p95 1.5
    python scripts/sizing.py --check          # the model against BENCHMARKS.md's points

Inputs are one replica's figures from `edge-qwen bench` (BENCHMARKS.md, "Concurrency"):
aggregate decode tok/s at 1, 4 and 8 clients and the single-client TTFT. The model:

- a replica decodes up to `--parallel` sequences together (edge-qwen serve's slots);
  more requests wait in its queue, first come first served;
- with k sequences live, each one advances at agg(k)/k tokens/s, agg interpolated
  linearly between the measured points (flat past the last);
- a prompt's prefill takes ttft1 × r(1)/r(k): it shares the step with the others
  exactly as decoding does (this reproduces bench's TTFT at 4 and 8 clients, --check);
- users are a closed loop: think (exponential, mean --think s), ask, read the answer
  as it streams, think again; the router picks a replica at random (simple-shuffle).

TTFT = queueing + prefill. The answer is the smallest replica count whose simulated
TTFT p95 meets the target. A model, not a measurement: check it against one run of
your own hardware before buying any.
"""

from __future__ import annotations

import argparse
import random
from bisect import bisect_right
from dataclasses import dataclass, field

# edge-qwen serve, Qwen3-0.6B Q4_K_M, 2-core laptop CPU (BENCHMARKS.md, Concurrency).
BENCH_AGG = {1: 33.3, 4: 45.5, 8: 51.1}
BENCH_TTFT1_S = 0.222
# Points of the same table that are not inputs: (clients, TTFT p50 s).
BENCH_TTFT = {2: 0.325, 4: 0.702, 8: 1.165}
DT = 0.005


@dataclass
class Replica:
    """Figures of one replica."""

    agg: dict[int, float]  # clients -> aggregate tok/s
    ttft1: float  # s, one client
    parallel: int = 4

    def rate(self, k: int) -> float:
        """Tokens/s of each of k live sequences."""
        xs = sorted(self.agg)
        if k <= xs[0]:
            return self.agg[xs[0]] / k if k else 0.0
        if k >= xs[-1]:
            return self.agg[xs[-1]] / k
        i = bisect_right(xs, k)
        x0, x1 = xs[i - 1], xs[i]
        a = self.agg[x0] + (self.agg[x1] - self.agg[x0]) * (k - x0) / (x1 - x0)
        return a / k


@dataclass
class Job:
    asked: float
    tokens: float
    prefill: float = 1.0  # fraction of the prefill left
    first: float | None = None


@dataclass
class Box:
    live: list[Job] = field(default_factory=list)
    queue: list[Job] = field(default_factory=list)


def simulate(
    rep: Replica,
    replicas: int,
    users: int,
    think: float,
    answer: int,
    seconds: float = 600.0,
    seed: int = 0,
) -> list[float]:
    """TTFTs (s) of every request answered in `seconds` of simulated time."""
    rng = random.Random(seed)
    boxes = [Box() for _ in range(replicas)]
    wake = [rng.expovariate(1 / think) if think else 0.0 for _ in range(users)]
    owner: dict[int, int] = {}  # id(job) -> user
    ttfts: list[float] = []
    t = 0.0
    while t < seconds:
        for u in range(users):
            if wake[u] is not None and wake[u] <= t:
                job = Job(t, answer)
                owner[id(job)] = u
                boxes[rng.randrange(replicas)].queue.append(job)
                wake[u] = None  # type: ignore[call-overload]
        for box in boxes:
            for job in _step(rep, box, t):
                ttfts.append(job.first - job.asked)  # type: ignore[operator]
                u = owner.pop(id(job))
                wake[u] = t + (rng.expovariate(1 / think) if think else 0.0)
        t += DT
    return ttfts


def _step(rep: Replica, box: Box, t: float) -> list[Job]:
    """One DT of one replica; returns the jobs that finished."""
    while box.queue and len(box.live) < rep.parallel:
        box.live.append(box.queue.pop(0))
    k = len(box.live)
    if not k:
        return []
    r = rep.rate(k)
    done = []
    for job in box.live:
        if job.prefill > 0:
            job.prefill -= DT * r / (rep.ttft1 * rep.rate(1))
            if job.prefill <= 0:
                job.first = t + DT
        else:
            job.tokens -= DT * r
            if job.tokens <= 0:
                done.append(job)
    box.live = [j for j in box.live if j not in done]
    return done


def p(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def replicas_needed(
    rep: Replica,
    users: int,
    think: float,
    answer: int,
    target: float,
    most: int = 32,
    seconds: float = 600.0,
) -> list[tuple[int, float, float]]:
    """(replicas, TTFT p50, TTFT p95) from 1 up to the first that meets `target`."""
    rows = []
    for c in range(1, most + 1):
        ttfts = simulate(rep, c, users, think, answer, seconds)
        rows.append((c, p(ttfts, 0.5), p(ttfts, 0.95)))
        if rows[-1][2] <= target:
            break
    return rows


def check() -> list[tuple[int, float, float]]:
    """(clients, simulated TTFT p50, measured p50): N clients asking back to back."""
    rep = Replica(BENCH_AGG, BENCH_TTFT1_S, parallel=8)
    out = []
    for clients, measured in BENCH_TTFT.items():
        ttfts = simulate(rep, 1, clients, think=0.0, answer=64, seconds=60.0)
        out.append((clients, p(ttfts, 0.5), measured))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--think", type=float, default=30.0, help="mean s between answers")
    parser.add_argument("--answer", type=int, default=200, help="tokens per answer")
    parser.add_argument("--ttft-p95", type=float, default=2.0, help="target, s")
    parser.add_argument("--parallel", type=int, default=4, help="each replica's slots")
    parser.add_argument(
        "--agg",
        type=float,
        nargs=3,
        metavar=("T1", "T4", "T8"),
        default=[BENCH_AGG[1], BENCH_AGG[4], BENCH_AGG[8]],
        help="aggregate tok/s at 1, 4, 8 clients (edge-qwen bench)",
    )
    parser.add_argument("--ttft1", type=float, default=BENCH_TTFT1_S, help="1-client TTFT, s")
    parser.add_argument("--check", action="store_true", help="compare with bench's points")
    args = parser.parse_args()
    if args.check:
        print("| clients | simulated TTFT p50 s | measured (BENCHMARKS.md) |\n|---|---|---|")
        for clients, sim, measured in check():
            print(f"| {clients} | {sim:.3f} | {measured:.3f} |")
        return
    rep = Replica(dict(zip((1, 4, 8), args.agg, strict=True)), args.ttft1, args.parallel)
    print("| replicas | TTFT p50 s | TTFT p95 s |\n|---|---|---|")
    rows = replicas_needed(rep, args.users, args.think, args.answer, args.ttft_p95)
    for c, p50, p95 in rows:
        print(f"| {c} | {p50:.2f} | {p95:.2f} |")
    met = rows[-1][2] <= args.ttft_p95
    print(
        f"\n{rows[-1][0] if met else 'more than ' + str(rows[-1][0])} replicas for "
        f"{args.users} users (think {args.think:g} s, {args.answer} tokens), "
        f"TTFT p95 <= {args.ttft_p95:g} s"
    )


if __name__ == "__main__":
    main()
