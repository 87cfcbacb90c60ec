"""A local stand-in for the Hugging Face Hub's HTTP API, for tests.

``huggingface_hub`` talks to whatever ``HF_ENDPOINT`` points at, so a test can
point it here and exercise the real download code without the internet.  Only
the part of the API that ``snapshot_download`` and ``hf_hub_download`` use is
spoken:

* ``GET  /api/models/{org}/{name}[/revision/{rev}]``  model info (``sha``, ``siblings``)
* ``GET  /api/models/{org}/{name}/tree/{rev}[/{path}]``  file listing (``?recursive=``)
* ``POST /api/models/{org}/{name}/paths-info/{rev}``  metadata of given paths
* ``HEAD|GET /{org}/{name}/resolve/{rev}/{path}``  file metadata and bytes, with
  ``ETag``, ``X-Repo-Commit``, ``Content-Length`` and ``Range`` (206) support.
* ``GET  /api/agent-harnesses``  an empty registry (the client asks for it once a day)

Repos live in a folder: ``ROOT/<org>/<name>/`` is branch ``main`` and
``ROOT/<org>/<name>@<rev>/`` is another branch, tag or (40-hex) commit.  Every
revision gets a deterministic commit sha, and requests by that sha work too.

Every file is served as if it were stored in Git LFS: its ETag is the sha256 of
its content.  No Xet headers are ever sent, so the client takes the plain HTTP
download path.  Errors carry the hub's ``X-Error-Code`` / ``X-Error-Message``
headers so that ``huggingface_hub`` raises the same exception classes as against
the real hub.

Run ``python tests/support/hubstandin.py --root DIR`` to serve from another process: the
first line on stdout is the URL.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import parse_qs, unquote, urlsplit

HOST = "127.0.0.1"
_COMMIT_RE = re.compile(r"[0-9a-f]{40}")
# Org and repo names as the hub allows them; also keeps requests inside ROOT.
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_RANGE_RE = re.compile(r"bytes=(\d*)-(\d*)")
_BODY_CHUNK = 64 * 1024
_MAX_FILES_PER_REVISION = 100_000  # bounds the directory walk
_MAX_POST_BODY = 1024 * 1024
_GATED_MESSAGE = (
    "Access to model {repo} is restricted. You must have access to it and be authenticated"
    " to access it. Please log in."
)
# The hub answers a bad token with this exact message; huggingface_hub special-cases it.
_BAD_TOKEN_MESSAGE = "Invalid credentials in Authorization header"


@dataclass(frozen=True)
class RequestRecord:
    """One request as the stand-in saw it, recorded when its response status was sent."""

    method: str
    path: str  # the request target as sent: percent-encoded, query string included
    range: str | None  # the Range header, if any
    status: int


@dataclass(frozen=True)
class RepoEntry:
    """A file of one revision of a repo."""

    path: str  # repo-relative, '/'-separated
    local: Path
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Revision:
    """A snapshot of one repo folder: what one branch, tag or commit holds."""

    repo_id: str
    sha: str
    files: dict[str, RepoEntry]
    last_modified: float
    dirs: frozenset[str] = field(default_factory=frozenset)


class HubError(Exception):
    """An error response in the hub's format."""

    def __init__(
        self,
        status: int,
        code: str | None,
        message: str,
        *,
        commit: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.commit = commit
        self.headers = headers or {}


class RangeNotSatisfiable(Exception):
    """The Range header asks for bytes the file does not have."""


# ---------------------------------------------------------------------------
# Repos on disk
# ---------------------------------------------------------------------------


def scan_revision(repo_id: str, folder: Path) -> Revision:
    """List a revision folder and derive its commit sha.

    The sha hashes names, sizes and mtimes rather than content so that a
    multi-gigabyte repo is not read on every request, yet any edit to a file
    gives a new commit, as a push to the real hub would.  A folder named by a
    40-hex sha keeps that sha, so a test can pin a commit.
    """
    files: dict[str, RepoEntry] = {}
    dirs: set[str] = set()
    for local in sorted(folder.rglob("*")):
        if len(files) >= _MAX_FILES_PER_REVISION:
            break
        rel = local.relative_to(folder).as_posix()
        if ".git" in rel.split("/"):
            continue
        if local.is_dir():
            dirs.add(rel)
        elif local.is_file():
            st = local.stat()
            files[rel] = RepoEntry(rel, local, st.st_size, st.st_mtime_ns)

    pinned = folder.name.rpartition("@")[2]
    if "@" in folder.name and _COMMIT_RE.fullmatch(pinned):
        sha = pinned
    else:
        digest = hashlib.sha1(repo_id.encode())
        for entry in files.values():
            digest.update(f"\0{entry.path}\0{entry.size}\0{entry.mtime_ns}".encode())
        sha = digest.hexdigest()
    newest = max((e.mtime_ns for e in files.values()), default=0) / 1e9
    return Revision(repo_id, sha, files, newest, frozenset(dirs))


def scan_repo(root: Path, org: str, name: str) -> dict[str, Revision] | None:
    """Map each revision name of ``org/name`` to its snapshot, or None if there is no such repo.

    Revision folder names are percent-decoded, so ``name@refs%2Fpr%2F1`` serves ``refs/pr/1``.
    """
    if not (_NAME_RE.fullmatch(org) and _NAME_RE.fullmatch(name)):
        return None
    org_dir = root / org
    if not org_dir.is_dir():
        return None
    repo_id = f"{org}/{name}"
    revisions: dict[str, Revision] = {}
    if (org_dir / name).is_dir():
        revisions["main"] = scan_revision(repo_id, org_dir / name)
    for child in sorted(org_dir.glob(f"{name}@*")):
        if child.is_dir():
            revisions[unquote(child.name[len(name) + 1 :])] = scan_revision(repo_id, child)
    return revisions or None


def find_revision(revisions: dict[str, Revision], rev: str) -> Revision | None:
    """Look a revision up by branch/tag name first, then by commit sha."""
    if rev in revisions:
        return revisions[rev]
    return next((r for r in revisions.values() if r.sha == rev), None)


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """Parse a single-range ``Range`` header into (first, last) byte offsets, inclusive.

    Returns None when the whole file should be sent: no header, or one the
    server may ignore (multiple ranges, malformed).  Raises RangeNotSatisfiable
    when the range starts past the end of the file.
    """
    match = _RANGE_RE.fullmatch(header.strip()) if header else None
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first, last = match.group(1), match.group(2)
    if first == "":  # suffix range: the last N bytes
        if int(last) == 0 or size == 0:
            raise RangeNotSatisfiable
        return max(0, size - int(last)), size - 1
    if int(first) >= size:
        raise RangeNotSatisfiable
    if last != "" and int(last) < int(first):
        return None  # invalid ranges are ignored (RFC 9110, 14.2)
    return int(first), min(int(last), size - 1) if last else size - 1


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The Git LFS pointer file the hub would store in git for this content."""
    return (
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
    )


def git_blob_id(data: bytes) -> str:
    """Git's object id of a blob with this content."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def iso_time(timestamp: float) -> str:
    """A timestamp in the hub's ISO-8601 form, e.g. 2024-01-02T03:04:05.000Z."""
    moment = datetime.fromtimestamp(timestamp, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


# ---------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------


class HubStandIn:
    """A hub stand-in serving ``root`` on 127.0.0.1 from a background thread.

    Args:
        root: folder holding ``<org>/<name>[@<rev>]/`` repo folders.
        rate: if set, file bodies are sent at most this many bytes per second,
            so a test has time to kill a client mid-download.  May be changed
            while serving; it is read at the start of each response.
        token: if set, every request must carry ``Authorization: Bearer <token>``.
            Without one the hub's gated-repo answer is sent (401, GatedRepo),
            which huggingface_hub raises as GatedRepoError; with a wrong one the
            hub's 401 "Invalid credentials" answer (a plain HfHubHTTPError).
        drop_after: if set, the first GET of each file whose body is longer than
            this is cut off after that many bytes by closing the connection, as a
            flaky network would; later GETs of that file are served whole.
        port: 0 picks a free port.
    """

    def __init__(
        self,
        root: Path | str,
        *,
        rate: int | None = None,
        token: str | None = None,
        drop_after: int | None = None,
        port: int = 0,
    ) -> None:
        self.root = Path(root)
        self.rate = rate
        self.token = token
        self.drop_after = drop_after
        self._lock = threading.Lock()
        self._requests: list[RequestRecord] = []
        self._sha256: dict[tuple[Path, int, int], str] = {}
        self._dropped: set[tuple[str, str]] = set()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._server = _Server((HOST, port), _Handler, self)

    @property
    def url(self) -> str:
        """Base URL to use as HF_ENDPOINT, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://{HOST}:{self._server.server_address[1]}"

    @property
    def stopping(self) -> threading.Event:
        """Set once stop() is called; throttled transfers wait on it so they end promptly."""
        return self._stopping

    @property
    def requests(self) -> list[RequestRecord]:
        """A copy of the requests seen so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        """Forget the requests seen so far."""
        with self._lock:
            self._requests.clear()

    def start(self) -> HubStandIn:
        """Serve from a daemon thread; returns self."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self.serve_forever, name="hubstandin", daemon=True
            )
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve from the calling thread until stop() is called from another thread."""
        self._server.serve_forever(poll_interval=0.05)  # short poll: stop() returns quickly

    def stop(self) -> None:
        """Stop serving, end throttled transfers and release the port. Safe to call twice."""
        self._stopping.set()
        if self._thread is not None:
            self._server.shutdown()  # only valid while serve_forever runs
            self._thread.join(timeout=10)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> HubStandIn:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- helpers for the request handler ------------------------------------

    def record(self, rec: RequestRecord) -> None:
        with self._lock:
            self._requests.append(rec)

    def sha256_of(self, entry: RepoEntry) -> str:
        """Content sha256 of a file, cached by (path, size, mtime) so each file is read once."""
        key = (entry.local, entry.size, entry.mtime_ns)
        with self._lock:
            known = self._sha256.get(key)
        if known is not None:
            return known
        digest = hashlib.sha256()
        with entry.local.open("rb") as f:
            for block in iter(lambda: f.read(1024 * 1024), b""):
                digest.update(block)
        with self._lock:
            self._sha256[key] = digest.hexdigest()
        return digest.hexdigest()

    def take_drop(self, repo_id: str, path: str, length: int) -> int | None:
        """How many body bytes to send before cutting this GET off, or None to send it all."""
        limit = self.drop_after
        if limit is None or length <= limit:
            return None
        with self._lock:
            if (repo_id, path) in self._dropped:
                return None
            self._dropped.add((repo_id, path))
        return limit

    def lookup(self, org: str, name: str, rev: str, *, authorization: str | None) -> Revision:
        """Find a revision the way the hub checks a request: credentials, repo, access, revision."""
        repo_id = f"{org}/{name}"
        if (
            self.token is not None
            and authorization is not None
            and not self._token_ok(authorization)
        ):
            raise HubError(401, None, _BAD_TOKEN_MESSAGE)
        revisions = scan_repo(self.root, org, name)
        if revisions is None:
            # The hub answers 401 to anonymous callers so as not to reveal private repos.
            raise HubError(
                401 if authorization is None else 404, "RepoNotFound", "Repository not found"
            )
        if self.token is not None and authorization is None:
            raise HubError(401, "GatedRepo", _GATED_MESSAGE.format(repo=repo_id))
        found = find_revision(revisions, rev)
        if found is None:
            raise HubError(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        return found

    def _token_ok(self, authorization: str) -> bool:
        return hmac.compare_digest(authorization.encode(), f"Bearer {self.token}".encode())

    def entry_json(self, rev: Revision, path: str) -> dict[str, Any]:
        """A tree / paths-info entry, as the hub lists an LFS file or a folder."""
        entry = rev.files.get(path)
        if entry is None:  # a folder; its oid only needs to be stable
            oid = hashlib.sha1(f"{rev.sha}\0{path}".encode()).hexdigest()
            return {"type": "directory", "oid": oid, "size": 0, "path": path}
        sha = self.sha256_of(entry)
        pointer = lfs_pointer(sha, entry.size)
        return {
            "type": "file",
            "oid": git_blob_id(pointer),
            "size": entry.size,
            "path": path,
            "lfs": {"oid": sha, "size": entry.size, "pointerSize": len(pointer)},
        }

    def model_info(self, rev: Revision, *, blobs: bool) -> dict[str, Any]:
        """The model info document; per-file hashes only with ``?blobs=true``, as on the hub."""
        siblings: list[dict[str, Any]] = []
        for path, entry in rev.files.items():
            sibling: dict[str, Any] = {"rfilename": path, "size": entry.size}
            if blobs:
                tree = self.entry_json(rev, path)
                sibling["blobId"] = tree["oid"]
                lfs = tree["lfs"]
                sibling["lfs"] = {
                    "size": entry.size,
                    "sha256": lfs["oid"],
                    "pointerSize": lfs["pointerSize"],
                }
            siblings.append(sibling)
        org = rev.repo_id.split("/")[0]
        return {
            "id": rev.repo_id,
            "modelId": rev.repo_id,
            "author": org,
            "sha": rev.sha,
            "lastModified": iso_time(rev.last_modified),
            "createdAt": iso_time(rev.last_modified),
            "private": self.token is not None,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
            "usedStorage": sum(e.size for e in rev.files.values()),
        }


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its HubStandIn and is quiet about dropped clients."""

    daemon_threads = True  # a killed client must not keep the test process alive

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], hub: HubStandIn
    ):
        super().__init__(address, handler)
        self.hub = hub

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients killed mid-download are the point of some tests: stay quiet about those.
        # Anything else is a bug worth a traceback.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """Routes one request to the model-info, tree, paths-info or resolve handler."""

    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive and 206 as the real hub (and httpx) expect
    timeout = 60  # an idle keep-alive connection frees its thread after this

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: the request log is HubStandIn.requests."""

    # -- routing ------------------------------------------------------------

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        # Split before decoding: the client percent-encodes '/' inside revisions (refs%2Fpr%2F1).
        parts = [unquote(p) for p in url.path.split("/")[1:]]
        query = parse_qs(url.query)
        try:
            self._route(parts, query)
        except HubError as err:
            self._send_error(err)
        except ConnectionError:
            self.close_connection = True  # the client went away mid-response

    def _route(self, parts: list[str], query: dict[str, list[str]]) -> None:
        method = self.command
        if method == "GET" and parts == ["api", "agent-harnesses"]:
            # huggingface_hub >= 2 fetches this registry (once a day, cached in HF_HOME) to build
            # its User-Agent; an empty one means "no agent detected". Public: no token needed.
            return self._send_json({"standardEnvVars": [], "harnesses": {}})
        if len(parts) >= 4 and parts[:2] == ["api", "models"]:
            org, name, rest = parts[2], parts[3], parts[4:]
            if method == "GET" and rest in ([], [""]):
                return self._model_info(org, name, "main", query)
            if method == "GET" and len(rest) == 2 and rest[0] == "revision":
                return self._model_info(org, name, rest[1], query)
            if method == "GET" and len(rest) >= 2 and rest[0] == "tree":
                return self._tree(org, name, rest[1], "/".join(rest[2:]).strip("/"), query)
            if method == "POST" and len(rest) == 2 and rest[0] == "paths-info":
                return self._paths_info(org, name, rest[1])
        if len(parts) >= 5 and parts[2] == "resolve" and method in ("GET", "HEAD"):
            return self._resolve(parts[0], parts[1], parts[3], "/".join(parts[4:]))
        raise HubError(404, None, "Sorry, we can't find the page you are looking for.")

    def _revision(self, org: str, name: str, rev: str) -> Revision:
        return self.server.hub.lookup(
            org, name, rev, authorization=self.headers.get("Authorization")
        )

    # -- API endpoints --------------------------------------------------------

    def _model_info(self, org: str, name: str, rev: str, query: dict[str, list[str]]) -> None:
        found = self._revision(org, name, rev)
        blobs = query.get("blobs", ["false"])[0].lower() in ("1", "true")
        self._send_json(self.server.hub.model_info(found, blobs=blobs))

    def _tree(
        self, org: str, name: str, rev: str, folder: str, query: dict[str, list[str]]
    ) -> None:
        """List a folder, or with ?recursive=true everything below it."""
        found = self._revision(org, name, rev)
        if folder and folder not in found.dirs:
            raise HubError(
                404, "EntryNotFound", f"{folder} does not exist on {rev}", commit=found.sha
            )
        recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
        prefix = f"{folder}/" if folder else ""
        listed = []
        for path in sorted(found.dirs | found.files.keys()):
            inside = path.startswith(prefix)
            if inside and (recursive or "/" not in path[len(prefix) :]):
                listed.append(self.server.hub.entry_json(found, path))
        self._send_json(listed)

    def _paths_info(self, org: str, name: str, rev: str) -> None:
        """Metadata of the posted ``paths``; unknown paths are left out, as the hub does."""
        found = self._revision(org, name, rev)
        length = min(int(self.headers.get("Content-Length") or 0), _MAX_POST_BODY)
        form = parse_qs(self.rfile.read(length).decode("utf-8", "replace"))
        paths = [p.strip("/") for p in form.get("paths", [])]
        known = [p for p in paths if p in found.files or p in found.dirs]
        self._send_json([self.server.hub.entry_json(found, p) for p in known])

    # -- file downloads -------------------------------------------------------

    def _resolve(self, org: str, name: str, rev: str, path: str) -> None:
        """HEAD or GET a file, whole (200) or a byte range of it (206)."""
        hub = self.server.hub
        found = self._revision(org, name, rev)
        entry = found.files.get(path)
        if entry is None:
            # The commit header lets the client cache that the file does not exist at this commit.
            raise HubError(
                404, "EntryNotFound", f"{path} does not exist on {rev}", commit=found.sha
            )
        headers = {
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
            "ETag": f'"{hub.sha256_of(entry)}"',
            "X-Repo-Commit": found.sha,
        }
        try:
            span = byte_range(self.headers.get("Range"), entry.size)
        except RangeNotSatisfiable:
            unsatisfiable = {"Content-Range": f"bytes */{entry.size}"}
            raise HubError(
                416, None, "Requested Range Not Satisfiable", headers=unsatisfiable
            ) from None
        first, last = span if span is not None else (0, entry.size - 1)
        if span is not None:
            headers["Content-Range"] = f"bytes {first}-{last}/{entry.size}"
        length = last - first + 1
        self._start(206 if span is not None else 200, headers, length)
        if self.command == "GET" and length > 0:
            cut = hub.take_drop(found.repo_id, path, length)
            with entry.local.open("rb") as f:
                f.seek(first)
                self._send_body(f, length if cut is None else cut, hub.rate)
            if cut is not None:
                self.close_connection = True  # the client sees a body shorter than Content-Length

    def _send_body(self, f: BinaryIO, length: int, rate: int | None) -> None:
        """Copy ``length`` bytes from ``f``, no faster than ``rate`` bytes/s if set."""
        chunk = _BODY_CHUNK if rate is None else max(1024, min(_BODY_CHUNK, rate // 20))
        start = time.monotonic()
        sent = 0
        while sent < length:  # each pass sends at least one byte or stops
            data = f.read(min(chunk, length - sent))
            if not data or self.server.hub.stopping.is_set():
                self.close_connection = True  # file shrank, or shutting down: the body is short
                return
            self.wfile.write(data)
            sent += len(data)
            if rate:
                # Sleep until the time this many bytes are due; wait() returns early on stop().
                self.server.hub.stopping.wait(max(0.0, start + sent / rate - time.monotonic()))

    # -- responses ------------------------------------------------------------

    def _start(self, status: int, headers: dict[str, str], length: int) -> None:
        """Record the request and send the status line and headers."""
        self.server.hub.record(
            RequestRecord(self.command, self.path, self.headers.get("Range"), status)
        )
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def _send_json(self, data: Any) -> None:
        body = json.dumps(data).encode()
        self._start(200, {"Content-Type": "application/json; charset=utf-8"}, len(body))
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_error(self, err: HubError) -> None:
        """An error the way the hub sends it: X-Error-* headers and a JSON {"error": ...} body."""
        body = json.dumps({"error": err.message}).encode()
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "X-Error-Message": err.message,
        }
        headers.update(err.headers)
        if err.code is not None:
            headers["X-Error-Code"] = err.code
        if err.commit is not None:
            headers["X-Repo-Commit"] = err.commit
        self._start(err.status, headers, len(body))
        if self.command != "HEAD":
            self.wfile.write(body)


def main(argv: list[str] | None = None) -> int:
    """Serve until killed; the URL is the first line on stdout."""
    parser = argparse.ArgumentParser(
        description="Serve a folder of repos the way the Hugging Face Hub does."
    )
    parser.add_argument(
        "--root", type=Path, required=True, help="folder holding <org>/<name>[@<rev>]/"
    )
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--rate", type=int, default=None, help="throttle file bodies to N bytes/s")
    parser.add_argument("--token", default=None, help="require 'Authorization: Bearer TOKEN'")
    parser.add_argument(
        "--drop-after", type=int, default=None, help="cut each file's first GET after N bytes"
    )
    args = parser.parse_args(argv)
    hub = HubStandIn(
        args.root, rate=args.rate, token=args.token, drop_after=args.drop_after, port=args.port
    )
    print(hub.url, flush=True)
    try:
        hub.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        hub.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
