"""OpenAI chat completions, the request half of the translation: request → `ChatSpec` (the
prompt, Qwen's sampling, the thinking switch in every dialect clients send, the output
options). Pure translation, no I/O: route.py tokenizes the prompt and runs its job."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from edge.chat.template import ChatTemplate, soft_switch
from edge.engine import Job, SamplingParams, ThinkingControl
from edge.errors import ParamError
from edge.server import logprobs
from edge.server.chat_completions.schema import ChatCompletionRequest
from edge.server.grammar import ForcedCall, answer_grammar, openai_forced_call
from edge.server.params import (
    openai_sampling,
    response_schema,
    thinking_budget,
)
from edge.server.prompt import prompt_text


@dataclass
class ChatSpec:
    """Everything needed to run and answer one chat request."""

    prompt_text: str
    params: SamplingParams
    control: ThinkingControl
    thinking: bool
    reasoning_format: str  # "separate" | "inline" | "hidden"
    return_reasoning: bool
    tools: bool
    include_usage: bool
    id: str = field(default_factory=lambda: "chatcmpl-" + secrets.token_hex(12))
    created: int = field(default_factory=lambda: int(time.time()))

    def job(self, prompt: list[int]) -> Job:
        """The engine's job for this request, once its prompt is tokenized."""
        return Job(prompt, self.params, self.control)


def thinking_wanted(req: ChatCompletionRequest, default: bool) -> bool:
    """Every dialect clients use to switch Qwen3's thinking, most specific first."""
    kwargs = req.chat_template_kwargs or {}
    if isinstance(kwargs.get("enable_thinking"), bool):
        return bool(kwargs["enable_thinking"])
    if req.enable_thinking is not None:
        return req.enable_thinking
    if req.think is not None:
        return req.think
    if req.reasoning_effort is not None:
        return req.reasoning_effort.lower() not in ("none", "off", "disabled")
    switch = soft_switch([m.model_dump() for m in req.messages])
    return default if switch is None else switch


def build_spec(
    req: ChatCompletionRequest,
    template: ChatTemplate,
    *,
    default_format: str,
    n_vocab: int | None = None,
) -> ChatSpec:
    """Validate a request and turn it into a prompt, sampling params and output options."""
    if req.n != 1:
        raise ParamError("n", "Only n=1 is supported: one model serves one answer per request.")
    schema = response_schema(req.response_format)
    forced = forced_call(req.tool_choice, req.parallel_tool_calls)
    use_tools = bool(req.tools) and req.tool_choice != "none"
    grammar = answer_grammar(schema, "response_format", req.tools or [], forced)
    thinking = thinking_wanted(req, default=True) and grammar is None  # it shapes the whole answer
    messages = [_message_dict(m) for m in req.messages]
    text = prompt_text(
        template, messages, thinking=thinking, tools=req.tools if use_tools else None
    )
    params = openai_sampling(
        thinking,
        req,
        n_vocab,
        max_tokens=req.max_completion_tokens or req.max_tokens,
        json_schema=schema,
        grammar=grammar,
        logprobs=logprobs.chat_request(req.logprobs, req.top_logprobs),
    )
    fmt = req.reasoning_format or default_format
    return ChatSpec(
        prompt_text=text,
        params=params,
        control=ThinkingControl(budget=budget_of(req), loop_guard=req.loop_guard),
        thinking=thinking,
        reasoning_format="inline"
        if fmt in ("inline", "none")
        else "hidden"
        if fmt == "hidden"
        else "separate",
        return_reasoning=req.return_reasoning,
        tools=use_tools,
        include_usage=bool(req.stream_options and req.stream_options.include_usage),
    )


def forced_call(choice: str | dict[str, Any] | None, parallel: bool | None) -> ForcedCall | None:
    """The call chat's `tool_choice` forces: "required" (any tool) or
    `{"type": "function", "function": {"name": …}}` (that one); None for "auto"/"none"."""
    function = choice.get("function") if isinstance(choice, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    named_form = '{"type": "function", "function": {"name": …}}'
    return openai_forced_call(choice, parallel, name, named_form)


def budget_of(req: ChatCompletionRequest) -> int | None:
    """The thinking budget, by whichever name the client used."""
    return thinking_budget(req.budget_spellings())


def _message_dict(m: Any) -> dict[str, Any]:
    d = m.model_dump(exclude_none=True)
    if d["role"] == "developer":  # OpenAI's newer name for the system role
        d["role"] = "system"
    return d
