"""Ollama's API, the request half of the translation: a chat or generate request → an
`OllamaSpec` (the prompt, Qwen's sampling from `options`, the thinking switch, `format`'s
grammar), and which model names this server answers to. Pure translation, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edge.chat.sampling import qwen_sampling
from edge.chat.template import ChatTemplate, soft_switch
from edge.engine import Job, SamplingParams, ThinkingControl
from edge.errors import NotFoundError, ParamError
from edge.server.grammar import answer_grammar
from edge.server.ollama.schema import (
    Format,
    Generation,
    OllamaChatRequest,
    OllamaGenerateRequest,
    OllamaMessage,
    OllamaOptions,
)
from edge.server.params import check_text, thinking_budget
from edge.server.prompt import prompt_text

# The names Ollama's library gives Qwen3-0.6B: people coming from Ollama have them in their
# settings (Home Assistant, Open WebUI, `ollama run qwen3:0.6b`).
ALIASES = ("qwen3:0.6b",)


@dataclass
class OllamaSpec:
    """Everything needed to run and answer one chat or generate request."""

    prompt_text: str
    params: SamplingParams
    control: ThinkingControl
    thinking: bool
    tools: bool = False
    raw: bool = False  # /api/generate's raw prompt: the text is the answer, nothing split off

    def job(self, prompt: list[int]) -> Job:
        """The engine's job for this request, once its prompt is tokenized."""
        return Job(prompt, self.params, self.control)


# --- model names ---------------------------------------------------------------------------


def listed_name(model_id: str) -> str:
    """The name /api/tags lists: Ollama's `name:tag`, with the `latest` tag when the id has
    none (Open WebUI adds `:latest` to a bare name before it looks the model up)."""
    return model_id if ":" in model_id else f"{model_id}:latest"


def serves(name: str | None, model_id: str) -> bool:
    """Whether `name` means the served model: no name, the id (with or without `:latest`),
    or Ollama's own name for Qwen3-0.6B with any tag of that size (`qwen3:0.6b-q8_0`)."""
    wanted = (name or "").strip().lower()
    if not wanted:
        return True
    own = model_id.lower()
    if wanted in (own, listed_name(own)):
        return True
    return any(wanted == alias or wanted.startswith(alias + "-") for alias in ALIASES)


def check_model(name: str | None, model_id: str) -> None:
    """A 404 for a name that is clearly another model, as Ollama answers it."""
    if not serves(name, model_id):
        raise NotFoundError(
            f"model '{name}' not found.",
            f"This server serves '{listed_name(model_id)}' (also as {', '.join(ALIASES)}).",
        )


# --- chat and generate ---------------------------------------------------------------------


def is_load(req: OllamaChatRequest | OllamaGenerateRequest) -> bool:
    """An empty request: clients send it to load a model (or, with keep_alive 0, to unload
    it) and expect an answer at once, with no generation."""
    if isinstance(req, OllamaChatRequest):
        return not req.messages
    return not req.prompt and not req.suffix


def build_chat_spec(req: OllamaChatRequest, template: ChatTemplate) -> OllamaSpec:
    """Validate a chat request and turn it into a prompt, sampling and thinking control."""
    check_common(req)
    messages = [chat_message(i, m) for i, m in enumerate(req.messages)]
    grammar, schema = format_grammar(req.format)
    use_tools = bool(req.tools)
    thinking = thinking_wanted(req.think, messages) and grammar is None
    text = prompt_text(
        template, messages, thinking=thinking, tools=req.tools if use_tools else None
    )
    return OllamaSpec(
        prompt_text=text,
        params=sampling(thinking, req.options, grammar, schema),
        control=ThinkingControl(budget=thinking_budget(req.budget_spellings())),
        thinking=thinking,
        tools=use_tools,
    )


def build_generate_spec(req: OllamaGenerateRequest, template: ChatTemplate) -> OllamaSpec:
    """Validate a generate request: `prompt` (and `system`) through the chat template, or
    with `raw` the prompt as it is. What this server cannot do is refused by name."""
    check_common(req)
    if req.suffix:
        raise ParamError(
            "suffix", "Fill-in-the-middle ('suffix') needs a code model; Qwen3 has no FIM."
        )
    if req.template:
        raise ParamError(
            "template", "A custom 'template' is not supported: the GGUF's chat template is used."
        )
    if req.context:
        raise ParamError(
            "context", "'context' (token ids of an earlier answer) is not supported: use /api/chat."
        )
    if req.images:
        raise ParamError("images", "Images are not supported: Qwen3-0.6B reads text only.")
    grammar, schema = format_grammar(req.format)
    budget = thinking_budget(req.budget_spellings())
    if req.raw:
        check_text(req.prompt, "prompt")
        params = sampling(False, req.options, grammar, schema)
        return OllamaSpec(req.prompt, params, ThinkingControl(budget=budget), False, raw=True)
    messages = [{"role": "system", "content": req.system}] if req.system else []
    messages.append({"role": "user", "content": req.prompt})
    thinking = thinking_wanted(req.think, messages) and grammar is None
    return OllamaSpec(
        prompt_text=prompt_text(template, messages, thinking=thinking, tools=None),
        params=sampling(thinking, req.options, grammar, schema),
        control=ThinkingControl(budget=budget),
        thinking=thinking,
    )


def check_common(req: Generation) -> None:
    """What both generation routes refuse."""
    if req.logprobs:
        raise ParamError(
            "logprobs", "Log-probabilities are not supported on /api/; use /v1/chat/completions."
        )


def thinking_wanted(think: object, messages: list[dict[str, Any]]) -> bool:
    """`think` (true, false, or a level, which turns it on); unset, a `/think` or
    `/no_think` in the last user message, else Qwen3's default: on."""
    if think is not None:
        return think is not False
    switch = soft_switch(messages)
    return True if switch is None else switch


def format_grammar(fmt: Format | None) -> tuple[str | None, dict[str, Any] | None]:
    """`format`: "json" (any JSON object) or a JSON schema → (grammar, schema); the same
    checks and conversion as every API's JSON answers (`grammar.json_grammar`)."""
    if not fmt:
        return None, None
    schema = {"type": "object"} if fmt == "json" else fmt
    assert isinstance(schema, dict)
    return answer_grammar(schema, "format", [], None), schema


def sampling(
    thinking: bool,
    options: OllamaOptions | None,
    grammar: str | None,
    schema: dict[str, Any] | None,
) -> SamplingParams:
    """Qwen's sampling for the mode, with what `options` sets."""
    o = options if options is not None else OllamaOptions.model_validate({})
    stops = list(o.stop or [])
    for stop in stops:
        check_text(stop, "options.stop")
    return qwen_sampling(
        thinking,
        o,
        max_tokens=o.num_predict if o.num_predict is not None and o.num_predict > 0 else None,
        stop=stops,
        seed=o.seed,
        repeat_penalty=1.0 if o.repeat_penalty is None else o.repeat_penalty,
        presence_penalty=o.presence_penalty or 0.0,
        frequency_penalty=o.frequency_penalty or 0.0,
        json_schema=schema,
        grammar=grammar,
    )


def chat_message(i: int, m: OllamaMessage) -> dict[str, Any]:
    """An Ollama message as the OpenAI-style message the chat template reads: `thinking`
    as `reasoning_content`, tool calls with their arguments object."""
    if m.images:
        raise ParamError(
            f"messages.{i}.images", "Images are not supported: Qwen3-0.6B reads text only."
        )
    out: dict[str, Any] = {"role": m.role, "content": m.content or ""}
    if m.thinking:
        out["reasoning_content"] = m.thinking
    if m.tool_calls:
        out["tool_calls"] = [
            {
                "id": call.id or f"call_{i}_{j}",
                "type": "function",
                "function": {"name": call.function.name, "arguments": call.function.arguments},
            }
            for j, call in enumerate(m.tool_calls)
        ]
    if m.role == "tool" and m.tool_name:
        out["name"] = m.tool_name
    return out
