"""The shelf: finished sequences' KV cells kept in host RAM, out of the live KV cache.

Why it exists: the KV cache is unified, so without flash attention (the CPU default: it
decodes a deep context twice as fast) every decode step computes attention over every
occupied cell, masked or not. A finished conversation left in the cache for prefix reuse
therefore taxes every live sequence: with four 1,500-token conversations cached, a fresh
stream decoded at 11.6 tok/s instead of ~40 (0.6b shape, 2 threads). So while anything
runs, the engine keeps only live sequences in the cache and parks the finished ones here
(llama.cpp's sequence state: a copy of the sequence's cells, milliseconds per thousand
tokens), and puts one back when a new prompt starts with its tokens: far cheaper than
reading the prompt again (a 1,500-token prefix is seconds of prefill on a laptop CPU).

Pure bookkeeping, no llama.cpp: least recently used out first, within a byte cap; an
entry whose tokens start another entry's is dropped as superseded (the next turn of a
conversation replaces its previous turn).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from edge.engine.text import common_prefix


@dataclass(frozen=True)
class Parked:
    """One sequence's cells as llama.cpp serialized them, and the tokens they hold."""

    tokens: tuple[int, ...]
    data: Any  # a numpy uint8 array: llama_state_seq_get_data's output

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)


class Shelf:
    """Parked sequences, at most `cap` bytes of them (0: nothing is kept)."""

    def __init__(self, cap: int) -> None:
        self.cap = max(0, cap)
        self._items: OrderedDict[tuple[int, ...], Parked] = OrderedDict()  # oldest first
        self.bytes = 0
        self.peak = 0  # the most `bytes` has been

    def __len__(self) -> int:
        return len(self._items)

    def fits(self, nbytes: int) -> bool:
        """Whether an entry of `nbytes` could be kept at all."""
        return 0 < nbytes <= self.cap

    def put(self, tokens: list[int], data: Any) -> None:
        """Keep `data` for `tokens`, replacing entries it supersedes, evicting the least
        recently used ones until it fits."""
        key = tuple(tokens)
        for old in [k for k in self._items if k == key[: len(k)]]:
            self._drop(old)
        entry = Parked(key, data)
        if not self.fits(entry.nbytes):
            return
        while self.bytes + entry.nbytes > self.cap:
            self._drop(next(iter(self._items)))
        self._items[key] = entry
        self.bytes += entry.nbytes
        self.peak = max(self.peak, self.bytes)

    def best(self, prompt: list[int], touch: bool = True) -> tuple[Parked | None, int]:
        """The entry sharing the longest prefix with `prompt`, and how many tokens it
        shares (0: none); a hit counts as a use unless `touch` is False."""
        found, shared = None, 0
        for entry in self._items.values():
            n = common_prefix(entry.tokens, prompt)
            if n > shared:
                found, shared = entry, n
        if found is not None and touch:
            self._items.move_to_end(found.tokens)
        return found, shared

    def clear(self) -> None:
        self._items.clear()
        self.bytes = 0

    def _drop(self, key: tuple[int, ...]) -> None:
        self.bytes -= self._items.pop(key).nbytes
