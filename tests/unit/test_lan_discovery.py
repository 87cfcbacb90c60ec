"""Announcing a server on the LAN and finding it, without a network: the announcement
built from the settings (what its TXT record says, and that the key is never in it), and
found services turned into replica URLs. The real mDNS exchange, in a network namespace
of its own: tests/live/test_lan_discovery.py."""

from __future__ import annotations

import pytest

from edge import __version__
from edge.config import Settings
from edge.errors import UsageError
from edge.route import discover
from edge.route.discover import Found, url_of, with_discovered
from edge.route.replicas import ReplicaError
from edge.server import advertise
from edge.server.advertise import announcement, service_info, txt_record

KEY = "sekrit-key-123"


def lan(**extra: object) -> Settings:
    return Settings(**{"advertise": True, "lan": True, "api_key": KEY, "port": 8123, **extra})


def test_the_txt_record_says_how_to_talk_to_the_server_never_the_key() -> None:
    assert txt_record("qwen3-0.6b-q8_0", keyed=True) == {
        "path": "/v1",
        "model": "qwen3-0.6b-q8_0",
        "version": __version__,
        "auth": "key",
    }
    assert txt_record("m", keyed=False)["auth"] == "none"
    ann = announcement(lan(), "m", "0.0.0.0", "laptop", lambda: ["192.168.1.20"])
    assert ann is not None
    info = service_info(ann)
    assert KEY not in repr(ann) and KEY.encode() not in info.text
    assert info.decoded_properties == {**txt_record("m", True)}


def test_a_server_on_every_interface_announces_their_addresses() -> None:
    ann = announcement(lan(), "m", "0.0.0.0", "laptop.fritz.box", lambda: ["192.168.1.20"])
    assert ann is not None
    assert ann.name == "edge-qwen on laptop:8123" and ann.host == "laptop.local."
    assert ann.addresses == ("192.168.1.20",) and ann.interfaces == () and ann.port == 8123
    info = service_info(ann)
    assert info.type == advertise.SERVICE_TYPE == "_edge-qwen._tcp.local."
    assert info.name == "edge-qwen on laptop:8123._edge-qwen._tcp.local."
    assert info.parsed_addresses() == ["192.168.1.20"] and info.server == "laptop.local."
    # Bound to one address: that address, answered on that interface alone.
    one = announcement(lan(host="192.168.1.20"), "m", "192.168.1.20", "laptop")
    assert one is not None and one.addresses == one.interfaces == ("192.168.1.20",)
    long = announcement(lan(), "m", "0.0.0.0", "x" * 100, lambda: ["10.0.0.2"])
    assert long is not None and len(long.name.encode()) <= 63


def test_nothing_is_announced_unless_asked_and_never_a_loopback_server() -> None:
    assert announcement(Settings(lan=True), "m", "0.0.0.0") is None
    with pytest.raises(UsageError, match="only this machine can reach") as refused:
        announcement(Settings(advertise=True), "m", "127.0.0.1")
    assert refused.value.hint and "--lan" in refused.value.hint
    with pytest.raises(UsageError, match="fixed port"):
        announcement(lan(port=0), "m", "0.0.0.0", "laptop", lambda: ["10.0.0.2"])


def test_the_router_browses_for_the_type_the_server_announces() -> None:
    # Two spellings, as route may not import server: this holds them together.
    assert discover.SERVICE_TYPE == advertise.SERVICE_TYPE


def found(*addresses: str, port: int = 8000) -> Found:
    return Found(f"edge-qwen on box:{port}._edge-qwen._tcp.local.", addresses, port)


def test_a_found_server_becomes_a_replica_url() -> None:
    assert found().label == "edge-qwen on box:8000"
    assert url_of(found("192.168.1.20")) == "http://192.168.1.20:8000"
    # A LAN address before loopback (announced only by a server with nothing else).
    assert url_of(found("127.0.0.1", "192.168.1.20")) == "http://192.168.1.20:8000"
    assert url_of(found("127.0.0.1")) == "http://127.0.0.1:8000"
    assert url_of(found("fd00::2", "10.0.0.5")) == "http://10.0.0.5:8000"
    assert url_of(found("fd00::2")) == "http://[fd00::2]:8000"
    for useless in (found(), found("169.254.3.3"), found("not-an-ip"), found("10.0.0.5", port=0)):
        assert url_of(useless) is None


def test_found_servers_join_those_given_once_each() -> None:
    given = ["http://192.168.1.20:8000/v1"]
    servers = [found("192.168.1.20"), found("192.168.1.21"), found("192.168.1.21"), found()]
    assert with_discovered(given, servers) == [
        "http://192.168.1.20:8000/v1",
        "http://192.168.1.21:8000",
    ]
    assert with_discovered(given, []) == given
    with pytest.raises(ReplicaError, match="no edge-qwen server announced itself") as none:
        with_discovered([], [found()])
    assert none.value.hint and "--advertise" in none.value.hint
