"""Token choice: how each next token is picked from the logits. Plain greedy is numpy's
argmax (`Greedy`); anything else is llama.cpp's sampler chain, with a grammar (from a
JSON schema too) when the output is constrained.

Built on llama.h access (`edge.engine.llama`); the scheduler (`edge.engine.scheduler`)
builds each job's sampler here and frees it when the job ends.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from edge.engine.llama import Vocab, _llama
from edge.engine.seam import SamplingParams
from edge.errors import UsageError


class Greedy:
    """Greedy decoding without llama.cpp's sampler: the argmax of the logits plus any bias,
    read where llama.cpp left them. `llama_sampler_sample` first copies every logit into a
    candidates array (151,936 for Qwen3), which costs ~200 µs a token; numpy's argmax over
    the same row costs ~15 µs (~35 µs with a bias). Same token: the first maximum wins in
    both. Only for what needs no sampler state: no penalties, no grammar."""

    __slots__ = ("ids", "bias")

    def __init__(self, logit_bias: dict[int, float]) -> None:
        self.ids = np.fromiter(logit_bias, dtype=np.intp, count=len(logit_bias))
        self.bias = np.fromiter(logit_bias.values(), dtype=np.float32, count=len(logit_bias))

    def pick(self, logits: Any, n_vocab: int) -> int:
        """The token to emit, from a pointer to one output's `n_vocab` logits."""
        row = np.ctypeslib.as_array(logits, shape=(n_vocab,))
        if not len(self.ids):
            return int(row.argmax())
        # The bias goes into llama.cpp's buffer and out again: no 600 KB copy a token (its
        # allocation page-faults on the scheduler thread's malloc arena each time).
        kept = row[self.ids]
        row[self.ids] = kept + self.bias
        best = int(row.argmax())
        row[self.ids] = kept
        return best


def build_sampler(vocab: Vocab, p: SamplingParams, fast_greedy: bool = True) -> Any:
    """How to choose each token: `Greedy` when temperature is 0 with no penalty or grammar
    (unless `fast_greedy` is off), else llama.cpp's own sampler chain, in llama-server's
    order. The caller releases it with `free_sampler`."""
    lib = _llama()
    grammar = p.grammar
    if grammar is None and p.json_schema is not None:
        grammar = schema_grammar(p.json_schema)
    penalties = p.repeat_penalty != 1.0 or p.presence_penalty or p.frequency_penalty
    if fast_greedy and p.temperature <= 0 and grammar is None and not penalties:
        # Out-of-range ids are ignored, as llama.cpp's logit-bias sampler ignores them.
        return Greedy({t: b for t, b in p.logit_bias.items() if 0 <= t < vocab.n_vocab})
    stages: list[Any] = []
    if p.logit_bias:
        biases = (lib.llama_logit_bias * len(p.logit_bias))()
        for i, (token, bias) in enumerate(p.logit_bias.items()):
            biases[i].token, biases[i].bias = token, bias
        stages.append(lib.llama_sampler_init_logit_bias(vocab.n_vocab, len(biases), biases))
    if penalties:
        stages.append(
            lib.llama_sampler_init_penalties(
                vocab.n_vocab, 64, p.repeat_penalty, p.frequency_penalty, p.presence_penalty
            )
        )
    if grammar is not None:
        made = lib.llama_sampler_init_grammar(vocab.ptr, grammar.encode("utf-8"), b"root")
        if not made:
            for stage in stages:
                free_sampler(stage)
            raise UsageError("The grammar could not be parsed.")
        stages.append(made)
    stages += _choosing_stages(lib, p)
    chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
    for stage in stages:  # the chain owns its stages from here on
        lib.llama_sampler_chain_add(chain, stage)
    return chain


def _choosing_stages(lib: Any, p: SamplingParams) -> list[Any]:
    """The chain's last stages, which pick the token: greedy, or top-k, top-p, min-p,
    temperature and a seeded draw."""
    if p.temperature <= 0:
        return [lib.llama_sampler_init_greedy()]
    seed = p.seed if p.seed is not None else time.time_ns() & 0xFFFFFFFF
    return [
        *([lib.llama_sampler_init_top_k(p.top_k)] if p.top_k > 0 else []),
        lib.llama_sampler_init_top_p(p.top_p, 1),
        lib.llama_sampler_init_min_p(p.min_p, 1),
        lib.llama_sampler_init_temp(p.temperature),
        lib.llama_sampler_init_dist(seed),
    ]


def free_sampler(sampler: Any) -> None:
    """Release what `build_sampler` made."""
    if sampler is not None and type(sampler) is not Greedy:
        _llama().llama_sampler_free(sampler)


def schema_grammar(schema: dict[str, Any]) -> str:
    """The GBNF grammar that constrains output to `schema` (a UsageError when the
    converter cannot express it)."""
    import json

    from llama_cpp.llama_grammar import json_schema_to_gbnf

    try:
        grammar = json_schema_to_gbnf(json.dumps(schema))
    except Exception as exc:  # the converter raises bare exceptions on unsupported schemas
        raise UsageError(f"The JSON schema cannot be turned into a grammar: {exc}") from None
    # This converter's strings take raw control characters (a newline), which JSON forbids
    # and json.loads refuses; llama.cpp's own converter has since excluded them the same way.
    return grammar.replace(_LOOSE_CHAR, _JSON_CHAR)


_LOOSE_CHAR = 'char ::= [^"\\\\] |'
_JSON_CHAR = 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |'
