"""Announcing the server on the LAN over mDNS/DNS-SD (`edge-qwen serve --lan --advertise`).

Opt-in: announcing tells everyone on the network that a model server is here, so it is
never on by default. What goes out is what anyone on the LAN may read: the address, the
port and a TXT record (API path, model, version, whether a key is needed), never the key.
`edge-qwen route --discover` (edge/route/discover.py) browses for the same service type.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import ifaddr
from zeroconf import Error as ZeroconfError
from zeroconf import InterfaceChoice, IPVersion, ServiceInfo, Zeroconf

from edge import __version__
from edge.config import Settings
from edge.errors import UsageError
from edge.server.lan import is_loopback

# Our own type rather than _http._tcp: a browser of _http._tcp sees every printer's and
# router's admin page, and `route --discover` wants exactly the edge-qwen servers.
# edge/route/discover.py spells it again (route may not import server); a test holds them equal.
SERVICE_TYPE = "_edge-qwen._tcp.local."
API_PATH = "/v1"
WILDCARD = ("0.0.0.0", "::", "")
MAX_LABEL = 63  # bytes in one DNS label: the instance name and the host name


@dataclass(frozen=True)
class Announcement:
    """What `advertised` registers: one DNS-SD service instance of SERVICE_TYPE."""

    name: str  # the instance, e.g. "edge-qwen on laptop:8000"
    host: str  # the target of its SRV record, e.g. "laptop.local."
    port: int
    addresses: tuple[str, ...]
    txt: dict[str, str] = field(default_factory=dict)
    interfaces: tuple[str, ...] = ()  # where to answer queries; () for every interface

    @property
    def full_name(self) -> str:
        return f"{self.name}.{SERVICE_TYPE}"


def txt_record(model_id: str, keyed: bool) -> dict[str, str]:
    """The TXT record: how to talk to the server. Whether a key is needed, never the key:
    any machine on the LAN can read it."""
    return {
        "path": API_PATH,
        "model": model_id,
        "version": __version__,
        "auth": "key" if keyed else "none",
    }


def announcement(
    settings: Settings,
    model_id: str,
    bind: str,
    hostname: str | None = None,
    interface_addresses: Callable[[], list[str]] | None = None,
) -> Announcement | None:
    """The announcement for a server bound to `bind` with `settings` (whose api_key is the
    key in force); None when `settings.advertise` is off; `check_reachable`'s errors."""
    if not settings.advertise:
        return None
    check_reachable(settings, bind)
    host = _label(hostname or socket.gethostname())
    wildcard = bind in WILDCARD
    found = (interface_addresses or _interface_addresses)() if wildcard else [bind]
    return Announcement(
        name=_fit(f"edge-qwen on {host}:{settings.port}"),
        host=f"{host}.local.",
        port=settings.port,
        addresses=tuple(found),
        txt=txt_record(model_id, bool(settings.api_key)),
        interfaces=() if wildcard else (bind,),
    )


def check_reachable(settings: Settings, bind: str) -> None:
    """A UsageError if `--advertise` would announce what no other machine can reach: a
    loopback address, or port 0 (whose real port is known only once bound)."""
    if not settings.advertise:
        return
    if is_loopback(bind):
        raise UsageError(
            f"--advertise would announce {bind}, which only this machine can reach.",
            "Add --lan (every interface, with a key) or --host with a LAN address.",
        )
    if settings.port == 0:
        raise UsageError("--advertise needs a fixed port.", "Pass --port, e.g. --port 8000.")


def _interface_addresses() -> list[str]:
    """This machine's IPv4 addresses, as a server bound to 0.0.0.0 answers on all of them.

    The interfaces, not the host name's DNS answer: on many laptops the name resolves to
    127.0.1.1. Loopback only when there is nothing else (no network, or a test's namespace:
    then the announcement reaches this machine only, and 127.0.0.1 is right for it).
    """
    ips = [
        str(ip.ip)
        for adapter in ifaddr.get_adapters()
        for ip in adapter.ips
        if ip.is_IPv4 and isinstance(ip.ip, str)
    ]
    outside = [ip for ip in ips if not is_loopback(ip) and not ip.startswith("169.254.")]
    return outside or [ip for ip in ips if is_loopback(ip)][:1]


def _label(hostname: str) -> str:
    """The first label of the host name, as mDNS names a host (`laptop` of `laptop.lan`)."""
    first = hostname.split(".")[0].strip() or "edge-qwen"
    return first.encode()[:MAX_LABEL].decode(errors="ignore")


def _fit(name: str) -> str:
    return name.encode()[:MAX_LABEL].decode(errors="ignore")


def service_info(ann: Announcement) -> ServiceInfo:
    """zeroconf's record of the announcement."""
    return ServiceInfo(
        SERVICE_TYPE,
        ann.full_name,
        port=ann.port,
        properties=ann.txt,
        server=ann.host,
        parsed_addresses=list(ann.addresses),
    )


@contextmanager
def advertised(ann: Announcement | None, say: Callable[[str], None]) -> Iterator[None]:
    """Announce `ann` while the block runs, and withdraw it (goodbye packets) when it ends,
    however it ends. None: nothing is announced.

    A network that refuses multicast is a warning, not an error: the server is still
    reachable by its address, which serve prints, and a laptop's network comes and goes.
    """
    if ann is None:
        yield
        return
    registered = _register(ann, say)
    if registered is None:
        yield
        return
    zc, info = registered  # info: its name may have changed to stay unique
    try:
        yield
    finally:
        try:
            zc.unregister_service(info)
        finally:
            zc.close()


def _register(ann: Announcement, say: Callable[[str], None]) -> tuple[Zeroconf, ServiceInfo] | None:
    """A running responder that announces `ann`; None (and a warning) if the network
    refuses."""
    zc = None
    try:
        zc = Zeroconf(
            interfaces=list(ann.interfaces) or InterfaceChoice.All, ip_version=IPVersion.V4Only
        )
        info = service_info(ann)
        # A second server on this host (another port) gets "... (2)": names are unique.
        zc.register_service(info, allow_name_change=True)
    except (OSError, ZeroconfError) as exc:
        if zc is not None:
            zc.close()
        say(f"warning: cannot announce on the LAN ({exc}); clients need the address")
        return None
    where = ", ".join(f"{a}:{ann.port}" for a in ann.addresses)
    label = info.name.removesuffix("." + SERVICE_TYPE)
    say(f"Announced on the LAN as {label!r} ({where}; {SERVICE_TYPE})")
    return zc, info
