"""Agent CLIs on their default settings against `edge-qwen serve`, with no network but
loopback.

    python scripts/agent_clients.py --model scripted.gguf [--client codex] [--timeout 180]
        [--offline] [--out DIR] [--json]

For each client (Qwen Code CLI, opencode, OpenAI Codex CLI, and the Vercel AI SDK driven by
a few lines of Node.js, at pinned versions) it starts
`edge-qwen serve --ctx 40960` on the model as a process, puts a recording proxy in front
of it, and runs the client once, non-interactively, asking "say hi" (opencode a second
time with a ~7,000-token file attached). Each client gets a fresh temporary HOME holding
only what it needs to find the server: the base URL, and a dummy key or a model name
where it insists on one. Nothing else is configured, so each runs on its own defaults
(its system prompt, its tools, its output budget, streaming or not), which is what a new
user sees. The report says per run: the exit code, whether "Hello world" (what the
scripted test model answers) was printed, the wall time, the answer, and every request
the client sent (endpoint, stream, the output budget it asked for, the tools it offered,
the server's status and prompt size).

The clients are installed from npm into `$EDGE_QWEN_CLIENTS_DIR`, else
`$XDG_CACHE_HOME/edge-qwen/clients` (`~/.cache/edge-qwen/clients`), one folder per
version, reused when present; `--offline` only uses what is there.

Isolation: the runs happen in a new network namespace that has only a loopback device,
so no client can phone home (their telemetry switches are also turned off where they have
one). The script re-executes itself under `unshare -n` (as root) or `unshare -rn` (a user
namespace, where the kernel allows them) and brings `lo` up with `ip link set lo up`
first; without either it stops with a message that says so. Installing happens before,
outside the namespace. tests/test_agent_clients.py runs it (opt-in).
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "scripts"))
from soak import free_port, isolated_env, start_serve, wait_ready  # noqa: E402

CTX = 40960  # Qwen3's whole context: what a user serves agents with
PROMPT = "say hi"
ANSWER = "Hello world"  # what the scripted test model says, whatever it is asked
MODEL_NAME = "qwen3"
DUMMY_KEY = "sk-edge-qwen-none"  # the server has no key; clients that need one get this
TIMEOUT = 180.0  # per client run
SERVER_START = 120.0
INSIDE = "--inside-namespace"  # the re-executed script's marker (not for users)
ATTACHED_TOKENS = 7000  # opencode's second run attaches a file about this long


@dataclass(frozen=True)
class Client:
    """One npm-distributed client at a pinned version: an agent CLI (`bin`), or a library
    that a small script of ours (`script`, written beside it) drives."""

    name: str
    package: str
    version: str
    bin: str = ""
    also: tuple[str, ...] = ()  # other packages it needs, pinned
    script: str = ""  # for a library: the Node.js program that uses it

    def folder(self, cache: Path) -> Path:
        return cache / f"{self.name}-{self.version}"

    def executable(self, cache: Path) -> Path:
        if self.script:
            return self.folder(cache) / f"{self.name}.mjs"
        return self.folder(cache) / "node_modules" / ".bin" / self.bin


# The Vercel AI SDK's default provider (`openai`, which reads OPENAI_BASE_URL and
# OPENAI_API_KEY) and its default API for it (Responses): generateText, then streamText,
# printing the answer and the thinking each shows.
AI_SDK_SCRIPT = """import { openai } from '@ai-sdk/openai';
import { generateText, streamText } from 'ai';
const model = openai(process.argv[2]);
const folded = await generateText({ model, prompt: process.argv[3] });
console.log(`generateText: ${folded.text} | thinking: ${folded.reasoningText ?? ''}`);
let text = '', thinking = '';
for await (const part of streamText({ model, prompt: process.argv[3] }).fullStream) {
  if (part.type === 'text-delta') text += part.text;
  if (part.type === 'reasoning-delta') thinking += part.text;
  if (part.type === 'error') throw part.error;
}
console.log(`streamText: ${text} | thinking: ${thinking}`);
"""

CLIENTS = {
    c.name: c
    for c in (
        Client("qwen-code", "@qwen-code/qwen-code", "0.24.4", "qwen"),
        Client("opencode", "opencode-ai", "1.18.33", "opencode"),
        Client("codex", "@openai/codex", "0.169.0", "codex"),
        Client("ai-sdk", "@ai-sdk/openai", "4.0.126", also=("ai@7.0.185",), script=AI_SDK_SCRIPT),
    )
}


def clients_dir() -> Path:
    """`$EDGE_QWEN_CLIENTS_DIR`, else `$XDG_CACHE_HOME/edge-qwen/clients` (not under the
    model home, so tests that point EDGE_QWEN_HOME at a temp folder still reuse them)."""
    given = os.environ.get("EDGE_QWEN_CLIENTS_DIR")
    if given:
        return Path(given)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edge-qwen" / "clients"


def install(client: Client, cache: Path, offline: bool = False) -> Path:
    """The client's executable, installed with `npm install --prefix` unless it is there."""
    exe = client.executable(cache)
    if exe.exists():
        return exe
    if offline:
        raise SystemExit(f"error: {client.name} {client.version} is not installed in {cache}")
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("error: npm is not on PATH; install Node.js 20 or newer")
    folder = client.folder(cache)
    folder.mkdir(parents=True, exist_ok=True)
    spec = f"{client.package}@{client.version}"
    print(f"installing {spec} into {folder}", file=sys.stderr)
    done = subprocess.run(
        [npm, "install", "--prefix", str(folder), "--no-audit", "--no-fund", spec, *client.also],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode == 0 and client.script:
        exe.write_text(client.script)  # beside node_modules, so its imports resolve
    if done.returncode != 0 or not exe.exists():
        raise SystemExit(f"error: npm install {spec} failed:\n{done.stdout}\n{done.stderr}")
    return exe


# --- the recording proxy ----------------------------------------------------------------

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}
BUDGET_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
KEPT_BODY = 4 << 20  # bytes of each request and answer kept on disk


@dataclass
class Exchange:
    """One request a client sent, and how the server answered it."""

    method: str
    path: str
    status: int = 0
    stream: bool | None = None
    budget: dict[str, int] = field(default_factory=dict)  # max_tokens & co, as sent
    tools: list[str] = field(default_factory=list)  # type:name of each tool offered
    model: str | None = None
    prompt_tokens: int | None = None  # from the answer's usage
    request_bytes: int = 0
    left_out: str | None = None  # the Edge-Qwen-Tools-Left-Out header
    error: str | None = None  # an error answer's message
    seconds: float = 0.0


def tool_names(tools: Any) -> list[str]:
    """`type:name` of each tool in a request (chat, Responses, Messages shapes)."""
    out = []
    for tool in tools if isinstance(tools, list) else []:
        if not isinstance(tool, dict):
            continue
        kind = str(tool.get("type", "?"))
        name = tool.get("name") or (tool.get("function") or {}).get("name")
        out.append(f"{kind}:{name}" if name else kind)
    return out


def describe_request(exchange: Exchange, body: bytes, encoding: str | None) -> None:
    """Fill in what a JSON request body asked for."""
    exchange.request_bytes = len(body)
    if encoding == "gzip":
        body = gzip.decompress(body)
    elif encoding:
        exchange.error = f"request body encoded as {encoding}, not read"
        return
    try:
        data = json.loads(body) if body else None
    except ValueError:
        return
    if not isinstance(data, dict):
        return
    exchange.stream = bool(data.get("stream", False))
    exchange.budget = {k: data[k] for k in BUDGET_FIELDS if isinstance(data.get(k), int)}
    exchange.tools = tool_names(data.get("tools"))
    exchange.model = data.get("model")


USAGE = re.compile(rb'"(?:prompt_tokens|input_tokens)"\s*:\s*(\d+)')
MESSAGE = re.compile(rb'"message"\s*:\s*"((?:[^"\\]|\\.)*)"')


def describe_answer(exchange: Exchange, answer: bytes) -> None:
    """The prompt size (the last usage in the answer) and an error's message."""
    sizes = USAGE.findall(answer)
    if sizes:
        exchange.prompt_tokens = int(sizes[-1])
    if exchange.status >= 400:
        found = MESSAGE.search(answer)
        text = found.group(1) if found else answer[:300]
        exchange.error = text.decode("utf-8", "replace")


class RecordingProxy(ThreadingHTTPServer):
    """Forwards every request to the server on `upstream`, streams the answer back as it
    comes, and records each exchange (bodies kept under `folder`)."""

    daemon_threads = True

    def __init__(self, upstream: int, folder: Path) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream = upstream
        self.folder = folder
        self.exchanges: list[Exchange] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def record(self, exchange: Exchange) -> int:
        with self.lock:
            self.exchanges.append(exchange)
            return len(self.exchanges)


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: RecordingProxy

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the exchanges are the log

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _forward(self) -> None:
        started = time.monotonic()
        exchange = Exchange(self.command, self.path)
        body = self._body()
        describe_request(exchange, body, self.headers.get("Content-Encoding"))
        number = self.server.record(exchange)
        stem = self.server.folder / f"{number:03d}-{re.sub(r'[^a-z0-9]+', '-', self.path.lower())}"
        stem.with_suffix(".request").write_bytes(body[:KEPT_BODY])
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        upstream = http.client.HTTPConnection("127.0.0.1", self.server.upstream, timeout=600)
        try:
            upstream.request(self.command, self.path, body=body, headers=headers)
            answer = upstream.getresponse()
            exchange.status = answer.status
            exchange.left_out = answer.getheader("Edge-Qwen-Tools-Left-Out")
            kept = self._relay(answer)
        finally:
            upstream.close()
        stem.with_suffix(".answer").write_bytes(kept)
        describe_answer(exchange, kept)
        exchange.seconds = round(time.monotonic() - started, 3)

    def _relay(self, answer: http.client.HTTPResponse) -> bytes:
        """Send the answer on as it arrives (chunked unless it has a length); return it."""
        self.send_response_only(answer.status, answer.reason)
        length = answer.getheader("Content-Length")
        for key, value in answer.getheaders():
            if key.lower() not in HOP_BY_HOP:
                self.send_header(key, value)
        self.send_header("Content-Length" if length else "Transfer-Encoding", length or "chunked")
        self.end_headers()
        kept = bytearray()
        while chunk := answer.read1(65536):
            if len(kept) < KEPT_BODY:
                kept += chunk
            if length:
                self.wfile.write(chunk)
            else:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.flush()
        if not length:
            self.wfile.write(b"0\r\n\r\n")
        return bytes(kept)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _forward


# --- the server ---------------------------------------------------------------------------


@contextmanager
def serving(model: Path, folder: Path, ctx: int = CTX) -> Iterator[RecordingProxy]:
    """`edge-qwen serve --ctx CTX` on MODEL as a process, behind a recording proxy."""
    port = free_port()
    log = folder / "server.log"
    proc = start_serve(model, port, 4, ctx, isolated_env(folder / "edge-home"), log)
    proxy: RecordingProxy | None = None
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc, SERVER_START)
        proxy = RecordingProxy(port, folder)
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        yield proxy
    finally:
        if proxy is not None:
            proxy.shutdown()
            proxy.server_close()
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- the clients, each on its defaults ------------------------------------------------------


@dataclass
class Setup:
    """How one client is run: its command line, environment and config files."""

    argv: list[str]
    env: dict[str, str]
    files: dict[str, str] = field(default_factory=dict)  # path under HOME -> content


def qwen_code(exe: Path, base_url: str, attach: Path | None) -> Setup:
    """Qwen Code picks its OpenAI-compatible auth from these three variables (all three
    are needed: key, model and base URL); `qwen "PROMPT"` is its one-shot mode."""
    prompt = PROMPT if attach is None else f"@{attach.name} {PROMPT}"
    env = {
        "OPENAI_BASE_URL": f"{base_url}/v1",
        "OPENAI_API_KEY": DUMMY_KEY,
        "OPENAI_MODEL": MODEL_NAME,
        "QWEN_USAGE_STATISTICS_ENABLED": "false",
        "QWEN_TELEMETRY_ENABLED": "false",
    }
    return Setup([str(exe), prompt], env)


def opencode(exe: Path, base_url: str, attach: Path | None) -> Setup:
    """opencode's documented custom provider: the bundled `@ai-sdk/openai-compatible`
    with our base URL and one model, named as the default model."""
    config = {
        "$schema": "https://opencode.ai/config.json",
        "provider": {
            "edge": {
                "npm": "@ai-sdk/openai-compatible",
                "name": "edge-qwen",
                "options": {"baseURL": f"{base_url}/v1"},
                "models": {MODEL_NAME: {"name": "Qwen3 (edge-qwen)"}},
            }
        },
        "model": f"edge/{MODEL_NAME}",
    }
    argv = [str(exe), "run", PROMPT]
    if attach is not None:
        argv += ["--file", str(attach)]
    env = {"OPENCODE_DISABLE_AUTOUPDATE": "true"}
    return Setup(argv, env, {".config/opencode/opencode.json": json.dumps(config, indent=2)})


def codex(exe: Path, base_url: str, attach: Path | None) -> Setup:
    """Codex's documented custom provider over the Responses API; web_search stays on
    (its default), which the server leaves out of what the model sees."""
    config = f"""model = "{MODEL_NAME}"
model_provider = "edge"

[model_providers.edge]
name = "edge-qwen"
base_url = "{base_url}/v1"
wire_api = "responses"
env_key = "EDGE_QWEN_API_KEY"
"""
    env = {"EDGE_QWEN_API_KEY": DUMMY_KEY}
    return Setup([str(exe), "exec", PROMPT], env, {".codex/config.toml": config})


def ai_sdk(exe: Path, base_url: str, attach: Path | None) -> Setup:
    """The AI SDK's default OpenAI provider, pointed at the server by OPENAI_BASE_URL."""
    env = {"OPENAI_BASE_URL": f"{base_url}/v1", "OPENAI_API_KEY": DUMMY_KEY}
    node = shutil.which("node") or "node"
    return Setup([node, str(exe), MODEL_NAME, PROMPT], env)


SETUPS: dict[str, Callable[[Path, str, Path | None], Setup]] = {
    "qwen-code": qwen_code,
    "opencode": opencode,
    "codex": codex,
    "ai-sdk": ai_sdk,
}

# (client, attach a ~7k-token file?): what a run of the script does, in order
CASES: list[tuple[str, bool]] = [
    ("qwen-code", False),
    ("opencode", False),
    ("opencode", True),
    ("codex", False),
    ("ai-sdk", False),
]


def attachment(folder: Path, tokens: int = ATTACHED_TOKENS) -> Path:
    """A plain-text file of about `tokens` Qwen3 tokens: every line is 17 of them (Qwen3
    reads each digit as a token)."""
    line = "Line {:04d}: the quick brown fox jumps over the lazy dog.\n"
    path = folder / "notes.txt"
    path.write_text("".join(line.format(i) for i in range(tokens // 17)))
    return path


@dataclass
class Result:
    """One client run."""

    client: str
    version: str
    attached: bool
    argv: list[str]
    env: dict[str, str]
    files: dict[str, str]
    exit_code: int | None  # None: killed at the timeout
    answered: bool  # ANSWER appears in what it printed
    wall_s: float
    stdout: str
    stderr: str
    requests: list[Exchange]

    @property
    def label(self) -> str:
        return self.client + (" (7k file attached)" if self.attached else "")

    @property
    def ok(self) -> bool:
        """It printed the answer, exited 0, and the server answered 200 to all it sent."""
        served = bool(self.requests) and all(e.status == 200 for e in self.requests)
        return self.answered and self.exit_code == 0 and served


def base_env(home: Path) -> dict[str, str]:
    """A clean environment: the temporary HOME and XDG folders, no proxies, no keys."""
    keep = ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        XDG_CACHE_HOME=str(home / ".cache"),
        XDG_STATE_HOME=str(home / ".local" / "state"),
        TERM="dumb",
        NO_COLOR="1",
        CI="1",
    )
    return env


def run_client(
    name: str, attached: bool, model: Path, cache: Path, out: Path, timeout: float = TIMEOUT
) -> Result:
    """One client, on a fresh server and a fresh HOME, asked PROMPT once."""
    client = CLIENTS[name]
    folder = out / (name + ("-attached" if attached else ""))
    home, work = folder / "home", folder / "work"
    for path in (home, work):
        path.mkdir(parents=True, exist_ok=True)
    # A project folder under git, as agents expect (Codex refuses to run outside one).
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    attach = attachment(work) if attached else None
    with serving(model, folder) as proxy:
        setup = SETUPS[name](client.executable(cache), proxy.url, attach)
        for rel, content in setup.files.items():
            (home / rel).parent.mkdir(parents=True, exist_ok=True)
            (home / rel).write_text(content)
        env = base_env(home) | setup.env
        started = time.monotonic()
        code, stdout, stderr = _run(setup.argv, env, work, timeout)
        wall = round(time.monotonic() - started, 2)
        exchanges = list(proxy.exchanges)
    return Result(
        name,
        client.version,
        attached,
        setup.argv,
        setup.env,
        setup.files,
        code,
        ANSWER in stdout,
        wall,
        stdout,
        stderr,
        exchanges,
    )


def _run(
    argv: list[str], env: dict[str, str], cwd: Path, timeout: float
) -> tuple[int | None, str, str]:
    """Run ARGV with stdin closed, killing its whole process group at the timeout."""
    proc = subprocess.Popen(
        argv,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
        return proc.returncode, stdout, stderr
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        stdout, stderr = proc.communicate()
        return None, stdout, stderr


# --- the namespace ------------------------------------------------------------------------


def loopback_only() -> bool:
    """This process's network namespace has no device but `lo`."""
    lines = Path("/proc/self/net/dev").read_text().splitlines()[2:]
    return [line.split(":")[0].strip() for line in lines] == ["lo"]


def unshare_command() -> list[str]:
    """`unshare -n` as root, `unshare -rn` (a user namespace) otherwise; SystemExit with the
    reason when neither works here."""
    unshare = shutil.which("unshare")
    if unshare is None:
        raise SystemExit("error: `unshare` (util-linux) is not on PATH; it isolates the clients")
    command = [unshare, "-n"] if os.geteuid() == 0 else [unshare, "-r", "-n"]
    probe = subprocess.run([*command, "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        raise SystemExit(
            "error: cannot make a network namespace with "
            f"`unshare {' '.join(command[1:])}` "
            f"({probe.stderr.strip()}). Run as root, or enable unprivileged user namespaces "
            "(sysctl kernel.unprivileged_userns_clone=1)."
        )
    if shutil.which("ip") is None:
        raise SystemExit("error: `ip` (iproute2) is not on PATH; it brings up loopback")
    return command


def run_isolated(
    model: Path,
    cases: list[tuple[str, bool]] | None = None,
    timeout: float = TIMEOUT,
    out: Path | None = None,
    offline: bool = False,
) -> list[Result]:
    """Install what is missing, then run the cases in a loopback-only network namespace
    (this script again, under unshare); their results."""
    cases = CASES if cases is None else cases
    cache = clients_dir()
    for name in dict.fromkeys(name for name, _ in cases):
        install(CLIENTS[name], cache, offline)
    out = Path(tempfile.mkdtemp(prefix="agent-clients-")) if out is None else out
    out.mkdir(parents=True, exist_ok=True)
    report = out / "report.json"
    argv = [sys.executable, str(Path(__file__).resolve()), INSIDE, "--model", str(model)]
    argv += ["--timeout", str(timeout), "--out", str(out), "--cache", str(cache)]
    argv += ["--cases", json.dumps(cases)]
    limit = len(cases) * (timeout + SERVER_START + 60)
    subprocess.run([*unshare_command(), *argv], check=True, timeout=limit)
    return [_result(r) for r in json.loads(report.read_text())]


def _result(data: dict[str, Any]) -> Result:
    data["requests"] = [Exchange(**e) for e in data["requests"]]
    return Result(**data)


def inside(args: argparse.Namespace) -> None:
    """In the namespace: loopback up, then each case; the results to OUT/report.json."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    if not loopback_only():
        raise SystemExit("error: this namespace has network devices besides lo")
    results = []
    for name, attached in json.loads(args.cases):
        result = run_client(name, attached, args.model, args.cache, args.out, args.timeout)
        print(summary(result), file=sys.stderr, flush=True)
        results.append(asdict(result))
    (args.out / "report.json").write_text(json.dumps(results, indent=2))


# --- the report -----------------------------------------------------------------------------


def describe(e: Exchange) -> str:
    """One request in a line."""
    parts = [f"{e.method} {e.path} -> {e.status}"]
    if e.stream is not None:
        parts.append("stream" if e.stream else "no stream")
    parts += [f"{k}={v}" for k, v in e.budget.items()]
    if e.prompt_tokens is not None:
        parts.append(f"prompt {e.prompt_tokens} tokens")
    if e.tools:
        parts.append(f"{len(e.tools)} tools")
    if e.left_out:
        parts.append(f"left out: {e.left_out}")
    if e.error:
        parts.append(f"error: {e.error}")
    return ", ".join(parts)


def summary(r: Result) -> str:
    """A run in a few lines: the outcome, then each request."""
    code = "timed out" if r.exit_code is None else f"exit {r.exit_code}"
    verdict = "answered" if r.ok else "NO ANSWER" if not r.answered else "answered, with errors"
    answer = r.stdout.strip()[-300:] or r.stderr.strip()[-300:]
    lines = [
        f"{r.label} {r.version}: {verdict}, {code}, {r.wall_s:.1f} s",
        f"  printed: {answer!r}",
    ]
    lines += [f"  {describe(e)}" for e in r.requests]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a GGUF (the scripted model)")
    parser.add_argument("--client", action="append", choices=sorted(CLIENTS), help="repeatable")
    parser.add_argument("--timeout", type=float, default=TIMEOUT, help="seconds per client run")
    parser.add_argument("--out", type=Path, help="folder for logs and bodies (default: temp)")
    parser.add_argument("--offline", action="store_true", help="use installed clients only")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(INSIDE, dest="inside", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cases", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.inside:
        inside(args)
        return 0
    cases = [case for case in CASES if args.client is None or case[0] in args.client]
    results = run_isolated(args.model.resolve(), cases, args.timeout, args.out, args.offline)
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    else:
        print("\n\n".join(summary(r) for r in results))
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
