"""POST /v1/completions: the prompt is completed as is (no chat template, no thinking), and
the text streamed as `text_completion` chunks or folded into one answer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.sse import EventSourceResponse
from starlette.concurrency import run_in_threadpool

from edge.engine import Finish, Job, SamplingParams, ThinkingControl, TokenEvent, TokenLogprob
from edge.errors import ParamError
from edge.server import logprobs, sse
from edge.server.completions.answer import Echo, TextAnswer, plain_usage
from edge.server.completions.request import sampling
from edge.server.completions.schema import CompletionRequest
from edge.server.errors import OPENAPI_ERRORS
from edge.server.params import check_text
from edge.server.runtime import Runtime
from edge.server.usage import openai_finish
from edge.server.worker import EngineWorker, Stream
from edge.server.worker import fold as fold_events


def install(app: FastAPI, rt: Runtime) -> None:
    """The route."""

    @app.post("/v1/completions", response_model=None, responses=OPENAPI_ERRORS)
    async def completions(req: CompletionRequest) -> Any:
        keep_s = req.keep_alive_s()  # a bad value is a 400 before any load
        worker, _ = await rt.awake()
        rt.keep_alive(keep_s)
        if req.n != 1:
            raise ParamError("n", "Only n=1 is supported.")
        params = sampling(req, worker.limits.n_vocab)
        prompt_text, prompt = await prompt_of(req, worker)
        # The echoed prompt is its own text, or, given as token ids, their pieces.
        params.prompt_logprobs = req.echo and (params.logprobs is not None or not prompt_text)
        job = Job(prompt, params, ThinkingControl(loop_guard=False))
        events = worker.start(job)  # a refusal raises here, with its status
        answer = TextAnswer(rt.model_id, echo=req.echo, prompt_text=prompt_text)
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            return EventSourceResponse(stream(answer, events, include_usage, params))
        return await fold(answer, events, params)


async def prompt_of(req: CompletionRequest, worker: EngineWorker) -> tuple[str, list[int]]:
    """The prompt's text ("" when it came as token ids) and its tokens."""
    raw = req.prompt
    if isinstance(raw, list) and raw and isinstance(raw[0], list):
        if len(raw) != 1:
            raise ParamError("prompt", "One prompt per request: batches are not supported.")
        raw = raw[0]
    if isinstance(raw, list) and raw and isinstance(raw[0], int):
        ids = [t for t in raw if isinstance(t, int)]
        bad = next((t for t in ids if not 0 <= t < worker.limits.n_vocab), None)
        if bad is not None:  # llama.cpp would read past its embeddings and crash
            message = f"Token id {bad} is not in the vocabulary (0…{worker.limits.n_vocab - 1})."
            raise ParamError("prompt", message)
        return "", ids
    text = raw if isinstance(raw, str) else "".join(str(p) for p in raw)
    check_text(text, "prompt")
    return text, await run_in_threadpool(worker.engine.tokenize, text)


def stream(
    answer: TextAnswer, events: Stream, include_usage: bool, params: SamplingParams
) -> AsyncIterator[bytes]:
    """A chunk a token, the last with its finish reason, then the optional usage chunk."""
    echo = Echo(answer, params)
    head = echo.head()

    def on_token(event: TokenEvent) -> bytes:
        text, lps = echo.piece(event)
        return sse.data(answer.body(text, None, lps)) if text or lps else b""

    def on_finish(event: Finish) -> list[dict[str, Any]]:
        last = answer.body("", openai_finish(event.reason))
        return (
            [last, {**last, "choices": [], "usage": plain_usage(event)}]
            if include_usage
            else [last]
        )

    return sse.frame(events, on_token, on_finish, head=(answer.body(head, None),) if head else ())


async def fold(answer: TextAnswer, events: Stream, params: SamplingParams) -> dict[str, Any]:
    """The non-streaming answer: the same stream, folded."""
    echo = Echo(answer, params)
    pieces: list[str] = [echo.head()]
    tokens: list[TokenLogprob] = []

    def on_token(event: TokenEvent) -> None:
        pieces.append(echo.piece(event)[0])
        tokens.extend(event.logprobs)

    finish = await fold_events(events, on_token)
    lps = logprobs.legacy(tokens) if echo.want else None
    body = answer.body("".join(pieces), openai_finish(finish.reason), lps)
    return {**body, "usage": plain_usage(finish)}
