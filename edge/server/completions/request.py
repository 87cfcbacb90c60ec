"""Text completions, the request half: sampling (Qwen3's non-thinking defaults where the
request says nothing) and the legacy `logprobs` count. Pure translation, no I/O."""

from __future__ import annotations

from edge.engine import SamplingParams
from edge.errors import ParamError
from edge.server import logprobs
from edge.server.completions.schema import CompletionRequest
from edge.server.params import openai_sampling


def sampling(req: CompletionRequest, n_vocab: int) -> SamplingParams:
    """Qwen3's non-thinking defaults where the request says nothing."""
    return openai_sampling(
        False, req, n_vocab, max_tokens=req.max_tokens or 256, logprobs=logprobs_count(req.logprobs)
    )


def logprobs_count(value: bool | int | None) -> int | None:
    """The legacy API's `logprobs`: how many alternatives per token, None for off."""
    if value is None or value is False:
        return None
    if value is True:
        raise ParamError("logprobs", "For completions, 'logprobs' is a count from 0 to 20.")
    return logprobs.top_count(value, "logprobs")
