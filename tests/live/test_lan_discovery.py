"""`edge-qwen serve --lan --advertise` found by `edge-qwen route --discover`, over real
mDNS, in a user+network namespace with loopback alone (nothing reaches the machine's own
network). The scenario runs inside it (tests/support/lan_namespace.py) and reports back.
The pure parts: tests/unit/test_lan_discovery.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.lan_namespace import KEY, in_lan_namespace, namespace_problem


def test_an_advertised_server_is_found_and_withdrawn_on_shutdown(
    gguf_of: Callable[[str, str], Path], cli_env: dict[str, str]
) -> None:
    problem = namespace_problem()
    if problem:
        pytest.skip(f"no network namespace to announce in: {problem}")
    report = in_lan_namespace(str(gguf_of("scripted", "Q8_0")), cli_env)
    port, url = report["port"], f"http://127.0.0.1:{report['port']}"
    # The announcement: the address it binds (loopback is all the namespace has), the
    # port, and a TXT record that says a key is needed without saying it.
    [(name, seen)] = report["browsed"].items()
    assert name.startswith("edge-qwen on ") and name.endswith(f":{port}._edge-qwen._tcp.local.")
    assert seen["addresses"] == ["127.0.0.1"] and seen["port"] == port
    assert seen["txt"]["path"] == "/v1" and seen["txt"]["auth"] == "key"
    assert seen["txt"]["model"] == "scripted-Q8_0" and not seen["key_in_txt"]
    # route --discover finds it, says so, and stops at its key before LiteLLM starts.
    route = report["route"]
    assert route["code"] == 2, route["err"]
    assert f"at {url} (scripted-Q8_0, auth key)" in route["err"]
    assert "refused the key" in route["err"] and "Traceback" not in route["err"]
    # SIGTERM: the server withdraws its announcement and exits 0.
    assert report["serve"]["code"] == 0, report["serve"]["err"][-2000:]
    assert "Announced on the LAN as" in report["serve"]["err"]
    assert KEY not in report["serve"]["err"] + route["err"]
    assert report["withdrawn"], "no goodbye seen within the limit"
    after = report["after"]
    assert after["code"] == 2 and "no edge-qwen server announced itself" in after["err"]
    # Announcing a loopback server would tell the LAN of an address it cannot reach.
    loopback = report["loopback"]
    assert loopback["code"] == 2 and "only this machine can reach" in loopback["err"]
