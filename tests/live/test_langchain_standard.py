"""LangChain's own standard integration suite for chat models (`langchain-tests`'
`ChatModelIntegrationTests`), run over `ChatOpenAI` against our server as a new user would,
with tool calling, forced tool choice and structured output (function calling) declared.

The model is the scripted tiny one (greedy "Hello world"): the suite checks the wire
contract, not answers. Tests that need a model that understands the question are marked
xfail (not strict), each with its reason; everything else must pass.

It takes about 4-5 minutes on two CPU cores (the structured-output tests run forced calls
of a model that does not know the schema to max_tokens), so it runs when
EDGE_QWEN_LANGCHAIN_STANDARD=1 is set, as the CI job that runs it does.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_openai import ChatOpenAI
from langchain_tests.integration_tests import ChatModelIntegrationTests

from tests.support.live_server import serving
from tests.support.slow import slow_fixture

pytestmark = pytest.mark.skipif(
    os.environ.get("EDGE_QWEN_LANGCHAIN_STANDARD") != "1",
    reason="LangChain's standard suite (minutes): set EDGE_QWEN_LANGCHAIN_STANDARD=1",
)
_URL: dict[str, str] = {}
_NEEDS_A_MODEL = "needs a model that understands the question; the scripted one says 'Hello world'"
XFAIL = {
    # The forced call is right; the suite wants the one call a real model would make,
    # and its argument (3) computed from the question. Scripted: two calls, input 1.
    "test_tool_calling": _NEEDS_A_MODEL,
    "test_tool_calling_async": _NEEDS_A_MODEL,
    "test_tool_calling_with_no_arguments": _NEEDS_A_MODEL,
    # After the tool result the model must answer in words about it.
    "test_agent_loop": _NEEDS_A_MODEL,
    # The model must copy "你好" from the question into the argument.
    "test_unicode_tool_call_integration": _NEEDS_A_MODEL,
    # The forced call must fill answer_style with a non-empty style taken from the
    # question; the scripted model samples the string under the grammar and may close it
    # at once (seen once in two full runs: {"answer_style": ""}).
    "test_bind_runnables_as_tools": _NEEDS_A_MODEL,
}


@pytest.fixture(autouse=True)
def known_failures(request: pytest.FixtureRequest) -> None:
    name = request.node.name.split("[")[0]
    if name in XFAIL:
        request.applymarker(pytest.mark.xfail(reason=XFAIL[name], strict=False))


@slow_fixture(scope="module", autouse=True)
def edge_server(gguf_of: Callable[[str, str], Path]) -> Iterator[None]:
    with serving(gguf_of("scripted", "Q8_0"), n_ctx=4096) as (url, _):
        _URL["base"] = f"{url}/v1"
        yield


class TestEdgeQwenStandard(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[ChatOpenAI]:
        return ChatOpenAI

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {
            "model": "qwen3",
            "base_url": _URL["base"],
            "api_key": "none",
            "max_retries": 0,
            "stream_usage": True,  # usage in streams, which ChatOpenAI asks only OpenAI for
        }

    @property
    def has_tool_calling(self) -> bool:
        return True

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def has_structured_output(self) -> bool:
        return True

    @property
    def structured_output_kwargs(self) -> dict[str, Any]:
        return {"method": "function_calling"}

    @property
    def returns_usage_metadata(self) -> bool:
        return True
