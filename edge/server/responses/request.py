"""OpenAI Responses, the request half of the translation: request → `ResponsesSpec` (chat
messages for the template, Qwen's sampling, the settings the response repeats).

Pure translation, no I/O: route.py holds the routes, the store and the engine events;
answer.py turns the answer into output items and events. Input items (with a
previous response's items first) become OpenAI chat messages, so the prompt is the one
chat completions would render for the same conversation.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from edge.chat.sampling import qwen_sampling
from edge.chat.template import ChatTemplate, soft_switch
from edge.engine import Job, SamplingParams, ThinkingControl
from edge.errors import ParamError
from edge.server import logprobs
from edge.server.grammar import ForcedCall, answer_grammar, openai_forced_call
from edge.server.params import check_text, response_schema, thinking_budget
from edge.server.prompt import prompt_text
from edge.server.responses.schema import ResponsesRequest, TextParam
from edge.server.wire import ResponseFormat

# reasoning.effort → (thinking on, thinking budget in tokens; None: until the model stops).
# Without `reasoning` the model's default holds: thinking on, unbounded (or Qwen3's
# /think and /no_think switches in the last user message).
EFFORTS: dict[str, tuple[bool, int | None]] = {
    "none": (False, None),
    "minimal": (False, None),
    "low": (True, 512),
    "medium": (True, 2048),
    "high": (True, None),
    "xhigh": (True, None),
}

# Content parts that carry text, in input messages and in our own output sent back.
TEXT_PARTS = ("input_text", "output_text", "text", "refusal")


@dataclass
class ResponsesSpec:
    """Everything needed to run one Responses request, answer it and store it."""

    prompt_text: str
    params: SamplingParams
    control: ThinkingControl
    tools: bool
    namespaces: dict[str, str]  # function name → the namespace tool it came in
    items: list[dict[str, Any]]  # the conversation: previous turns' items, then this input
    echo: dict[str, Any]  # the request's settings, as the response object repeats them
    store: bool
    left_out: list[str] = field(default_factory=list)  # built-in tool types, not offered
    id: str = field(default_factory=lambda: "resp_" + secrets.token_hex(24))
    created_at: int = field(default_factory=lambda: int(time.time()))

    def job(self, prompt: list[int]) -> Job:
        """The engine's job for this request, once its prompt is tokenized."""
        return Job(prompt, self.params, self.control)


def build_spec(
    req: ResponsesRequest, template: ChatTemplate, previous: list[dict[str, Any]] | None = None
) -> ResponsesSpec:
    """Validate a request and turn it into a prompt (after `previous`, the earlier turns'
    items), sampling params and the response's settings."""
    refuse_unsupported(req)
    check_echoed(req)
    items = [*(previous or []), *input_items(req.input)]
    messages = to_messages(items)
    if req.instructions:  # this request's only: instructions are not carried over
        messages.insert(0, {"role": "system", "content": req.instructions})
    if not messages:
        raise ParamError("input", "There is nothing to answer: send some input.")
    tools, namespaces, left_out = function_tools(req.tools)
    use_tools = bool(tools) and req.tool_choice != "none"
    schema = text_schema(req.text)
    forced = forced_call(req.tool_choice, req.parallel_tool_calls, tools)
    grammar = answer_grammar(schema, "text.format", tools, forced)
    thinking, budget = thinking_of(req, messages)
    thinking = thinking and grammar is None  # a grammar over the whole answer: no thinking
    try:
        text = prompt_text(
            template, messages, thinking=thinking, tools=tools if use_tools else None
        )
    except ParamError as exc:  # the prompt holds invalid text: here it came from the input
        exc.param = "input"
        raise
    params = qwen_sampling(
        thinking,
        req,  # no top_k or min_p in the Responses API: Qwen's
        max_tokens=req.max_output_tokens,
        json_schema=schema,
        grammar=grammar,
    )
    params.logprobs = logprobs_of(req)
    return ResponsesSpec(
        prompt_text=text,
        params=params,
        control=ThinkingControl(budget=budget if thinking else None),
        tools=use_tools,
        namespaces=namespaces,
        items=items,
        echo=echo(req, params),
        store=req.store,
        left_out=left_out,
    )


def refuse_unsupported(req: ResponsesRequest) -> None:
    """Refuse, by name, what this server cannot do rather than quietly ignore it."""
    if req.background:
        raise ParamError("background", "Background responses are not supported: use stream.")
    if req.n not in (None, 1):
        raise ParamError("n", "Only n=1 is supported: one model serves one answer per request.")
    if req.conversation is not None:
        raise ParamError(
            "conversation", "Conversations are not supported: use previous_response_id."
        )
    if req.prompt is not None:
        raise ParamError("prompt", "Stored prompt templates are not supported: send input.")


def forced_call(
    choice: str | dict[str, Any] | None, parallel: bool | None, tools: list[dict[str, Any]]
) -> ForcedCall | None:
    """The call Responses' `tool_choice` forces: "required" (any function tool) or
    `{"type": "function", "name": …}` (that one); None for "auto"/"none". Forcing a
    built-in tool, or "required" with none but built-in ones, is refused by name."""
    kind = choice.get("type") if isinstance(choice, dict) else None
    if built_in(kind):
        message = f"'{kind}' is a built-in tool this server cannot run: force a function tool."
        raise ParamError("tool_choice", message)
    if choice == "required" and not tools:
        message = "tool_choice 'required' needs a function tool: built-in tools cannot run here."
        raise ParamError("tool_choice", message)
    name = choice.get("name") if isinstance(choice, dict) else None
    return openai_forced_call(choice, parallel, name, '{"type": "function", "name": …}')


def check_echoed(req: ResponsesRequest) -> None:
    """Fields the response object repeats but the prompt does not hold must be valid
    Unicode too, or the answer (and the store) could not be written as UTF-8."""
    fields = req.model_dump(include={"metadata", "user", "tools", "text"}, by_alias=True)
    for name, value in fields.items():
        check_text(json.dumps(value, ensure_ascii=False), name)


def thinking_of(req: ResponsesRequest, messages: list[dict[str, Any]]) -> tuple[bool, int | None]:
    """Thinking on or off and its budget, from `reasoning.effort` (see EFFORTS); our
    `thinking_budget` extension overrides the effort's budget."""
    effort = req.reasoning.effort if req.reasoning else None
    if effort is None:
        switch = soft_switch(messages)
        thinking, budget = (True if switch is None else switch), None
    elif effort.lower() in EFFORTS:
        thinking, budget = EFFORTS[effort.lower()]
    else:
        raise ParamError("reasoning.effort", f"reasoning.effort is one of {', '.join(EFFORTS)}.")
    explicit = thinking_budget(req.budget_spellings())
    return thinking, budget if explicit is None else explicit


def text_schema(text: TextParam | None) -> dict[str, Any] | None:
    """The JSON schema `text.format` asks the answer to follow, checked as chat's
    `response_format` is."""
    fmt = text.format if text else None
    if fmt is None or fmt.type == "text":
        return None
    spec = None if fmt.type == "json_object" else {"name": fmt.name, "schema": fmt.schema_}
    try:
        return response_schema(ResponseFormat(type=fmt.type, json_schema=spec))
    except ParamError as exc:
        exc.param = "text.format"
        raise


# OpenAI's built-in tool types: run on OpenAI's servers (web_search, file_search, ...) or by
# the client for OpenAI's own models (computer_use, local_shell, shell, apply_patch, custom
# grammar tools). The model here can call none of them. Codex CLI sends web_search unless
# the user turns it off; refusing it would refuse Codex on its default configuration.
BUILT_IN_TOOLS = (
    "web_search",  # and web_search_preview, web_search_preview_2025_03_11
    "file_search",
    "code_interpreter",
    "image_generation",
    "computer_use",  # and computer_use_preview
    "mcp",
    "local_shell",
    "shell",
    "apply_patch",
    "custom",
)


def built_in(kind: object) -> bool:
    """Whether a tool type is one of OpenAI's built-in tools (BUILT_IN_TOOLS)."""
    return isinstance(kind, str) and kind.startswith(BUILT_IN_TOOLS)


def function_tools(
    tools: list[dict[str, Any]] | None,
) -> tuple[list[dict[str, Any]], dict[str, str], list[str]]:
    """Responses' flat function tools as chat's (`{"type": "function", "function": ...}`),
    which the chat template renders; the namespace of each function that came in one
    (Codex CLI groups tools so): the model sees them flat, its calls name the namespace;
    and the built-in tools left out, by type (the model cannot call them)."""
    out: list[dict[str, Any]] = []
    namespaces: dict[str, str] = {}
    left_out: list[str] = []
    for i, tool in enumerate(tools or []):
        where = f"tools[{i}]"
        if isinstance(tool, dict) and built_in(tool.get("type")):
            left_out.append(str(tool["type"]))
            continue
        if tool.get("type") != "namespace":
            out.append(_function_tool(tool, where))
            continue
        namespace, inner = _string(tool, "name", where), tool.get("tools")
        if not isinstance(inner, list):
            raise ParamError(f"{where}.tools", "A namespace holds a list of function tools.")
        for j, member in enumerate(inner):
            out.append(_function_tool(member, f"{where}.tools[{j}]"))
            namespaces[out[-1]["function"]["name"]] = namespace
    return out, namespaces, left_out


def _function_tool(tool: Any, where: str) -> dict[str, Any]:
    kind = tool.get("type") if isinstance(tool, dict) else None
    if kind != "function":
        message = f"Tool type '{kind}' is not supported: only 'function' tools are."
        raise ParamError(f"{where}.type", message)
    name, parameters = tool.get("name"), tool.get("parameters")
    if not isinstance(name, str) or not name:
        raise ParamError(f"{where}.name", "A function tool needs a 'name' string.")
    if parameters is not None and not isinstance(parameters, dict):
        raise ParamError(f"{where}.parameters", "'parameters' is a JSON schema object.")
    function = {"name": name, "description": tool.get("description"), "parameters": parameters}
    return {"type": "function", "function": {k: v for k, v in function.items() if v}}


def input_items(value: str | list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The request's input as a list of items (a string is one user message)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    return list(value)


def to_messages(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Input items as OpenAI chat messages, for the chat template."""
    conversation = _Conversation()
    for i, item in enumerate(items):
        conversation.add(item, f"input[{i}]")
    return conversation.messages


class _Conversation:
    """Chat messages built item by item. A function call joins the assistant message
    before it (one turn: text, then calls); reasoning sent back goes with the assistant
    message that follows it, and Qwen3's template keeps it only where it was trained to
    (a tool-calling turn in progress), dropping it from earlier turns."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.reasoning: str | None = None

    def add(self, item: Any, where: str) -> None:
        if not isinstance(item, dict):
            raise ParamError(where, "An input item is an object.")
        kind = item.get("type", "message")
        if kind == "message":
            self.message(item, where)
        elif kind == "function_call":
            self.function_call(item, where)
        elif kind == "function_call_output":
            output = _text_of(item.get("output"), f"{where}.output")
            call_id = _string(item, "call_id", where)
            self._append({"role": "tool", "tool_call_id": call_id, "content": output})
        elif kind == "reasoning":
            # Ours carry the thinking in both; others may send the summary alone.
            self.reasoning = _reasoning_text(item.get("content")) or _reasoning_text(
                item.get("summary")
            )
        else:
            raise ParamError(f"{where}.type", f"Input items of type '{kind}' are not supported.")

    def message(self, item: dict[str, Any], where: str) -> None:
        role = item.get("role")
        if role not in ("user", "system", "developer", "assistant"):
            raise ParamError(
                f"{where}.role", "A message's role is user, system, developer or assistant."
            )
        content = _text_of(item.get("content"), f"{where}.content")
        if role == "assistant":
            self._assistant({"content": content})
        else:
            self._append({"role": "system" if role == "developer" else role, "content": content})

    def function_call(self, item: dict[str, Any], where: str) -> None:
        name, arguments = _string(item, "name", where), _string(item, "arguments", where)
        call = {
            "id": _string(item, "call_id", where),
            "type": "function",
            "function": {"name": name, "arguments": arguments},
        }
        last = self.messages[-1] if self.messages else None
        if last is not None and last["role"] == "assistant" and self.reasoning is None:
            last.setdefault("tool_calls", []).append(call)
        else:
            self._assistant({"content": "", "tool_calls": [call]})

    def _assistant(self, fields: dict[str, Any]) -> None:
        message = {"role": "assistant", **fields}
        if self.reasoning:
            message["reasoning_content"] = self.reasoning
        self.reasoning = None
        self.messages.append(message)

    def _append(self, message: dict[str, Any]) -> None:
        self.reasoning = None
        self.messages.append(message)


def _reasoning_text(content: Any) -> str:
    """The text of a reasoning item's parts sent back (ours carry it; others may not)."""
    parts = content if isinstance(content, list) else []
    return "".join(
        p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str)
    )


def _string(item: dict[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str):
        raise ParamError(f"{where}.{key}", f"'{key}' must be a string.")
    return value


def _text_of(content: Any, where: str) -> str:
    """A string, or text parts joined by newlines (as chat's content parts are)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise ParamError(where, "Content is a string or a list of text parts.")
    texts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        text = part.get("text", part.get("refusal")) if isinstance(part, dict) else None
        if kind not in TEXT_PARTS or not isinstance(text, str):
            message = f"Content parts of type '{kind}' are not supported: Qwen3 reads text only."
            raise ParamError(f"{where}[{j}]", message)
        texts.append(text)
    return "\n".join(texts)


LOGPROBS = "message.output_text.logprobs"  # the `include` value that asks for them


def logprobs_of(req: ResponsesRequest) -> int | None:
    """The answer's logprobs: asked by `include` or by `top_logprobs` (0–20 alternatives
    each); None for none."""
    top = logprobs.top_count(req.top_logprobs, "top_logprobs")
    wanted = LOGPROBS in (req.include or []) or req.top_logprobs is not None
    return top if wanted else None


def echo(req: ResponsesRequest, params: SamplingParams) -> dict[str, Any]:
    """The request's settings as the response object repeats them."""
    fmt = req.text.format if req.text and req.text.format else None
    return {
        "instructions": req.instructions,
        "max_output_tokens": req.max_output_tokens,
        "metadata": req.metadata or {},
        "parallel_tool_calls": True if req.parallel_tool_calls is None else req.parallel_tool_calls,
        "previous_response_id": req.previous_response_id,
        "reasoning": {"effort": req.reasoning.effort if req.reasoning else None, "summary": None},
        "store": req.store,
        "temperature": params.temperature,
        "text": {
            "format": fmt.model_dump(by_alias=True, exclude_none=True) if fmt else {"type": "text"}
        },
        "tool_choice": req.tool_choice or "auto",
        "tools": req.tools or [],
        "top_p": params.top_p,
        "top_logprobs": req.top_logprobs,
        "truncation": "disabled",
        "user": req.user,
    }
