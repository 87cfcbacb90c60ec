"""POST /v1/completions: the prompt is completed as is (no chat template, no thinking), and
the text streamed as `text_completion` chunks or folded into one answer."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from fastapi.sse import EventSourceResponse
from starlette.concurrency import run_in_threadpool

from edge.config import QWEN3_SAMPLING
from edge.engine import Finish, Job, SamplingParams, ThinkingControl, TokenEvent
from edge.errors import ParamError
from edge.server import sse
from edge.server.chat_api import openai_finish, usage
from edge.server.errors import OPENAPI_ERRORS
from edge.server.params import check_text, parse_logit_bias, stop_list
from edge.server.runtime import Runtime
from edge.server.schema import CompletionRequest
from edge.server.worker import Stream
from edge.server.worker import fold as fold_events


def install(app: FastAPI, rt: Runtime) -> None:
    """The route."""

    @app.post("/v1/completions", response_model=None, responses=OPENAPI_ERRORS)
    async def completions(req: CompletionRequest) -> Any:
        worker, _ = rt.ready()
        if req.n != 1:
            raise ParamError("n", "Only n=1 is supported.")
        prompt_text = req.prompt if isinstance(req.prompt, str) else "".join(req.prompt)
        check_text(prompt_text, "prompt")
        params = sampling(req, worker.limits.n_vocab)
        prompt = await run_in_threadpool(worker.engine.tokenize, prompt_text)
        work = Job(prompt, params, ThinkingControl(loop_guard=False))
        worker.admit(work)  # refusals before the response starts keep their status
        events = worker.stream(work)
        answer = TextAnswer(rt.model_id)
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            return EventSourceResponse(stream(answer, events, include_usage))
        return await fold(answer, events)


def sampling(req: CompletionRequest, n_vocab: int) -> SamplingParams:
    """Qwen3's non-thinking defaults where the request says nothing."""
    plain = QWEN3_SAMPLING[False]
    return SamplingParams(
        temperature=plain["temperature"] if req.temperature is None else req.temperature,
        top_p=req.top_p or plain["top_p"],
        top_k=int(plain["top_k"]) if req.top_k is None else req.top_k,
        min_p=req.min_p or plain["min_p"],
        seed=req.seed,
        presence_penalty=req.presence_penalty,
        frequency_penalty=req.frequency_penalty,
        repeat_penalty=req.repeat_penalty,
        logit_bias=parse_logit_bias(req.logit_bias, n_vocab),
        max_tokens=req.max_tokens or 256,
        stop=stop_list(req.stop),
    )


@dataclass
class TextAnswer:
    """What every chunk of one answer shares, and the answer's shape."""

    model: str
    id: str = field(default_factory=lambda: "cmpl-" + secrets.token_hex(12))
    created: int = field(default_factory=lambda: int(time.time()))

    def body(self, text: str, finish: str | None) -> dict[str, Any]:
        """A `text_completion` object (a chunk when streamed) holding `text`."""
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
        return {
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        }


def stream(answer: TextAnswer, events: Stream, include_usage: bool) -> AsyncIterator[bytes]:
    """A chunk a token, the last with its finish reason, then the optional usage chunk."""

    def on_token(event: TokenEvent) -> bytes:
        return sse.data(answer.body(event.text, None)) if event.text else b""

    def on_finish(event: Finish) -> list[dict[str, Any]]:
        last = answer.body("", openai_finish(event.reason))
        return (
            [last, {**last, "choices": [], "usage": plain_usage(event)}]
            if include_usage
            else [last]
        )

    return sse.frame(events, on_token, on_finish)


async def fold(answer: TextAnswer, events: Stream) -> dict[str, Any]:
    """The non-streaming answer: the same stream, folded."""
    pieces: list[str] = []
    finish = await fold_events(events, lambda e: pieces.append(e.text))
    text = "".join(pieces)
    return {**answer.body(text, openai_finish(finish.reason)), "usage": plain_usage(finish)}


def plain_usage(finish: Finish) -> dict[str, Any]:
    """Chat's usage without the details objects, as OpenAI's text completions give it."""
    return {k: v for k, v in usage(finish).items() if not k.endswith("details")}
