"""OpenAI chat completions on top of the engine: request → job, events → chunks or one response.

Pure translation, no I/O: the routes feed engine events in and send out what this returns.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from edge.chat.reasoning import ThinkSplitter
from edge.chat.template import ChatTemplate, sampling_defaults, soft_switch
from edge.chat.tools import ToolCallSplitter
from edge.engine import Finish, SamplingParams, ThinkingControl
from edge.engine import schema_grammar as engine_schema_grammar
from edge.errors import ParamError, UsageError
from edge.server.schema import ChatCompletionRequest


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
    if req.logprobs:
        raise ParamError("logprobs", "logprobs are not supported yet.")
    if req.tool_choice not in (None, "auto", "none"):
        raise ParamError("tool_choice", "tool_choice supports 'auto' and 'none'.")
    schema = _response_schema(req)
    thinking = thinking_wanted(req, default=True) and schema is None  # a grammar cannot think
    use_tools = bool(req.tools) and req.tool_choice != "none"
    messages = [_message_dict(m) for m in req.messages]
    text = template.render(
        messages, enable_thinking=thinking, tools=req.tools if use_tools else None
    )
    check_text(text, "messages")
    base = sampling_defaults(thinking)
    params = SamplingParams(
        temperature=_pick(req.temperature, base["temperature"]),
        top_p=_pick(req.top_p, base["top_p"]),
        top_k=int(_pick(req.top_k, base["top_k"])),
        min_p=_pick(req.min_p, base["min_p"]),
        presence_penalty=req.presence_penalty,
        frequency_penalty=req.frequency_penalty,
        repeat_penalty=req.repeat_penalty,
        seed=req.seed,
        logit_bias=parse_logit_bias(req.logit_bias, n_vocab),
        max_tokens=req.max_completion_tokens or req.max_tokens,
        stop=[req.stop] if isinstance(req.stop, str) else list(req.stop or []),
        json_schema=schema,
    )
    fmt = req.reasoning_format or default_format
    return ChatJob(
        prompt_text=text,
        params=params,
        control=ThinkingControl(budget=req.thinking_budget, loop_guard=req.loop_guard),
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


def check_text(text: str, param: str) -> None:
    """Refuse text that is not valid Unicode: JSON's "\\ud800" escapes decode to lone
    surrogates, which have no UTF-8 and would fail deep in the tokenizer."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ParamError(param, f"The text holds a lone surrogate (at {exc.start}): not valid Unicode.") from None  # fmt: skip


def _pick(value: float | None, default: float) -> float:
    return default if value is None else value


def _message_dict(m: Any) -> dict[str, Any]:
    d = m.model_dump(exclude_none=True)
    if d["role"] == "developer":  # OpenAI's newer name for the system role
        d["role"] = "system"
    return d


def parse_logit_bias(raw: dict[str, float] | None, n_vocab: int | None = None) -> dict[int, float]:
    """OpenAI's logit_bias (string token ids, values -100…100) as llama.cpp wants it.

    Ids are checked against the vocabulary: llama.cpp indexes its logits with them
    unchecked, so an id past the end crashes the whole server.
    """
    out = {}
    for key, value in (raw or {}).items():
        if not _TOKEN_ID.fullmatch(key):
            raise ParamError(
                "logit_bias", f"logit_bias keys are token ids; '{key[:40]}' is not one."
            )
        token = int(key)
        if n_vocab is not None and token >= n_vocab:
            raise ParamError(
                "logit_bias", f"Token id {token} is not in the vocabulary (0…{n_vocab - 1})."
            )
        if not -100 <= value <= 100:  # also refuses NaN
            raise ParamError("logit_bias", f"logit_bias values go from -100 to 100, not {value}.")
        out[token] = float(value)  # ±100 bans or forces a token, as with OpenAI
    return out


_TOKEN_ID = re.compile(r"[0-9]{1,10}")


def _response_schema(req: ChatCompletionRequest) -> dict[str, Any] | None:
    rf = req.response_format
    if rf is None or rf.type == "text":
        return None
    if rf.type == "json_object":
        return {"type": "object"}
    schema = (rf.json_schema or {}).get("schema")
    if not isinstance(schema, dict):
        raise ParamError("response_format", "json_schema needs a 'schema' object.")
    _check_bounds(schema)
    if _EMPTY_RULE.search(_schema_grammar(schema)):
        # An empty enum/anyOf/type list: no text can match, and llama.cpp's grammar
        # sampler crashes the whole server on such a grammar instead of failing.
        raise ParamError("response_format", "The JSON schema matches no value at all.")
    return schema


_EMPTY_RULE = re.compile(r"::=[ \t]*$", re.MULTILINE)


# The grammar converter spells repetitions out, so its output (time and memory) grows with
# these bounds: {"minLength": 10**9} would take the whole server down.
_BOUNDS = ("minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties")
MAX_REPEAT = 10_000
_REPEAT = re.compile(r"\{\s*(\d+)\s*(?:,\s*(\d*)\s*)?\}")


def _check_bounds(schema: Any, depth: int = 0) -> None:
    """Refuse repetition bounds the grammar converter could not spell out."""
    if depth > 64:
        raise ParamError("response_format", "The JSON schema is nested too deeply.")
    if isinstance(schema, list):
        for item in schema:
            _check_bounds(item, depth + 1)
        return
    if not isinstance(schema, dict):
        return
    for key, value in schema.items():
        if key in _BOUNDS and isinstance(value, (int, float)) and value > MAX_REPEAT:
            raise ParamError("response_format", f"'{key}' over {MAX_REPEAT} is not supported.")
        if key == "pattern" and isinstance(value, str):
            for low, high in _REPEAT.findall(value):
                if max(len(low), len(high)) > 5 or max(int(low), int(high or 0)) > MAX_REPEAT:
                    raise ParamError("response_format", f"Repetitions over {MAX_REPEAT} are not supported in 'pattern'.")  # fmt: skip
        _check_bounds(value, depth + 1)


def _schema_grammar(schema: dict[str, Any]) -> str:
    try:
        return engine_schema_grammar(schema)
    except UsageError as exc:
        raise ParamError("response_format", exc.message) from None


class ChunkWriter:
    """Turns engine text into OpenAI deltas: reasoning apart, tool calls parsed."""

    def __init__(self, job: ChatJob, model: str) -> None:
        self.job, self.model = job, model
        self.think = ThinkSplitter()
        self.tools = ToolCallSplitter() if job.tools else None
        self.calls = 0
        self.content = ""
        self.reasoning = ""
        self.tool_calls: list[dict[str, Any]] = []
        self._inline_open = False

    def text(self, text: str) -> list[dict[str, Any]]:
        """Deltas for a piece of generated text."""
        return self._deltas(self.think.feed(text))

    def finish(self, reason: str) -> list[dict[str, Any]]:
        """Deltas for what the splitters still held at the end."""
        deltas = self._deltas(self.think.finish("stop" if reason == "stop" else "length"))
        if self.tools is not None:
            deltas += self._tool_deltas(self.tools.finish())
        return deltas

    def _deltas(self, pieces: list[Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for p in pieces:
            if p.kind == "reasoning":
                out += self._reasoning(p.text)
            elif self.tools is not None:
                out += self._tool_deltas(self.tools.feed(p.text))
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

    def _tool_deltas(self, pieces: list[Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for p in pieces:
            if p.kind == "content":
                out += self._content(p.text)
                continue
            call = {"id": p.call.id, "type": "function",
                    "function": {"name": p.call.name, "arguments": p.call.arguments}}  # fmt: skip
            self.tool_calls.append(call)
            out.append({"tool_calls": [{"index": self.calls, **call}]})
            self.calls += 1
        return out

    def finish_reason(self, reason: str) -> str:
        """OpenAI's finish reason for the engine's."""
        return "tool_calls" if self.calls else openai_finish(reason)


def usage(finish: Finish) -> dict[str, Any]:
    """OpenAI usage, with reasoning and cached tokens in the details objects."""
    u = finish.usage
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
    }


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


def dumps(payload: Any) -> str:
    """Compact JSON, non-ASCII kept as is: the wire format of every chunk."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


_quote = json.encoder.encode_basestring  # a str as a JSON string, the way dumps writes it


class ChunkBytes:
    """`chat.completion.chunk` events as SSE bytes, for the per-token path: the fixed part
    of the chunk is serialised once per request, so a token costs a string quote and a
    join. Byte for byte what `dumps(chunk(job, model, delta))` framed as SSE gives."""

    def __init__(self, job: ChatJob, model: str) -> None:
        head = dumps(chunk(job, model, {}))
        cut = head.index('"delta":') + len('"delta":')
        self._prefix = b"data: " + head[:cut].encode()
        self._suffix = head[cut + 2 :].encode() + b"\n\n"  # after the empty delta's "{}"

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


def openai_finish(reason: str) -> str:
    """OpenAI's finish reason for the engine's ("cancelled" and "length" both cut the text)."""
    return "stop" if reason == "stop" else "length"
