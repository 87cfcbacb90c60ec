"""Serving a home LAN safely: which key to require, which addresses to announce."""

from __future__ import annotations

import ipaddress
import os
import secrets
import socket
from collections.abc import Callable
from pathlib import Path

from edge.errors import UsageError


def is_loopback(host: str) -> bool:
    """True for localhost and loopback IP addresses."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def server_key(
    bind: str, key: str | None, *, lan: bool, no_auth: bool, home: Path, say: Callable[[str], None]
) -> str | None:
    """The API key to require: off loopback one is mandatory unless --no-auth says otherwise.

    With --lan and no key given, one is generated once, stored with mode 0600 under `home`
    and printed that one time; later starts reuse it silently.
    Keys are trimmed (HTTP drops a header's surrounding spaces, so a padded key could never
    match) and a blank one counts as none.
    """
    key = _usable(key)
    if key or is_loopback(bind):
        return key
    if no_auth:
        say("warning: serving off loopback WITHOUT an API key: anyone on the network can use it")
        return None
    if not lan:
        raise UsageError(
            f"Binding {bind} exposes the server to the network, so an API key is required.",
            "Pass --api-key KEY (or set EDGE_QWEN_API_KEY), use --lan to generate one, "
            "or --no-auth.",
        )
    stored = home / "api_key"
    if stored.is_file():
        return _stored_key(stored, say)
    new = secrets.token_urlsafe(24)
    stored.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(stored, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(new + "\n")
    say(f"API key (stored in {stored}, shown once): {new}")
    return new


def _usable(key: str | None) -> str | None:
    """The key as clients can send it, None when blank; refuses what no header can carry."""
    key = (key or "").strip()
    if key and not (key.isascii() and key.isprintable()):
        raise UsageError(
            "The API key must be printable ASCII: clients send it in an HTTP header.",
            "Choose another key, "
            "e.g. python -c 'import secrets; print(secrets.token_urlsafe(24))'.",
        )
    return key or None


def _stored_key(stored: Path, say: Callable[[str], None]) -> str:
    """The key kept from an earlier --lan start; never an empty one, never left readable."""
    key = _usable(stored.read_text(encoding="utf-8"))
    if not key:  # an empty key would mean no auth at all: the Guard skips a falsy key
        raise UsageError(
            f"The stored API key file {stored} is empty, so it cannot protect the server.",
            "Delete it to have a new key generated, or pass --api-key KEY.",
        )
    if stored.stat().st_mode & 0o077:
        stored.chmod(0o600)
        say(f"warning: {stored} was readable by other users; its mode is now 0600")
    return key


def addresses(bind: str) -> list[str]:
    """The addresses people should type: the machine's LAN IPs when bound to every interface."""
    if bind not in ("0.0.0.0", "::"):
        return [bind]
    found = set()
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            found.add(str(info[4][0]))
    except OSError:
        pass
    return sorted(a for a in found if not a.startswith("127.")) or ["127.0.0.1"]
