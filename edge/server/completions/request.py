"""Text completions, the request half: sampling (Qwen3's non-thinking defaults where the
request says nothing) and the legacy `logprobs` count. Pure translation, no I/O."""

from __future__ import annotations

from edge.chat.sampling import qwen_sampling
from edge.engine import SamplingParams
from edge.errors import ParamError
from edge.server import logprobs
from edge.server.completions.schema import CompletionRequest
from edge.server.params import parse_logit_bias, stop_list


def sampling(req: CompletionRequest, n_vocab: int) -> SamplingParams:
    """Qwen3's non-thinking defaults where the request says nothing."""
    return qwen_sampling(
        False,
        temperature=req.temperature,
        top_p=req.top_p,
        top_k=req.top_k,
        min_p=req.min_p,
        seed=req.seed,
        presence_penalty=req.presence_penalty,
        frequency_penalty=req.frequency_penalty,
        repeat_penalty=req.repeat_penalty,
        logit_bias=parse_logit_bias(req.logit_bias, n_vocab),
        max_tokens=req.max_tokens or 256,
        stop=stop_list(req.stop),
        logprobs=logprobs_count(req.logprobs),
    )


def logprobs_count(value: bool | int | None) -> int | None:
    """The legacy API's `logprobs`: how many alternatives per token, None for off."""
    if value is None or value is False:
        return None
    if value is True:
        raise ParamError("logprobs", "For completions, 'logprobs' is a count from 0 to 20.")
    return logprobs.top_count(value, "logprobs")
