"""Checking the replicas a router will spread requests over, before it starts."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

from edge.errors import UsageError

CHECK_TIMEOUT_S = 5.0


class ReplicaError(UsageError):
    """A replica URL that is malformed, unreachable or not an edge-qwen server."""


@dataclass(frozen=True)
class Replica:
    """One `edge-qwen serve`: its base URL (no /v1), the model it serves, its key if any.

    `model` is None for a replica that did not answer when the router started (a laptop
    asleep, a server still loading); `down` then says why. The router keeps it: LiteLLM's
    cooldowns send it traffic once it answers.
    """

    url: str
    model: str | None
    key: str | None = None
    down: str | None = None


class _Asleep(Exception):
    """A replica that may answer later: unreachable, or not ready yet."""


def normalize(url: str) -> str:
    """`http://host:port` from what a person typed (a trailing / or /v1 is dropped)."""
    raw = url.strip().rstrip("/")
    if raw.endswith("/v1"):
        raw = raw[: -len("/v1")]
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path:
        raise ReplicaError(
            f"{url!r} is not a replica address.",
            "Give each replica as http://HOST:PORT, e.g. http://192.168.1.20:8000.",
        )
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise ReplicaError(f"{url!r} has an invalid port.", "Use http://HOST:PORT.") from None
    return raw


def check_replicas(
    urls: list[str], keys: list[str], timeout: float = CHECK_TIMEOUT_S
) -> list[Replica]:
    """Each replica, checked: `/health` 200 and `/v1/models` with its model, else `down`.

    `keys`: none, one for every replica, or one per replica in order. One that cannot be
    reached or is not ready is kept with `down` set: it may be asleep. A ReplicaError
    when none answers, and for a replica that refuses its key or is not an edge-qwen
    server: those are mistakes in the command, which waiting does not fix.
    """
    if not urls:
        raise ReplicaError("No replica given.", "edge-qwen route http://HOST:PORT [...]")
    if len(keys) not in (0, 1, len(urls)):
        raise ReplicaError(
            f"{len(keys)} replica keys for {len(urls)} replicas.",
            "Give one --replica-key for all replicas, or one per replica in order.",
        )
    bases = [normalize(u) for u in urls]
    if len(set(bases)) != len(bases):
        raise ReplicaError("A replica is listed twice.", "List each replica once.")
    per: list[str | None] = (
        [*keys] if len(keys) == len(urls) else [keys[0] if keys else None] * len(urls)
    )
    # At once: a sleeping laptop on Wi-Fi does not refuse, it lets the connection time out.
    with ThreadPoolExecutor(max_workers=min(len(bases), 16)) as pool:
        replicas = list(pool.map(_check, bases, per, [timeout] * len(bases)))
    if all(r.model is None for r in replicas):
        reasons = "; ".join(f"{r.url}: {r.down}" for r in replicas)
        raise ReplicaError(
            f"No replica answered ({reasons}).",
            "Start `edge-qwen serve` on at least one of them (the others may join later), "
            "and check that this machine can reach it.",
        )
    return replicas


def _check(base: str, key: str | None, timeout: float) -> Replica:
    try:
        return _ask(base, key, timeout)
    except _Asleep as exc:
        return Replica(base, None, key, down=str(exc))


def _ask(base: str, key: str | None, timeout: float) -> Replica:
    status, _ = _get(base, "/health", None, timeout)
    if status != 200:  # 503 while it loads its model
        raise _Asleep(f"not ready: /health answered {status}")
    status, body = _get(base, "/v1/models", key, timeout)
    if status == 401:
        raise ReplicaError(
            f"Replica {base} refused the key (/v1/models answered 401).",
            "Pass its key with --replica-key (or EDGE_QWEN_REPLICA_KEYS).",
        )
    try:
        model = str(json.loads(body)["data"][0]["id"])
    except (ValueError, KeyError, IndexError, TypeError):
        raise ReplicaError(
            f"Replica {base} did not list a model on /v1/models (status {status}).",
            "Is it an edge-qwen serve (or another OpenAI-compatible server)?",
        ) from None
    return Replica(base, model, key)


def _get(base: str, path: str, key: str | None, timeout: float) -> tuple[int, bytes]:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    request = urllib.request.Request(base + path, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise _Asleep(f"cannot be reached: {reason}") from None
