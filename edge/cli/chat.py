"""The chat verbs: `run` answers one prompt, `chat` is the terminal conversation."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from edge.cli.app import (
    CtxOpt,
    FlashOpt,
    GpuOpt,
    KvOpt,
    ModelOpt,
    ThreadsOpt,
    command,
    plan_model,
    say,
    settings,
)
from edge.errors import UsageError

if TYPE_CHECKING:
    from edge.chat.conversation import Conversation, TurnOptions
    from edge.config import Settings

ThinkOpt = Annotated[bool, typer.Option("--think/--no-think", help="Qwen3 thinking mode")]
SystemOpt = Annotated[str | None, typer.Option("--system", "-s", help="System prompt")]
BudgetOpt = Annotated[
    int | None, typer.Option("--thinking-budget", min=0, help="Cap on thinking tokens")
]
LoopOpt = Annotated[
    bool, typer.Option("--loop-guard/--no-loop-guard", help="Stop runaway repetition")
]
# The same ranges as chat's /set (edge/cli/knobs.py).
TempOpt = Annotated[
    float | None,
    typer.Option("--temperature", "-t", min=0.0, max=2.0, help="Default 0.6 thinking, 0.7 not"),
]
MaxOpt = Annotated[
    int | None, typer.Option("--max-tokens", "-n", min=1, help="Cap on generated tokens")
]
SeedOpt = Annotated[
    int | None,
    typer.Option("--seed", min=0, max=2**32 - 2, help="Sampling seed, for repeatable output"),
]


def _open_conversation(think: bool, system: str | None, cfg: Settings) -> Conversation:
    """Resolve, plan and load the model of `cfg` (one sequence)."""
    from edge.chat.conversation import Conversation
    from edge.chat.template import ChatTemplate
    from edge.engine import open_engine

    cfg = cfg.model_copy(update={"parallel": 1})  # one person, one sequence
    path, info, plan = plan_model(cfg)
    engine = open_engine(path, plan, info, say)
    return Conversation(
        engine, ChatTemplate.from_gguf(path), info.name, system=system, thinking=think
    )


def _turn_options(**kwargs: Any) -> TurnOptions:
    from edge.chat.conversation import TurnOptions

    return TurnOptions(**kwargs)


def _read_prompt(prompt: str | None) -> str:
    if prompt not in (None, "-"):
        return str(prompt)
    if prompt is None and sys.stdin.isatty():
        raise UsageError("No prompt given.", "Pass PROMPT, or pipe text in (use - to read stdin).")
    data = sys.stdin.buffer.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"Standard input is not valid UTF-8 (byte 0x{data[exc.start]:02x} "
            f"at offset {exc.start}).",
            "Convert it first, e.g. with iconv -t UTF-8.",
        ) from None


@command
def run(
    prompt: Annotated[
        str | None, typer.Argument(help="The prompt; - or a pipe reads stdin")
    ] = None,
    model: ModelOpt = None,
    think: ThinkOpt = True,
    system: SystemOpt = None,
    show_thinking: Annotated[
        bool, typer.Option("--show-thinking/--hide-thinking", help="Thinking on stderr (dimmed)")
    ] = True,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object at the end")
    ] = False,
    thinking_budget: BudgetOpt = None,
    loop_guard: LoopOpt = True,
    temperature: TempOpt = None,
    max_tokens: MaxOpt = None,
    seed: SeedOpt = None,
    ctx: CtxOpt = None,
    threads: ThreadsOpt = None,
    kv: KvOpt = None,
    flash_attn: FlashOpt = None,
    gpu_layers: GpuOpt = None,
) -> None:
    """Answer one prompt: the answer streams to stdout, thinking to stderr.

    Exit codes: 0 answered, 3 cut off by --max-tokens or the context, 1 error, 2 usage,
    130 Ctrl-C.
    """
    from edge.cli.repl import run_once

    text = _read_prompt(prompt)
    cfg = settings(
        model=model, ctx=ctx, threads=threads, kv=kv, flash_attn=flash_attn, gpu_layers=gpu_layers
    )
    conv = _open_conversation(think, system, cfg)
    opts = _turn_options(
        temperature=temperature,
        max_tokens=max_tokens,
        seed=seed,
        thinking_budget=thinking_budget,
        loop_guard=loop_guard,
    )
    try:
        finish = run_once(conv, text, opts, show_thinking=show_thinking, as_json=as_json)
    finally:
        conv.engine.close()  # the scheduler ends its step before the model is freed
    if finish.reason != "stop":
        raise typer.Exit(3)


@command
def chat(
    model: ModelOpt = None,
    think: ThinkOpt = True,
    system: SystemOpt = None,
    show_thinking: Annotated[
        bool, typer.Option("--show-thinking/--hide-thinking", help="Show thinking")
    ] = True,
    thinking_budget: BudgetOpt = None,
    loop_guard: LoopOpt = True,
    temperature: TempOpt = None,
    max_tokens: MaxOpt = None,
    seed: SeedOpt = None,
    history: Annotated[
        bool | None,
        typer.Option("--history/--no-history", help="Keep what you type for the next session"),
    ] = None,
    ctx: CtxOpt = None,
    threads: ThreadsOpt = None,
    kv: KvOpt = None,
    flash_attn: FlashOpt = None,
    gpu_layers: GpuOpt = None,
    raw: Annotated[
        bool, typer.Option("--raw", help="Answers as plain text, no Markdown colours")
    ] = False,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Pull the default model without asking if needed")
    ] = False,
) -> None:
    """Chat in the terminal: answers stream as they are made, thinking shown dimmed.

    Follow-up turns reuse the model's memory of the conversation, so only the
    new message is read. A pasted block is one message; Alt-Enter starts a new
    line; a message opening with \"\"\" ends at a line ending with \"\"\".
    What you type is kept for the next session (--no-history: not).
    /help lists the commands (/set, /show, /copy, ...); Ctrl-C stops an answer,
    Ctrl-D leaves. With no model pulled yet it offers to pull Qwen3-0.6B first
    (--yes: without asking).
    """
    from edge.cli.chatloop import ChatLoop
    from edge.cli.first_run import ensure_default_model
    from edge.cli.history import HistoryFile
    from edge.cli.lineinput import open_reader
    from edge.cli.repl import colour_on

    cfg = settings(
        model=model,
        ctx=ctx,
        threads=threads,
        kv=kv,
        flash_attn=flash_attn,
        gpu_layers=gpu_layers,
        history=history,
    )
    ensure_default_model(cfg, yes=yes)
    reader = open_reader(HistoryFile(cfg.home / "chat_history") if cfg.history else None)
    conv = _open_conversation(think, system, cfg)
    opts = _turn_options(
        temperature=temperature,
        max_tokens=max_tokens,
        seed=seed,
        thinking_budget=thinking_budget,
        loop_guard=loop_guard,
    )
    try:
        colour = colour_on(sys.stdout) and not raw
        ChatLoop(conv, opts, reader, show_thinking=show_thinking, markdown=colour).run()
    finally:
        conv.engine.close()
