"""Security defaults, shown on real servers on 127.0.0.1 with real clients.

Loopback unless told otherwise; a key off loopback; only the exact key opens /v1; no key
or prompt text in the logs; CORS closed unless origins are named; the body limit holds
before the body is read; stalled connections (slow headers) are closed at the head deadline
while others are served; the web page's own script is the only one allowed to run.
(The page itself, in Chromium, is in test_webpage.py; what needs no model, such as which
binds need a key and the page's pinned script, in tests/unit/test_security.py.)
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx2 as httpx
import pytest
import uvicorn

from edge.config import Settings
from edge.errors import UsageError
from edge.server import create_app
from edge.server.connections import FILE_LIMIT_CAP
from edge.server.lan import server_key
from edge.server.web import site
from tests.support.cli import assert_clean_failure, run_cli, serve
from tests.support.live_server import free_port, wait_ready
from tests.support.slow import slow_fixture
from tests.support.sockets import HALF_HEAD, lifetimes

WAIT = 60.0
KEY = "k3y-Zq8vR2mW5tY7uP0aS4dF6gH9jL1x"  # 32 characters


GOOD = "http://good.example"
EVIL = "http://evil.example"
LIMIT = Settings().max_body_bytes  # `serve` keeps the default: 8 MiB


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Like conftest's cli_env, shared by this module's long-lived servers."""
    home = tmp_path_factory.mktemp("security")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "EDGE_QWEN_"))}
    return {
        **clean,
        "EDGE_QWEN_HOME": str(home / "home"),
        "HF_HOME": str(home / "hf"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "PYTHONUNBUFFERED": "1",
    }


@slow_fixture(scope="module")
def model(gguf_of: Callable[[str, str], Path]) -> str:
    return str(gguf_of("scripted", "Q8_0"))


@slow_fixture(scope="module")
def plain(model: str, env: dict[str, str]) -> Iterator[str]:
    """`edge-qwen serve -m M`: every default as a user gets it."""
    with serve(["-m", model], env) as (url, _):
        yield url


@slow_fixture(scope="module")
def keyed(model: str, env: dict[str, str]) -> Iterator[str]:
    """`serve --api-key KEY --cors-origin GOOD`."""
    with serve(["-m", model, "--api-key", KEY, "--cors-origin", GOOD], env) as (url, _):
        yield url


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


# --- loopback unless told otherwise -----------------------------------------------------


def listening(port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The local addresses of the sockets LISTENing on `port`, from the kernel's own tables."""
    found: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].split(":")
            if fields[3] != "0A" or int(hex_port, 16) != port:  # 0A = LISTEN
                continue
            raw = bytes.fromhex(address)  # 32-bit words in host (little-endian) order
            words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.append(ipaddress.ip_address(words))
    return found


@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="reads Linux's /proc/net/tcp")
def test_default_bind_is_loopback_only(plain: str) -> None:
    bound = listening(int(plain.rsplit(":", 1)[1]))
    assert bound, "no listening socket found for the server's port"
    assert all(a.is_loopback for a in bound), bound


def test_cli_refuses_other_binds_without_a_key(model: str, env: dict[str, str]) -> None:
    for extra, extra_env in (
        (["--host", "::"], {}),
        (["--host", "0.0.0.0", "--api-key", "  "], {}),
        (["--host", "0.0.0.0"], {"EDGE_QWEN_API_KEY": ""}),
    ):
        args = ["serve", "-m", model, "--port", str(free_port()), *extra]
        refused = run_cli(args, {**env, **extra_env}, timeout=WAIT)
        assert_clean_failure(refused, 2, "an API key is required", "--no-auth")


def test_lan_refuses_an_empty_stored_key(model: str, tmp_path: Path, env: dict[str, str]) -> None:
    """Bug fixed: an empty ~/.cache/edge-qwen/api_key used to mean NO auth on every interface."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "api_key").write_text("\n")
    with pytest.raises(UsageError, match="empty"):
        server_key("0.0.0.0", None, lan=True, no_auth=False, home=home, say=print)
    args = ["serve", "-m", model, "--lan", "--port", str(free_port())]
    refused = run_cli(args, {**env, "EDGE_QWEN_HOME": str(home)}, timeout=WAIT)
    assert_clean_failure(refused, 2, "is empty")


# --- only the exact key opens /v1 -------------------------------------------------------


def wrong_keys() -> list[str]:
    """Authorization values that must all fail: every length, every near miss."""
    near = [KEY[:i] for i in range(len(KEY))]  # every prefix, the empty one included
    near += [
        KEY + "x",
        KEY + KEY,
        "x" + KEY,
        KEY[1:],
        KEY[:-1] + chr(ord(KEY[-1]) ^ 1),
        KEY.swapcase(),
        "A" * len(KEY),
        "A" * 4096,
    ]
    values = [f"Bearer {k}".rstrip() for k in near]  # HTTP trims a trailing space anyway
    # (`Bearer  KEY`, two spaces, is not among them: RFC 9110 puts 1*SP after the scheme.)
    values += [KEY, f"Basic {KEY}", f"Bearer {KEY} {KEY}", f"Token {KEY}", ""]
    return values


def test_only_the_exact_key_opens_the_api(keyed: str) -> None:
    messages = set()
    with httpx.Client(base_url=keyed, timeout=WAIT) as client:
        for value in wrong_keys():
            reply = client.get("/v1/models", headers={"authorization": value})
            assert reply.status_code == 401, value
            error = reply.json()["error"]
            assert error["type"] == "authentication_error", value
            messages.add(error["message"])
        # One fixed refusal: it neither echoes what was sent nor hints how close it was.
        assert len(messages) == 1 and KEY[:4] not in messages.pop()
        assert client.get("/v1/models").status_code == 401  # no header at all
        assert client.get("/v1/models", headers=bearer(KEY)).status_code == 200
        for same in (f"bearer {KEY}", f"BEARER {KEY}", f"Bearer  {KEY}"):  # RFC 9110's forms
            assert client.get("/v1/models", headers={"authorization": same}).status_code == 200
        hi = {"model": "qwen3", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
        for path, body in (("/v1/chat/completions", hi), ("/v1/completions", {"prompt": "Hi"})):
            assert client.post(path, json=body).status_code == 401, path
            assert client.post(path, json=body, headers=bearer(KEY[:-1])).status_code == 401, path
        assert client.post("/v1/chat/completions", json=hi, headers=bearer(KEY)).status_code == 200
        # Other spellings of an API path do not slip past the check.
        for path in ("/v1/models/", "/%76%31/models", "/v1/models?key=" + KEY, "/v1//models"):
            assert client.get(path).status_code in (401, 404), path
        # Open by design: the page (it asks for the key), the health check, the metrics.
        for path in ("/", "/health", "/metrics", *site().assets):
            assert client.get(path).status_code == 200, path


# --- CORS --------------------------------------------------------------------------------


def preflight(url: str, origin: str) -> httpx.Response:
    return httpx.options(
        f"{url}/v1/chat/completions",
        headers={
            "origin": origin,
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization,content-type",
        },
        timeout=WAIT,
    )


def test_cors_is_closed_by_default(plain: str) -> None:
    for origin in (EVIL, GOOD, "null"):
        reply = preflight(plain, origin)
        assert "access-control-allow-origin" not in reply.headers, reply.headers
        simple = httpx.get(f"{plain}/v1/models", headers={"origin": origin}, timeout=WAIT)
        assert simple.status_code == 200  # answered, but a browser will not let the page read it
        assert "access-control-allow-origin" not in simple.headers, simple.headers


def test_cors_allows_only_the_named_origins(keyed: str) -> None:
    good = httpx.get(f"{keyed}/v1/models", headers={"origin": GOOD, **bearer(KEY)}, timeout=WAIT)
    assert good.headers.get("access-control-allow-origin") == GOOD
    assert "access-control-allow-credentials" not in good.headers
    for origin in (EVIL, GOOD + ".evil.example", "http://good.example:8080", "null"):
        reply = httpx.get(
            f"{keyed}/v1/models", headers={"origin": origin, **bearer(KEY)}, timeout=WAIT
        )
        assert "access-control-allow-origin" not in reply.headers, origin
        assert "access-control-allow-origin" not in preflight(keyed, origin).headers, origin


def test_cors_preflight_of_a_named_origin_passes_with_a_key(keyed: str) -> None:
    reply = preflight(keyed, GOOD)
    assert reply.status_code == 200
    assert reply.headers.get("access-control-allow-origin") == GOOD


# --- request size ------------------------------------------------------------------------


def raw_request(url: str, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """Send bytes over a plain socket; the status and body of the answer (bounded waits)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=WAIT) as sock:
        sock.sendall(head + body)
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1]


def _length(data: bytes) -> int:
    found = re.search(rb"(?i)\r\ncontent-length: *(\d+)", data.split(b"\r\n\r\n", 1)[0])
    return int(found.group(1)) if found else 1 << 30


def test_an_oversized_body_gets_413_before_it_is_sent(plain: str) -> None:
    def head(size: int) -> bytes:
        return (
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n"
        ).encode()

    # Only the headers go out: the answer comes while the server still waits for 8 MiB.
    status, body = raw_request(plain, head(LIMIT + 1))
    assert status == 413
    error = json.loads(body)["error"]
    assert error["type"] == "invalid_request_error" and str(LIMIT) in error["message"]
    assert set(error) == {"message", "type", "param", "code"}
    status, _ = raw_request(plain, head(10**12))
    assert status == 413
    # At the limit itself the body is read (and this one is no JSON object: 400, not 413).
    status, body = raw_request(plain, head(LIMIT), b" " * LIMIT)
    assert status == 400, body[:200]


# --- stalled connections -----------------------------------------------------------------

HEAD_S = 1.0  # EDGE_QWEN_HEADER_TIMEOUT_S for this test; the default is 10
STALLED = 200


def _few_files() -> None:
    """In the child before it starts: a desktop's soft open-file limit, for serve to raise."""
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))


def open_files_limit(pid: int) -> int:
    """The soft open-file limit of a running process, from Linux's /proc."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no open-file limit in /proc")


@pytest.mark.skipif(not os.path.exists("/proc/self/limits"), reason="reads Linux's /proc")
def test_stalled_connections_are_closed_and_others_served(model: str, env: dict[str, str]) -> None:
    """Slow headers (slowloris): sockets that send half a head, or nothing, are closed at
    the head deadline, and a normal request is answered while they are held."""
    import resource

    timed = {**env, "EDGE_QWEN_HEADER_TIMEOUT_S": str(HEAD_S)}
    with serve(["-m", model], timed, preexec_fn=_few_files) as (url, proc), ExitStack() as stack:
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        assert open_files_limit(proc.pid) == min(hard, FILE_LIMIT_CAP)  # raised from 256
        port = int(url.rsplit(":", 1)[1])
        t0 = time.monotonic()
        stalled = [
            stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=WAIT))
            for _ in range(STALLED)
        ]
        for sock in stalled[::2]:
            sock.sendall(HALF_HEAD)  # the other half send nothing at all
        r = httpx.post(
            f"{url}/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 20},
            timeout=WAIT,
        )
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]
        ends = lifetimes(stalled, HEAD_S + 10, since=t0)
        assert all(end is not None for end in ends), f"{ends.count(None)} still open"
        assert HEAD_S * 0.9 <= min(e for e in ends if e) and max(e for e in ends if e) < HEAD_S + 10
        assert httpx.get(f"{url}/health", timeout=WAIT).status_code == 200


# --- nothing secret in the logs ----------------------------------------------------------

PROMPT = "Zebra-umbrella-7431 confidential prompt"
WRONG = "wrong-K3y-Qx91Lm"


def secret_traffic(url: str) -> None:
    """Requests carrying PROMPT and the keys along every path: answered, streamed, refused, bad."""
    msgs = [{"role": "user", "content": PROMPT}]
    ok, wrong = bearer(KEY), bearer(WRONG)
    with httpx.Client(base_url=url, timeout=WAIT) as c:
        assert (
            c.post(
                "/v1/chat/completions", json={"model": "q", "messages": msgs}, headers=ok
            ).status_code
            == 200
        )
        with c.stream(
            "POST",
            "/v1/chat/completions",
            headers=ok,
            json={"model": "q", "messages": msgs, "stream": True},
        ) as streamed:
            assert streamed.status_code == 200 and "[DONE]" in streamed.read().decode()
        assert (
            c.post(
                "/v1/completions", json={"prompt": PROMPT, "max_tokens": 4}, headers=ok
            ).status_code
            == 200
        )
        assert (
            c.post("/v1/chat/completions", json={"messages": msgs}, headers=wrong).status_code
            == 401
        )
        assert c.get("/v1/models", headers={"authorization": WRONG}).status_code == 401
        bad = {"model": "q", "messages": msgs, "temperature": PROMPT}
        assert c.post("/v1/chat/completions", json=bad, headers=ok).status_code == 400
        broken = '{"messages": [{"role": "user", "content": "' + PROMPT
        assert c.post("/v1/chat/completions", content=broken, headers=ok).status_code == 400
        assert (
            c.post("/v1/chat/completions", json={"messages": PROMPT}, headers=ok).status_code == 400
        )


def test_no_key_or_prompt_in_the_serve_logs(model: str, env: dict[str, str]) -> None:
    """`serve` has no verbosity flag (uvicorn runs at "warning"), so this is its most verbose."""
    with serve(["-m", model, "--api-key", KEY], env) as (url, proc):
        secret_traffic(url)
        proc.terminate()
        out, err = proc.communicate(timeout=WAIT)
    logs = out + err
    assert "Serving" in err  # the right streams were read
    for secret in (KEY, WRONG, PROMPT, "Zebra", "Hello world"):
        assert secret not in logs, (secret, logs)


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def test_no_key_or_prompt_in_debug_logs(gguf_of: Callable[[str, str], Path]) -> None:
    """Even with every logger at DEBUG and uvicorn's access log on (more than `serve` ever
    configures), requests leave neither key nor prompt in a log record."""
    from edge.chat.template import ChatTemplate
    from edge.engine import Engine
    from edge.engine.plan import make_plan, read_model_info

    gguf = gguf_of("scripted", "Q8_0")
    info = read_model_info(gguf)

    def load() -> tuple[Engine, ChatTemplate]:
        return Engine(gguf, make_plan(info, Settings(ctx=2048)), info), ChatTemplate.from_gguf(gguf)

    app = create_app("qwen3-test", load, Settings(api_key=KEY))
    config = uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="debug")
    server = uvicorn.Server(config)  # its Config has set up uvicorn's loggers by now
    collect = Collect()
    loggers = [logging.getLogger(n) for n in ("", "uvicorn", "uvicorn.access", "uvicorn.error")]
    before = [(lg.level, lg.propagate) for lg in loggers]
    for lg in loggers:
        lg.addHandler(collect)
        lg.setLevel(logging.DEBUG)
    logging.getLogger("uvicorn.error").propagate = False  # each record collected once
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{config.port}"
    try:
        wait_ready(url)
        secret_traffic(url)
    finally:
        server.should_exit = True
        thread.join(timeout=WAIT)
        for lg, (level, propagate) in zip(loggers, before, strict=True):
            lg.removeHandler(collect)
            lg.setLevel(level)
            lg.propagate = propagate
    text = "\n".join(collect.lines)
    assert "POST /v1/chat/completions" in text  # the access log was on and collected
    for secret in (KEY, WRONG, PROMPT, "Zebra"):
        assert secret not in text, (secret, text)


# --- the web page's policy ---------------------------------------------------------------


def test_page_is_served_with_a_strict_policy(plain: str) -> None:
    reply = httpx.get(plain + "/", timeout=WAIT)
    csp = reply.headers["content-security-policy"]
    for rule in (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "object-src 'none'",
        "frame-ancestors 'none'",
        "img-src 'none'",
        "connect-src 'self'",
    ):
        assert rule in csp, (rule, csp)
    assert "unsafe" not in csp and "*" not in csp and "http" not in csp
    # Its scripts and styles are served too, and open like the page: no key asked.
    for asset in re.findall(r'(?:src|href)="(assets/[^"]+)"', reply.text):
        assert httpx.get(f"{plain}/{asset}", timeout=WAIT).status_code == 200, asset
