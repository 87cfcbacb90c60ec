"""LangChain's ChatOpenAI against the server, changed only in base_url (and extra_body)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from langchain_openai import ChatOpenAI

from tests.support.live_server import serving
from tests.support.slow import slow_fixture


@slow_fixture(scope="module")
def url(gguf_of: Callable[[str, str], Path]) -> Iterator[str]:
    with serving(gguf_of("scripted", "Q8_0")) as (base, _):
        yield f"{base}/v1"


def test_invoke(url: str) -> None:
    llm = ChatOpenAI(base_url=url, api_key="none", model="qwen3", max_retries=0)  # type: ignore[arg-type]
    assert llm.invoke("Hi").content == "Hello world"


def test_stream_with_thinking_inline(url: str) -> None:
    # ChatOpenAI drops reasoning fields, so people who want to see the thinking ask for it inline.
    llm = ChatOpenAI(
        base_url=url,
        api_key="none",
        model="qwen3",
        streaming=True,
        max_retries=0,  # type: ignore[arg-type]
        extra_body={
            "enable_thinking": True,
            "return_reasoning": True,
            "reasoning_format": "inline",
        },
    )
    chunks = [c.content for c in llm.stream("Hi")]
    assert len(chunks) > 2  # streamed, not one block
    assert "".join(str(c) for c in chunks) == "<think>\nLet me think\n</think>\n\nHello world"


def test_stream_thinking_off(url: str) -> None:
    llm = ChatOpenAI(
        base_url=url,
        api_key="none",
        model="qwen3",
        streaming=True,
        max_retries=0,  # type: ignore[arg-type]
        extra_body={"enable_thinking": False},
    )
    assert "".join(str(c.content) for c in llm.stream("Hi")) == "Hello world"
