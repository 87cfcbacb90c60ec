"""`edge-qwen route`: several `edge-qwen serve` replicas behind one address (LiteLLM)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from edge.cli.app import command, say, settings
from edge.cli.serve import KeyOpt, LanOpt, PortOpt

if TYPE_CHECKING:
    from edge.config import Settings

UrlsArg = Annotated[
    list[str] | None,
    typer.Argument(help="Each replica: http://HOST:PORT (none needed with --discover)"),
]
ReplicaKeyOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--replica-key",
        help="The replicas' key: once for all, or once per replica in order "
        "(EDGE_QWEN_REPLICA_KEYS, comma-separated, keeps it off the command line)",
    ),
]
StrategyOpt = Annotated[
    str | None, typer.Option(help="simple-shuffle (default), least-busy or latency")
]
DiscoverOpt = Annotated[
    bool | None,
    typer.Option("--discover", help="Add the servers announced on the LAN (serve --advertise)"),
]
DiscoverWaitOpt = Annotated[
    float | None, typer.Option(help="Seconds --discover listens (default 3)")
]
NameOpt = Annotated[
    str | None,
    typer.Option(help="The model name clients use (default qwen3; the replicas' own also works)"),
]


@command
def route(
    urls: UrlsArg = None,
    port: PortOpt = None,
    lan: LanOpt = None,
    api_key: KeyOpt = None,
    replica_key: ReplicaKeyOpt = None,
    strategy: StrategyOpt = None,
    name: NameOpt = None,
    discover: DiscoverOpt = None,
    discover_wait: DiscoverWaitOpt = None,
) -> None:
    """Spread requests over several edge-qwen servers, stepping around one that is down.

    Checks each replica's /health and /v1/models, then runs LiteLLM's proxy (installed
    once into its own environment under the edge-qwen home) with each replica as a
    deployment of one model: retries on another replica, a failing one cools down for a
    few seconds. Starts when at least one replica answers; one that does not (asleep,
    loading) is routed to as soon as it does. Binds 127.0.0.1:8000; --lan binds every
    interface and needs --api-key. --discover listens a few seconds for the servers that
    `edge-qwen serve --lan --advertise` announces and adds them. Prints the address
    clients use.
    """
    import os

    from edge.route import check_replicas, ensure_router, plan_router, run_router
    from edge.route.litellm import router_venv
    from edge.server.lan import addresses, is_loopback, server_key

    cfg = settings(
        port=port,
        lan=lan,
        api_key=api_key,
        replica_keys=tuple(replica_key) if replica_key else None,
        route_strategy=strategy,
        discover=discover,
        discover_wait=discover_wait,
    )
    bind = "0.0.0.0" if cfg.lan and cfg.host == "127.0.0.1" else cfg.host
    if not is_loopback(bind) and not (cfg.api_key or "").strip():
        from edge.errors import UsageError

        raise UsageError(
            f"Routing on {bind} exposes every replica to the network, so a key is required.",
            "Pass --api-key KEY (or set EDGE_QWEN_API_KEY).",
        )
    key = server_key(bind, cfg.api_key, lan=False, no_auth=False, home=cfg.home, say=say)
    if cfg.discover:
        urls = discovered(urls or [], cfg)
    replicas = check_replicas(urls or [], list(cfg.replica_keys))
    for r in replicas:
        if r.model:
            say(f"replica {r.url}: ready, serving {r.model}")
        else:
            # Asleep or still loading: LiteLLM tries it again once its cooldown is over.
            say(f"warning: replica {r.url} {r.down}; it gets traffic once it answers")
    plan = plan_router(replicas, name=name, strategy=cfg.route_strategy, key=key)
    exe = ensure_router(router_venv(cfg.home, cfg.router_venv), say)

    def ready() -> None:
        for address in addresses(bind):
            typer.echo(f"http://{address}:{cfg.port}/v1")
        up = sum(1 for r in replicas if r.model)
        say(
            f"Routing model {plan.name!r} over {len(replicas)} replicas ({up} answering, "
            f"{cfg.route_strategy}); Ctrl-C or SIGTERM stops it"
        )

    config = cfg.home / "router" / f"config-{cfg.port}.yaml"
    run_router(
        exe, plan, config, host=bind, port=cfg.port, environ=dict(os.environ), on_ready=ready
    )


def discovered(given: list[str], cfg: Settings) -> list[str]:
    """`given` and the servers announced on the LAN, each found one said."""
    from edge.route.discover import discover, url_of, with_discovered
    from edge.route.replicas import ReplicaError

    if len(cfg.replica_keys) > 1:  # per replica, in an order that discovery cannot know
        raise ReplicaError(
            "With --discover, give one --replica-key for all replicas, or none.",
            "Or list the replicas as http://HOST:PORT, each with its key in order.",
        )
    say(f"Listening {cfg.discover_wait:g} s for edge-qwen servers on the LAN")
    found = discover(cfg.discover_wait)
    for f in found:
        model, auth = f.txt.get("model", "?"), f.txt.get("auth", "?")
        say(f"found {f.label!r} at {url_of(f) or 'no usable address'} ({model}, auth {auth})")
    if not found:
        say("found no server announcing itself")
    return with_discovered(given, found)
