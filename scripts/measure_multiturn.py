"""Time to first token per turn of a growing chat: KV-prefix reuse vs re-reading everything.

    python scripts/measure_multiturn.py MODEL.gguf [--turns 6] [--reply-tokens 32] [--repeats 3]

Both contenders are the same edge-qwen Engine and Conversation; the "full" one clears
the KV cache before each turn, which is what a server without prompt caching does.
Turns alternate between the two so machine drift hits both alike. Prints a Markdown
table of median TTFT per turn and the turn-N / turn-1 ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from edge.bench.servers import TURNS
from edge.chat.conversation import Conversation, TurnOptions
from edge.chat.template import ChatTemplate
from edge.config import Settings
from edge.engine import Engine, Finish
from edge.engine.plan import make_plan, read_model_info

QUESTIONS = TURNS  # the same conversation the benchmark sends to the servers


def one_conversation(
    engine: Engine, template: ChatTemplate, turns: int, opts: TurnOptions, reuse: bool
) -> list[tuple[float, int, int]]:
    """(TTFT, prompt tokens, tokens evaluated) of each turn of one conversation."""
    conv = Conversation(
        engine,
        template,
        engine.info.name,
        system="You are a concise gardening assistant.",
        thinking=False,
    )
    ttfts: list[tuple[float, int, int]] = []
    for i, q in enumerate(QUESTIONS[:turns]):
        if i == 0 or not reuse:
            engine.forget()  # nothing cached: this turn reads its whole prompt
        finish = [e for e in conv.send(q, opts) if isinstance(e, Finish)][0]
        u = finish.usage
        ttfts.append((finish.ttft, u.prompt_tokens, u.prompt_tokens - u.cached_tokens))
    return ttfts


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("model", type=Path)
    ap.add_argument("--turns", type=int, default=6)
    ap.add_argument("--reply-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--flash-attn", action=argparse.BooleanOptionalAction, default=None)
    args = ap.parse_args()

    info = read_model_info(args.model)
    plan = make_plan(info, Settings(threads=args.threads, flash_attn=args.flash_attn))
    engine = Engine(args.model, plan, info)
    template = ChatTemplate.from_gguf(args.model)
    opts = TurnOptions(temperature=0, max_tokens=args.reply_tokens, loop_guard=False)
    runs: dict[bool, list[list[tuple[float, int, int]]]] = {True: [], False: []}
    for _ in range(args.repeats):
        for reuse in (True, False):
            runs[reuse].append(one_conversation(engine, template, args.turns, opts, reuse))
    engine.close()

    print(f"{plan.describe(info)}; {args.reply_tokens}-token replies; median of {args.repeats}")
    print("| turn | prompt tokens | evaluated (reuse) | TTFT reuse ms | TTFT full re-read ms |")
    print("|---|---|---|---|---|")
    med = {
        k: [statistics.median(r[i][0] for r in v) for i in range(args.turns)]
        for k, v in runs.items()
    }
    for i in range(args.turns):
        _, prompt, evaluated = runs[True][0][i]
        print(
            f"| {i + 1} | {prompt} | {evaluated} "
            f"| {med[True][i] * 1000:.0f} | {med[False][i] * 1000:.0f} |"
        )
    last = args.turns - 1
    print(
        f"\nturn {args.turns} / turn 1: reuse {med[True][last] / med[True][0]:.2f}x, "
        f"full re-read {med[False][last] / med[False][0]:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
