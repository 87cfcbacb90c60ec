"""Finding replicas on the LAN: the `edge-qwen serve --advertise` servers, over mDNS/DNS-SD.

A browse listens for a fixed time (a few seconds: answers to mDNS queries come within a
second on a LAN, and a laptop waking from sleep may take one more query round), then
reads each service's SRV, TXT and address records, which arrive with the browse's answers.
What comes back is plain data (`Found`), turned into replica URLs by pure functions.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from dataclasses import dataclass, field

from edge.route.replicas import ReplicaError, normalize

# The type edge/server/advertise.py announces (route may not import server; a test holds
# the two equal).
SERVICE_TYPE = "_edge-qwen._tcp.local."
MAX_FOUND = 32  # more than any home LAN has; bounds the resolving below
RESOLVE_S = 2.0  # for all the services' records that did not come with the browse


@dataclass(frozen=True)
class Found:
    """One announced server: its instance name, addresses, port and TXT record."""

    name: str
    addresses: tuple[str, ...]
    port: int
    txt: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The instance name without the service type: "edge-qwen on laptop:8000"."""
        return self.name.removesuffix("." + SERVICE_TYPE)


def url_of(found: Found) -> str | None:
    """The replica URL of a found server (http://ADDRESS:PORT), None if it gave no usable
    address. IPv4 before IPv6, and a LAN address before loopback, which a server announces
    only when it has nothing else (then it is this machine)."""
    ips = []
    for text in found.addresses:
        try:
            ips.append(ipaddress.ip_address(text))
        except ValueError:
            continue
    usable = [ip for ip in ips if not ip.is_link_local and not ip.is_unspecified]
    if not usable or not 0 < found.port < 65536:
        return None
    best = min(usable, key=lambda ip: (ip.is_loopback, ip.version))
    host = f"[{best}]" if best.version == 6 else str(best)
    return f"http://{host}:{found.port}"


def with_discovered(given: list[str], found: list[Found]) -> list[str]:
    """The replicas to route over: those given, then each found one not among them."""
    urls = list(given)
    seen = {normalize(u) for u in given}
    for f in found:
        url = url_of(f)
        if url and url not in seen:
            seen.add(url)
            urls.append(url)
    if not urls:
        raise ReplicaError(
            "No replica given, and no edge-qwen server announced itself on the LAN.",
            "Start one with `edge-qwen serve --lan --advertise`, wait longer with "
            "--discover-wait, or give replicas as http://HOST:PORT.",
        )
    return urls


def discover(wait_s: float) -> list[Found]:
    """The servers that announce SERVICE_TYPE on the LAN within `wait_s` seconds."""
    from zeroconf import Error as ZeroconfError
    from zeroconf import IPVersion, ServiceBrowser, ServiceStateChange, Zeroconf

    names: list[str] = []
    lock = threading.Lock()

    def on_change(
        zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        with lock:  # called on zeroconf's thread
            if state_change is ServiceStateChange.Added and name not in names:
                names.append(name)

    try:
        zc = Zeroconf(ip_version=IPVersion.V4Only)
    except (OSError, ZeroconfError) as exc:
        raise ReplicaError(
            f"Cannot listen for servers on the LAN ({exc}).",
            "Give the replicas as http://HOST:PORT instead of --discover.",
        ) from None
    try:
        browser = ServiceBrowser(zc, SERVICE_TYPE, handlers=[on_change])
        time.sleep(wait_s)
        browser.cancel()
        with lock:
            wanted = names[:MAX_FOUND]
        deadline = time.monotonic() + RESOLVE_S
        found = []
        for name in wanted:
            left_ms = max(1, int((deadline - time.monotonic()) * 1000))
            info = zc.get_service_info(SERVICE_TYPE, name, timeout=left_ms)
            if info is not None and info.port is not None:
                txt = {k: v or "" for k, v in info.decoded_properties.items()}
                found.append(Found(name, tuple(info.parsed_addresses()), info.port, txt))
        return found
    finally:
        zc.close()
