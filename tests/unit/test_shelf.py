"""The shelf's bookkeeping (edge.engine.shelf): a byte cap, least recently used out first,
the longest shared prefix found, a later turn superseding an earlier one. Pure logic; the
real engine parks and restores through llama.cpp in tests/live/test_batch.py."""

from __future__ import annotations

import numpy as np
import pytest

from edge.config import Settings
from edge.engine.plan import SHELF_MAX, Budget, MiB, make_plan
from edge.engine.shelf import Shelf
from tests.support.plan import QWEN3_06B

GiB = 1 << 30


def data(n: int) -> np.ndarray:
    return np.zeros(n, dtype=np.uint8)


def test_the_longest_shared_prefix_wins_and_counts_as_a_use() -> None:
    shelf = Shelf(1000)
    shelf.put([1, 2, 3, 4], data(10))
    shelf.put([1, 2, 9], data(10))
    shelf.put([7, 8], data(10))
    entry, shared = shelf.best([1, 2, 3, 5, 6])
    assert entry is not None and entry.tokens == (1, 2, 3, 4) and shared == 3
    assert shelf.best([5, 5]) == (None, 0)
    # [1, 2, 3, 4] was just used: [1, 2, 9], then [7, 8] make room for a big entry.
    shelf.put([6, 6], data(985))
    assert shelf.best([7, 8]) == (None, 0)
    entry, shared = shelf.best([1, 2, 9])
    assert entry is not None and entry.tokens == (1, 2, 3, 4) and shared == 2
    assert len(shelf) == 2 and shelf.bytes == 995


def test_the_cap_holds_and_the_oldest_go_first() -> None:
    shelf = Shelf(100)
    for i in range(10):
        shelf.put([i] * 5, data(30))
        assert shelf.bytes <= 100
    assert len(shelf) == 3 and shelf.bytes == 90
    assert shelf.best([9] * 5)[1] == 5 and shelf.best([6] * 5)[1] == 0


def test_an_entry_larger_than_the_cap_is_not_kept() -> None:
    shelf = Shelf(100)
    shelf.put([1], data(50))
    shelf.put([2], data(101))
    assert len(shelf) == 1 and shelf.bytes == 50
    assert not shelf.fits(101) and shelf.fits(100) and not Shelf(0).fits(1)


def test_a_later_turn_supersedes_the_earlier_one() -> None:
    shelf = Shelf(1000)
    shelf.put([1, 2, 3], data(10))
    shelf.put([1, 2, 3, 4, 5], data(20))
    assert len(shelf) == 1 and shelf.bytes == 20
    shelf.put([1, 2], data(5))  # a shorter one does not replace a longer one
    assert len(shelf) == 2


def test_clear_empties_it() -> None:
    shelf = Shelf(1000)
    shelf.put([1, 2], data(10))
    shelf.clear()
    assert len(shelf) == 0 and shelf.bytes == 0 and shelf.best([1, 2]) == (None, 0)


@pytest.mark.parametrize(
    ("ram", "cache_ram", "expected"),
    [
        (24 * GiB, None, SHELF_MAX),  # capped at 2 GiB
        (4 * GiB, None, 512 * MiB),  # an eighth of what is free
        (None, None, SHELF_MAX // 2),  # free RAM unknown
        (24 * GiB, 0, 0),  # --cache-ram 0: none
        (4 * GiB, 3000, 3000 * MiB),  # asked for: kept as asked
    ],
)
def test_the_shelf_cap_follows_free_ram_unless_asked(
    ram: int | None, cache_ram: int | None, expected: int
) -> None:
    plan = make_plan(
        QWEN3_06B,
        Settings(ctx=4096, threads=2, cache_ram=cache_ram),
        gpu_offload=False,
        budget=Budget(ram_available=ram),
    )
    assert plan.shelf_bytes == expected
    shown = plan.describe(QWEN3_06B)
    assert (f"shelf ≤ {expected // MiB} MiB" in shown) == bool(expected)
