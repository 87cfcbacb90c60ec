"""Log-probabilities from llama.cpp's logits: the softmax of one output's row, in numpy.

Only jobs that ask pay for it (a pass over the 151,936 logits of Qwen3's vocabulary, and
a partial sort for the alternatives); everyone else never reaches this module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from edge.engine.seam import TokenLogprob


class LogprobReader:
    """Reads one output row of logits (a ctypes float pointer) as `TokenLogprob`s."""

    def __init__(self, n_vocab: int, piece: Callable[[int], bytes]) -> None:
        self.n_vocab, self.piece = n_vocab, piece

    def row(self, logits: Any) -> np.ndarray:
        """The output's logits as log-probabilities (float64, so sums stay exact)."""
        row = np.ctypeslib.as_array(logits, shape=(self.n_vocab,)).astype(np.float64)
        top = row.max()
        row -= top + np.log(np.exp(row - top).sum())
        return row

    def of(self, logits: Any, token: int, top: int) -> TokenLogprob:
        """`token`'s log-probability at this output, and the `top` most likely tokens."""
        row = self.row(logits)
        return TokenLogprob(token, self.piece(token), float(row[token]), self.best(row, top))

    def best(self, row: np.ndarray, top: int) -> tuple[TokenLogprob, ...]:
        """The `top` most likely tokens of a log-probability row, most likely first (ties
        by the lower token id, so the order is stable)."""
        if top <= 0:
            return ()
        ids = np.argpartition(row, -top)[-top:]
        ids = ids[np.lexsort((ids, -row[ids]))]
        return tuple(TokenLogprob(int(t), self.piece(int(t)), float(row[t])) for t in ids)
