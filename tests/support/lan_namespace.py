"""mDNS for real, inside a network namespace that has loopback alone, so nothing is
announced on the machine's own network: `in_lan_namespace` runs this module there as
`python -m tests.support.lan_namespace GGUF`, and it prints one JSON report.

The scenario, all inside the namespace: `edge-qwen serve --lan --advertise` with a key;
a browser (zeroconf) that stays up across what follows; `edge-qwen route --discover`
finds the server and stops at its key (no --replica-key: exit 2, before LiteLLM starts);
the server stops on SIGTERM and the browser sees its announcement withdrawn; a second
`route --discover` finds nothing; `serve --advertise` without --lan is refused.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from tests.support.cli import EDGE_QWEN, run_cli, start
from tests.support.live_server import free_port, wait_ready
from tests.support.repo import REPO_ROOT

KEY = "lan-namespace-key"
SETUP = "ip link set lo up && ip link set lo multicast on && ip route add 224.0.0.0/4 dev lo && "
WITHDRAW_LIMIT_S = 10.0
LIMIT_S = 240  # the whole scenario


def namespace_problem() -> str | None:
    """Why a namespace with loopback alone cannot be made here, or None if it can."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare or ip (util-linux, iproute2) is not installed"
    probe = ["unshare", "-rn", "sh", "-c", SETUP + "true"]
    done = subprocess.run(probe, capture_output=True, text=True, check=False, timeout=30)
    if done.returncode != 0:
        return f"unshare -rn is not permitted here: {done.stderr.strip()[:200]}"
    return None


def in_lan_namespace(gguf: str, env: dict[str, str]) -> dict[str, Any]:
    """Run the scenario in a fresh user+network namespace; its report."""
    driver = f"{sys.executable} -m tests.support.lan_namespace {gguf}"
    done = subprocess.run(
        ["unshare", "-rn", "sh", "-c", SETUP + "exec " + driver],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=LIMIT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


class Watch:
    """A browser of edge-qwen's service type: what was added, resolved and removed."""

    def __init__(self) -> None:
        from zeroconf import IPVersion, ServiceBrowser, Zeroconf

        from edge.route.discover import SERVICE_TYPE

        self.added: dict[str, dict[str, Any]] = {}
        self.removed: list[str] = []
        self.lock = threading.Lock()
        self.zc = Zeroconf(ip_version=IPVersion.V4Only)
        self.browser = ServiceBrowser(self.zc, SERVICE_TYPE, handlers=[self.on_change])

    def on_change(self, zeroconf: Any, service_type: str, name: str, state_change: Any) -> None:
        from zeroconf import ServiceStateChange

        with self.lock:
            if state_change is ServiceStateChange.Removed:
                self.removed.append(name)
            elif state_change is ServiceStateChange.Added:
                self.added[name] = {}

    def resolve(self) -> None:
        from edge.route.discover import SERVICE_TYPE

        for name in list(self.added):
            info = self.zc.get_service_info(SERVICE_TYPE, name, timeout=3000)
            if info is not None:
                self.added[name] = {
                    "addresses": info.parsed_addresses(),
                    "port": info.port,
                    "txt": info.decoded_properties,
                    "key_in_txt": KEY.encode() in info.text,
                }

    def wait_removed(self, limit: float) -> bool:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            with self.lock:
                if self.removed:
                    return True
            time.sleep(0.1)
        return False

    def close(self) -> None:
        self.browser.cancel()
        self.zc.close()


def scenario(gguf: str) -> dict[str, Any]:
    env = dict(os.environ)
    port = free_port()
    report: dict[str, Any] = {"port": port}
    watch = Watch()
    args = ["serve", "-m", gguf, "--port", str(port), "--lan", "--advertise", "--api-key", KEY]
    server = start([*EDGE_QWEN, *args], env)
    try:
        wait_ready(f"http://127.0.0.1:{port}", alive=lambda: server.poll() is None)
        found = run_cli(["route", "--discover", "--discover-wait", "2"], env, timeout=60)
        report["route"] = {"code": found.returncode, "err": found.stderr}
        watch.resolve()
        report["browsed"] = dict(watch.added)
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=60)
        report["serve"] = {"code": server.returncode, "err": err}
        report["withdrawn"] = watch.wait_removed(WITHDRAW_LIMIT_S)
    finally:
        if server.poll() is None:
            server.kill()
        watch.close()
    after = run_cli(["route", "--discover", "--discover-wait", "1"], env, timeout=60)
    report["after"] = {"code": after.returncode, "err": after.stderr}
    loopback = run_cli(["serve", "-m", gguf, "--port", str(port), "--advertise"], env, timeout=60)
    report["loopback"] = {"code": loopback.returncode, "err": loopback.stderr}
    return report


if __name__ == "__main__":
    print(json.dumps(scenario(sys.argv[1])))
