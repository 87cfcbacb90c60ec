"""Anthropic Messages, the request half of the translation: request → `MessagesSpec` (the
chat pipeline's input: OpenAI-style messages and function tools for the chat template,
Qwen-default sampling, the thinking switch and budget). Pure translation, no I/O."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from edge.chat.sampling import qwen_sampling
from edge.chat.template import ChatTemplate
from edge.engine import Job, SamplingParams, ThinkingControl
from edge.errors import ParamError
from edge.server.anthropic.schema import (
    CountTokensRequest,
    MessageParam,
    MessagesRequest,
    RedactedThinkingBlock,
    TextBlock,
    ThinkingBlock,
    ToolChoice,
    ToolResultBlock,
    ToolUseBlock,
)
from edge.server.grammar import ForcedCall, answer_grammar
from edge.server.params import check_text, fit_to_room, thinking_budget
from edge.server.prompt import prompt_text


@dataclass
class MessagesSpec:
    """Everything needed to run and answer one Messages request."""

    prompt_text: str
    params: SamplingParams
    control: ThinkingControl
    thinking: bool
    tools: bool
    context_bound: bool = False  # max_tokens was cut to the room the context leaves
    id: str = field(default_factory=lambda: "msg_" + secrets.token_hex(12))

    def job(self, prompt: list[int]) -> Job:
        """The engine's job for this request, once its prompt is tokenized."""
        return Job(prompt, self.params, self.control)


@dataclass(frozen=True)
class Prompt:
    """A request's prompt text, and the switches that shaped it."""

    text: str
    thinking: bool
    tools: bool
    grammar: str | None = None  # a forced tool call's


def build_spec(req: MessagesRequest, template: ChatTemplate) -> MessagesSpec:
    """Validate a request and turn it into a prompt, sampling params and thinking control."""
    prompt = prompt_of(req, template)
    stops = list(req.stop_sequences or [])
    for stop in stops:
        check_text(stop, "stop_sequences")
    params = qwen_sampling(
        prompt.thinking,
        req,
        max_tokens=req.max_tokens,
        stop=stops,
        grammar=prompt.grammar,
    )
    own = req.thinking.budget_tokens if req.thinking and req.thinking.type == "enabled" else None
    budget = thinking_budget({"thinking.budget_tokens": own, **req.budget_spellings()})
    return MessagesSpec(
        prompt_text=prompt.text,
        params=params,
        control=ThinkingControl(budget=budget),
        thinking=prompt.thinking,
        tools=prompt.tools,
    )


def fit_context(spec: MessagesSpec, prompt_tokens: int, n_ctx: int) -> None:
    """Cut max_tokens to the room the context leaves after the prompt, as every API's
    admission does (`params.fit_to_room`), here before admission so that the answer can
    say `model_context_window_exceeded`, Anthropic's reason, if it fills the context."""
    if fit_to_room(spec.params, prompt_tokens, n_ctx):
        spec.context_bound = True


def prompt_of(req: CountTokensRequest, template: ChatTemplate) -> Prompt:
    """The prompt a request renders to (also what count_tokens counts). Anthropic's
    contract: no thinking unless the request turns it on."""
    forced = forced_call(req.tool_choice)
    use_tools = bool(req.tools) and not (req.tool_choice and req.tool_choice.type == "none")
    tools = openai_tools(req) if use_tools else None
    grammar = answer_grammar(None, "", tools or [], forced)
    # A forced call is one grammar over the whole answer: no room for thinking first.
    thinking = req.thinking is not None and req.thinking.type != "disabled" and grammar is None
    text = prompt_text(template, chat_messages(req), thinking=thinking, tools=tools)
    return Prompt(text, thinking, use_tools, grammar)


def forced_call(choice: ToolChoice | None) -> ForcedCall | None:
    """The call Anthropic's `tool_choice` forces: "any" tool, or the "tool" it names."""
    if choice is None or choice.type in ("auto", "none"):
        return None
    together = not choice.disable_parallel_tool_use
    if choice.type == "any":
        return ForcedCall(None, together)
    if not choice.name:
        raise ParamError("tool_choice.name", "tool_choice 'tool' names the tool to call.")
    return ForcedCall(choice.name, together)


def openai_tools(req: CountTokensRequest) -> list[dict[str, Any]]:
    """The request's tools as the OpenAI function tools the chat template lays out."""
    out = []
    for tool in req.tools or []:
        function: dict[str, Any] = {"name": tool.name, "parameters": tool.input_schema}
        if tool.description is not None:
            function["description"] = tool.description
        out.append({"type": "function", "function": function})
    return out


def chat_messages(req: CountTokensRequest) -> list[dict[str, Any]]:
    """System prompt and turns as OpenAI-style messages (role, content, tool_calls,
    tool_call_id, reasoning_content): the chat template's input."""
    out: list[dict[str, Any]] = []
    system = (
        req.system if isinstance(req.system, str) else "\n".join(b.text for b in req.system or [])
    )
    if system:
        out.append({"role": "system", "content": system})
    for i, message in enumerate(req.messages):
        out += _turn(i, message)
    return out


def _turn(i: int, message: MessageParam) -> list[dict[str, Any]]:
    if isinstance(message.content, str):
        return [{"role": message.role, "content": message.content}]
    if message.role == "assistant":
        return [_assistant_turn(i, message.content)]
    if message.role == "system":
        return [{"role": "system", "content": _system_text(i, message.content)}]
    return _user_turn(i, message.content)


def _system_text(i: int, blocks: list[Any]) -> str:
    """A system message between turns (Claude Code sends them): text blocks only."""
    for j, block in enumerate(blocks):
        if not isinstance(block, TextBlock):
            raise _unsupported(f"messages.{i}.content.{j}", block.type, "a system message")
    return "\n".join(block.text for block in blocks)


def _assistant_turn(i: int, blocks: list[Any]) -> dict[str, Any]:
    """An assistant turn: its text, its tool calls, and its thinking as reasoning (the
    template keeps that only for the turn in progress, as Qwen3 was trained)."""
    text, reasoning, calls = [], [], []
    for j, block in enumerate(blocks):
        if isinstance(block, TextBlock):
            text.append(block.text)
        elif isinstance(block, ThinkingBlock):
            reasoning.append(block.thinking)
        elif isinstance(block, ToolUseBlock):
            function = {"name": block.name, "arguments": block.input}
            calls.append({"id": block.id, "type": "function", "function": function})
        elif not isinstance(block, RedactedThinkingBlock):  # nothing to read in those
            raise _unsupported(f"messages.{i}.content.{j}", block.type, "an assistant turn")
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text)}
    if reasoning:
        message["reasoning_content"] = "\n".join(reasoning)
    if calls:
        message["tool_calls"] = calls
    return message


def _user_turn(i: int, blocks: list[Any]) -> list[dict[str, Any]]:
    """A user turn: each tool result becomes a `tool` message, text between them user
    messages, in the order given."""
    out: list[dict[str, Any]] = []
    text: list[str] = []
    for j, block in enumerate(blocks):
        if isinstance(block, TextBlock):
            text.append(block.text)
        elif isinstance(block, ToolResultBlock):
            if text:
                out.append({"role": "user", "content": "\n".join(text)})
                text = []
            content = _result_text(f"messages.{i}.content.{j}", block)
            out.append({"role": "tool", "tool_call_id": block.tool_use_id, "content": content})
        else:
            raise _unsupported(f"messages.{i}.content.{j}", block.type, "a user turn")
    if text or not out:
        out.append({"role": "user", "content": "\n".join(text)})
    return out


def _result_text(where: str, block: ToolResultBlock) -> str:
    """A tool result's text; an error result says so, so the model knows the call failed."""
    if isinstance(block.content, str):
        text = block.content
    else:
        parts = []
        for k, part in enumerate(block.content):
            if not isinstance(part, TextBlock):
                raise _unsupported(f"{where}.content.{k}", part.type, "a tool result")
            parts.append(part.text)
        text = "\n".join(parts)
    return f"Error: {text}" if block.is_error else text


def _unsupported(where: str, kind: str, place: str) -> ParamError:
    return ParamError(
        where, f"'{kind}' blocks are not supported in {place}: Qwen3-0.6B reads text only."
    )
