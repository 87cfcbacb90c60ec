"""Forced tool calls on a random-weight model: whatever the weights, every answer the grammar
lets through is Qwen3 tool-call blocks whose arguments validate against the tool's schema,
or an honest "length" when max_tokens cut it first.

One engine for the module; the seeds vary per request (a model per seed would cost minutes).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import jsonschema

from edge.chat.parts import AnswerSplitter
from edge.chat.template import ChatTemplate
from edge.config import Settings
from edge.engine import Engine, Finish, SamplingParams, TokenEvent
from edge.engine.plan import make_plan, read_model_info
from edge.server.grammar import ForcedCall, tool_call_grammar
from tests.support.slow import slow_fixture

ORDER = {
    "name": "place_order",
    "parameters": {
        "type": "object",
        "properties": {
            "item": {"type": "string", "maxLength": 6},
            "size": {"type": "string", "enum": ["S", "M", "L"]},
            "quantity": {"type": "integer"},
            "express": {"type": "boolean"},
        },
        "required": ["item", "size"],
    },
}
ROUTE = {
    "name": "plan_route",
    "parameters": {
        "type": "object",
        "properties": {
            "stops": {
                "type": "array",
                "items": {"$ref": "#/$defs/Point"},
                "minItems": 1,
                "maxItems": 2,
            },
            "avoid": {"type": "array", "items": {"enum": ["tolls", "ferries"]}, "maxItems": 2},
        },
        "required": ["stops"],
        "$defs": {
            "Point": {
                "type": "object",
                "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}},
                "required": ["lat", "lon"],
            }
        },
    },
}
NOTE = {
    "name": "set_note",
    "parameters": {
        "type": "object",
        "properties": {
            "meta": {
                "type": "object",
                "properties": {"pinned": {"type": "boolean"}, "color": {"enum": ["red", None]}},
                "required": ["pinned"],
            },
            "score": {"type": "number"},
        },
        "required": ["meta"],
    },
}
SCHEMAS = {t["name"]: t["parameters"] for t in (ORDER, ROUTE, NOTE)}
TOOLS = [{"type": "function", "function": t} for t in (ORDER, ROUTE, NOTE)]
MAX_TOKENS = 56


@slow_fixture(scope="module")
def random_model(gguf_of: Callable[[str, str], Path]) -> Iterator[tuple[Engine, ChatTemplate]]:
    path = gguf_of("tiny", "Q8_0")
    engine = Engine(path, make_plan(read_model_info(path), Settings(ctx=2048)))
    yield engine, ChatTemplate.from_gguf(path)
    engine.close()


def forced_answer(
    model: tuple[Engine, ChatTemplate], forced: ForcedCall, seed: int
) -> tuple[str, Finish, AnswerSplitter]:
    engine, template = model
    messages = [{"role": "user", "content": "Do it."}]
    prompt = template.render(messages, enable_thinking=False, tools=TOOLS)
    params = SamplingParams(
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        seed=seed,
        max_tokens=MAX_TOKENS,
        grammar=tool_call_grammar(TOOLS, forced),
    )
    parts, text, finish = AnswerSplitter(tools=True), "", None
    for event in engine.generate(engine.tokenize(prompt), params):
        if isinstance(event, TokenEvent):
            text += event.text
            parts.feed(event.text)
        else:
            finish = event
    assert finish is not None
    parts.finish(finish.reason)
    return text, finish, parts


CASES = [
    *[(ForcedCall("place_order", False), seed) for seed in range(3)],
    *[(ForcedCall("set_note", False), seed) for seed in range(3)],
    *[(ForcedCall("plan_route", False), seed) for seed in range(2)],
    *[(ForcedCall(None, True), seed) for seed in range(2)],
]


def test_every_forced_call_parses_and_validates(random_model: tuple[Engine, ChatTemplate]) -> None:
    stopped, began = 0, time.perf_counter()
    for forced, seed in CASES:
        text, finish, parts = forced_answer(random_model, forced, seed)
        if finish.reason == "length":  # honest: cut inside a call, the call is not claimed
            assert finish.usage.completion_tokens == MAX_TOKENS
            assert text.startswith("<tool_call>"), text
            continue
        stopped += 1
        assert finish.reason == "stop" and parts.calls, text
        assert forced.parallel or len(parts.calls) == 1, text
        for call in parts.calls:
            assert forced.name in (None, call.name), text
            jsonschema.validate(json.loads(call.arguments), SCHEMAS[call.name])
    # Random weights wander (a number may take 30 digit tokens), yet some calls must end.
    assert stopped >= 2, f"{stopped} of {len(CASES)} ended within max_tokens"
    print(f"{len(CASES)} forced calls in {time.perf_counter() - began:.1f} s, {stopped} complete")
