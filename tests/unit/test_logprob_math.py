"""The log-probability arithmetic alone (no model): the normaliser and the alternatives,
against numpy's plain full sort, on peaked, flat and tied rows of Qwen3's vocabulary size."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from edge.engine.logprobs import LogprobReader

N_VOCAB = 151_936


def rows() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    tied = np.zeros(N_VOCAB, np.float32)
    tied[[7, 900, 5]] = [2.0, 1.0, 1.0]
    return {
        "peaked": (rng.standard_normal(N_VOCAB) * 3).astype(np.float32),
        "flat": (rng.random(N_VOCAB) * 0.5).astype(np.float32),
        "tied": tied,  # the tie at 1.0 and the 151,933 at 0.0: lower ids first
        "one hot": np.where(np.arange(N_VOCAB) == 42, 30.0, -30.0).astype(np.float32),
    }


@pytest.mark.parametrize("name", list(rows()))
@pytest.mark.parametrize("k", [0, 1, 2, 5, 20])
def test_logprobs_and_alternatives_equal_a_full_sort(name: str, k: int) -> None:
    row = rows()[name]
    reader = LogprobReader(N_VOCAB, lambda t: str(t).encode())
    got = reader.of(row.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), 11, k)
    exact = row.astype(np.float64) - np.log(np.exp(row.astype(np.float64)).sum())
    assert got.logprob == pytest.approx(exact[11], abs=1e-5) and got.piece == b"11"
    want = np.argsort(-row, kind="stable")[:k]  # stable: the lower id first at a tie
    assert [t.token for t in got.top] == list(want)
    assert [t.logprob for t in got.top] == pytest.approx(list(exact[want]), abs=1e-5)
