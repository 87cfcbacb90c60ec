"""OpenAI chat completions, the translation half: request → `ChatJob`, engine text → deltas
and chunks (reasoning apart, tool calls parsed), usage and timings.

Pure translation, no I/O: route.py holds the route and feeds engine events in;
it streams or folds what this returns. Checks shared with other APIs are in params.py.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from edge.chat.parts import AnswerSplitter, Part
from edge.chat.sampling import qwen_sampling
from edge.chat.template import ChatTemplate, soft_switch
from edge.chat.tools import ToolCall
from edge.engine import Finish, SamplingParams, ThinkingControl
from edge.errors import ParamError
from edge.server import logprobs
from edge.server.chat_completions.schema import ChatCompletionRequest
from edge.server.grammar import ForcedCall, answer_grammar, openai_forced_call
from edge.server.params import (
    parse_logit_bias,
    response_schema,
    stop_list,
    thinking_budget,
)
from edge.server.prompt import prompt_text
from edge.server.sse import DATA, END, dumps
from edge.server.usage import openai_finish


@dataclass
class ChatJob:
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


def build_job(
    req: ChatCompletionRequest,
    template: ChatTemplate,
    *,
    default_format: str,
    n_vocab: int | None = None,
) -> ChatJob:
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
    params = qwen_sampling(
        thinking,
        temperature=req.temperature,
        top_p=req.top_p,
        top_k=req.top_k,
        min_p=req.min_p,
        presence_penalty=req.presence_penalty,
        frequency_penalty=req.frequency_penalty,
        repeat_penalty=req.repeat_penalty,
        seed=req.seed,
        logit_bias=parse_logit_bias(req.logit_bias, n_vocab),
        max_tokens=req.max_completion_tokens or req.max_tokens,
        stop=stop_list(req.stop),
        json_schema=schema,
        grammar=grammar,
        logprobs=logprobs.chat_request(req.logprobs, req.top_logprobs),
    )
    fmt = req.reasoning_format or default_format
    return ChatJob(
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


class ChunkWriter:
    """Turns the answer's parts into OpenAI deltas: reasoning apart, tool calls whole."""

    def __init__(self, job: ChatJob, model: str) -> None:
        self.job, self.model = job, model
        self.parts = AnswerSplitter(tools=job.tools)
        self.content = ""
        self.reasoning = ""
        self.tool_calls: list[dict[str, Any]] = []
        self._inline_open = False

    @property
    def calls(self) -> int:
        """Tool calls so far."""
        return len(self.tool_calls)

    def text(self, text: str) -> list[dict[str, Any]]:
        """Deltas for a piece of generated text."""
        return self._deltas(self.parts.feed(text))

    def finish(self, reason: str) -> list[dict[str, Any]]:
        """Deltas for what the splitters still held at the end."""
        return self._deltas(self.parts.finish(reason))

    def _deltas(self, parts: list[Part]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for p in parts:
            if p.kind == "reasoning":
                out += self._reasoning(p.text)
            elif p.call is not None:
                out.append(self._tool_call(p.call))
            else:
                out += self._content(p.text)
        return out

    def _reasoning(self, text: str) -> list[dict[str, Any]]:
        self.reasoning += text
        if not self.job.return_reasoning or self.job.reasoning_format == "hidden":
            return []
        if self.job.reasoning_format == "inline":  # <think>…</think> kept in content
            if not self._inline_open:
                text, self._inline_open = "<think>\n" + text, True
            self.content += text
            return [{"content": text}]
        return [{"reasoning_content": text, "reasoning": text}]

    def _content(self, text: str) -> list[dict[str, Any]]:
        if self._inline_open:
            text, self._inline_open = "\n</think>\n\n" + text, False
        self.content += text
        return [{"content": text}]

    def _tool_call(self, call: ToolCall) -> dict[str, Any]:
        function = {"name": call.name, "arguments": call.arguments}
        entry = {"id": call.id, "type": "function", "function": function}
        self.tool_calls.append(entry)
        return {"tool_calls": [{"index": len(self.tool_calls) - 1, **entry}]}

    def finish_reason(self, reason: str) -> str:
        """OpenAI's finish reason for the engine's."""
        return "tool_calls" if self.calls else openai_finish(reason)


def timings(finish: Finish) -> dict[str, float]:
    """llama-server-style timings, for people tuning their setup."""
    u = finish.usage
    new = u.prompt_tokens - u.cached_tokens
    gen_ms = (finish.total - finish.ttft) * 1000
    return {
        "prompt_n": new,
        "prompt_ms": round(finish.ttft * 1000, 2),
        "prompt_per_second": round(new / finish.ttft, 2) if finish.ttft > 0 else 0.0,
        "predicted_n": u.completion_tokens,
        "predicted_ms": round(gen_ms, 2),
        "predicted_per_second": round(finish.decode_tps, 2),
    }


_quote = json.encoder.encode_basestring  # a str as a JSON string, the way dumps writes it


class ChunkBytes:
    """`chat.completion.chunk` events as SSE bytes, for the per-token path: the fixed part
    of the chunk is serialised once per request, so a token costs a string quote and a
    join. Byte for byte what `dumps(chunk(job, model, delta))` framed as SSE gives."""

    def __init__(self, job: ChatJob, model: str) -> None:
        head = dumps(chunk(job, model, {}))
        cut = head.index('"delta":') + len('"delta":')
        self._prefix = DATA + head[:cut].encode()
        self._suffix = head[cut + 2 :].encode() + END  # after the empty delta's "{}"

    def delta(self, d: dict[str, Any]) -> bytes:
        """One delta's chunk."""
        if len(d) == 1 and "content" in d:
            body = '{"content":' + _quote(d["content"]) + "}"
        elif (
            len(d) == 2
            and "reasoning_content" in d
            and d.get("reasoning") == d["reasoning_content"]
        ):
            text = _quote(d["reasoning_content"])
            body = '{"reasoning_content":' + text + ',"reasoning":' + text + "}"
        else:
            body = dumps(d)
        return self._prefix + body.encode() + self._suffix


def chunk(
    job: ChatJob, model: str, delta: dict[str, Any], finish_reason: str | None = None
) -> dict[str, Any]:
    """One `chat.completion.chunk`."""
    return {
        "id": job.id,
        "object": "chat.completion.chunk",
        "created": job.created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }
