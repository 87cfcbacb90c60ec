"""A chat with Qwen3: history, prompt rendering, thinking switch, reasoning/answer split.

One turn is `Conversation.send(text)`: it renders the whole history with the model's
own chat template, lets the engine reuse the KV prefix it already holds (so only the
new turn is evaluated), and streams `Delta`s (reasoning or answer text) then a `Finish`.
The reply's answer (and reasoning, for /save) joins the history, also when cut short.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.chat.reasoning import Delta, ThinkSplitter
from edge.chat.sampling import qwen_sampling
from edge.chat.template import ChatTemplate, soft_switch
from edge.engine import (
    EngineAPI,
    Finish,
    Job,
    SamplingParams,
    ThinkingControl,
    TokenEvent,
    generate,
)
from edge.errors import UsageError


@dataclass
class TurnOptions:
    """Per-turn knobs; None means Qwen's recommended default for the thinking mode."""

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    thinking_budget: int | None = None
    loop_guard: bool = True


@dataclass
class Conversation:
    """Messages so far plus the settings that shape the next prompt."""

    engine: EngineAPI
    template: ChatTemplate
    model_name: str = "the model"
    system: str | None = None
    thinking: bool = True
    messages: list[dict[str, Any]] = field(default_factory=list)

    def reset(self) -> None:
        """Forget the history (the system prompt and thinking mode stay)."""
        self.messages.clear()

    def prompt_tokens(
        self, thinking: bool, messages: list[dict[str, Any]] | None = None
    ) -> list[int]:
        """The rendered history (or `messages`) with the generation prompt, as tokens."""
        msgs = self.messages if messages is None else messages
        system = [{"role": "system", "content": self.system}] if self.system else []
        return self.engine.tokenize(self.template.render(system + msgs, enable_thinking=thinking))

    def send(self, text: str, opts: TurnOptions | None = None) -> Iterator[Delta | Finish]:
        """Add a user message and stream the reply; closing the iterator (Ctrl-C) stops it.

        A message that cannot be answered (empty, or over the context) raises before the
        history changes, so the conversation stays usable.
        """
        if not text.strip():
            raise UsageError("The message is empty.", "Type something to send.")
        opts = opts or TurnOptions()
        messages = [*self.messages, {"role": "user", "content": text}]
        switch = soft_switch(messages)
        thinking = self.thinking if switch is None else switch
        prompt = self.prompt_tokens(thinking, messages)
        self.engine.check_prompt(prompt)
        self.messages = messages
        reply = {"role": "assistant", "content": "", "reasoning_content": ""}
        try:
            yield from self._stream(prompt, thinking, opts, reply)
        finally:
            # Kept even when interrupted: the partial answer is part of the conversation.
            self.messages.append(reply)

    def _stream(
        self,
        prompt: list[int],
        thinking: bool,
        opts: TurnOptions,
        reply: dict[str, Any],
    ) -> Iterator[Delta | Finish]:
        params = sampling_for(thinking, opts)
        control = ThinkingControl(budget=opts.thinking_budget, loop_guard=opts.loop_guard)
        splitter = ThinkSplitter()
        for event in generate(self.engine, Job(prompt, params, control)):
            if isinstance(event, TokenEvent):
                deltas = splitter.feed(event.text) if event.text else []
            else:
                deltas = splitter.finish("length" if event.reason != "stop" else "stop")
            for d in deltas:
                key = "reasoning_content" if d.kind == "reasoning" else "content"
                reply[key] += d.text
                yield d
            if isinstance(event, Finish):
                yield event

    def save(self, path: Path) -> None:
        """Write the conversation as JSON (messages, system prompt, thinking mode)."""
        data = {"system": self.system, "thinking": self.thinking, "messages": self.messages}
        try:
            path.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"Could not write {path} ({exc.strerror or exc}).") from None

    def load(self, path: Path) -> None:
        """Replace the conversation with one saved by `save`."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            messages = [m for m in data["messages"] if m["role"] in ("user", "assistant", "tool")]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UsageError(
                f"{path} is not a saved conversation ({exc.__class__.__name__})."
            ) from None
        self.system = data.get("system")
        self.thinking = bool(data.get("thinking", True))
        self.messages = messages


def sampling_for(thinking: bool, opts: TurnOptions) -> SamplingParams:
    """Qwen's recommended sampling for the mode, overridden by whatever was given."""
    return qwen_sampling(thinking, opts, max_tokens=opts.max_tokens, seed=opts.seed)
