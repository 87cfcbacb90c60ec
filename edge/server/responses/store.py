"""Stored responses, for `GET /v1/responses/{id}` and `previous_response_id`: in memory,
bounded by count and by bytes (least recently used go first), partitioned by API key.

A partition is named by a hash of the key, never the key itself, so a response is found
only with the key it was made with. Nothing survives a restart: a follow-up to a response
that is gone gets 404, as OpenAI answers for one that expired.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from edge.server.guard import bearer_token

MAX_RESPONSES = 1000
MAX_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Stored:
    """One stored response, and the conversation items (previous turns, its input and its
    output) that a follow-up continues."""

    response: dict[str, Any]
    items: list[dict[str, Any]]
    size: int


def partition_of(authorization: str | None, keyed: bool) -> str:
    """The partition of a request: a hash of its bearer key when the server requires
    one (however the client spells the scheme); one partition for all when it does not."""
    token = bearer_token(authorization) if keyed else None
    return hashlib.sha256(token.encode()).hexdigest() if token else ""


class ResponseStore:
    """Responses by (partition, id), least recently used evicted first once there are
    more than `max_items` or they take more than `max_bytes` (as JSON)."""

    def __init__(self, max_items: int = MAX_RESPONSES, max_bytes: int = MAX_BYTES) -> None:
        self.max_items, self.max_bytes = max_items, max_bytes
        self.bytes = 0
        self._entries: OrderedDict[tuple[str, str], Stored] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, partition: str, response: dict[str, Any], items: list[dict[str, Any]]) -> bool:
        """Store a response (a copy of its items); False if it alone is over the byte limit."""
        size = len(json.dumps([response, items]))  # ASCII: any str, even a lone surrogate
        if size > self.max_bytes:
            return False
        self.delete(partition, response["id"])
        self._entries[(partition, response["id"])] = Stored(response, list(items), size)
        self.bytes += size
        while len(self._entries) > self.max_items or self.bytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self.bytes -= evicted.size
        return True

    def get(self, partition: str, response_id: str) -> Stored | None:
        """A stored response, now the most recently used; None if unknown or evicted."""
        entry = self._entries.get((partition, response_id))
        if entry is not None:
            self._entries.move_to_end((partition, response_id))
        return entry

    def delete(self, partition: str, response_id: str) -> bool:
        """Forget a response; False if there was none."""
        entry = self._entries.pop((partition, response_id), None)
        if entry is None:
            return False
        self.bytes -= entry.size
        return True
