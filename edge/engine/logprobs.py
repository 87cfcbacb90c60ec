"""Log-probabilities from llama.cpp's logits: the softmax of one output's row, in numpy.

Only jobs that ask pay for it; everyone else never reaches this module. What it costs is
one pass over the 151,936 logits of Qwen3's vocabulary for the normaliser (float32 exp,
float64 sum) and, for the alternatives, a partial sort of the few logits near the top
rather than of the whole row (`scripts/measure_logprobs.py` measures it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from edge.engine.seam import TokenLogprob

# Where to look first for the alternatives: logits this close to the best, if there are
# enough of them and not too many.
_WINDOW = 8.0
_MAX_NEAR = 2048
_TRIES = 16


class LogprobReader:
    """Reads one output row of logits (a ctypes float pointer) as `TokenLogprob`s."""

    def __init__(self, n_vocab: int, piece: Callable[[int], bytes]) -> None:
        self.n_vocab, self.piece = n_vocab, piece

    def of(self, logits: Any, token: int, top: int) -> TokenLogprob:
        """`token`'s log-probability at this output, and the `top` most likely tokens."""
        row = np.ctypeslib.as_array(logits, shape=(self.n_vocab,))
        best = float(row.max())
        norm = best + math.log(float(np.exp(row - best).sum(dtype=np.float64)))
        alternatives = tuple(
            TokenLogprob(t, self.piece(t), float(row[t]) - norm) for t in top_ids(row, top, best)
        )
        return TokenLogprob(token, self.piece(token), float(row[token]) - norm, alternatives)


def top_ids(row: np.ndarray, k: int, best: float) -> list[int]:
    """The ids of the `k` largest logits, largest first (ties: the lower id first)."""
    if k <= 0:
        return []
    if k == 1:
        return [int(row.argmax())]
    # Only the logits near the top are sorted: those within a window of the best, the
    # window bisected until it holds at least k and at most _MAX_NEAR of them (a trained
    # model's best few are a few nats from the top; a flat row needs a narrow window).
    narrow, wide = 0.0, math.inf  # windows known to hold too few / too many
    window = _WINDOW
    for _ in range(_TRIES):
        near = np.count_nonzero(row >= best - window)
        if near < k:
            narrow = window
        elif near > _MAX_NEAR:
            wide = window
        else:
            ids = _largest(row, np.flatnonzero(row >= best - window), k)
            break
        window = window * 4 if wide == math.inf else (narrow + wide) / 2
    else:  # ties around the k-th, or a pathological row: the whole row
        ids = _largest(row, np.arange(len(row)), k)
    return [int(t) for t in ids[np.lexsort((ids, -row[ids]))]]


def _largest(row: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    """The `k` of `ids` (ascending) with the largest logits; at a tie, the lower ids."""
    values = row[ids]
    kth = values[np.argpartition(values, -k)[-k]]
    above = ids[values > kth]
    return np.concatenate((above, ids[values == kth][: k - len(above)]))
