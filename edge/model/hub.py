"""Downloads from the Hugging Face hub (or an HF_ENDPOINT mirror) into the standard HF cache.

huggingface-hub does the work: resumable transfers, progress bars, HF_TOKEN,
HF_HUB_OFFLINE and the shared cache other tools also use. This module only chooses what
to fetch and turns the library's exceptions into one clear sentence each.
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.errors import (
    DiskFullError,
    DownloadError,
    EdgeError,
    NotFoundError,
    OfflineError,
    UsageError,
)

# What a safetensors checkpoint needs; skips READMEs, pytorch .bin twins, ONNX, etc.
CHECKPOINT_PATTERNS = ["*.json", "*.safetensors", "*.jinja", "merges.txt", "vocab.json"]


@dataclass(frozen=True)
class Snapshot:
    """A downloaded revision: where it is in the cache and which commit it is."""

    repo: str
    revision: str
    commit: str
    path: Path


def endpoint() -> str:
    """The hub address in use (HF_ENDPOINT, or the public hub)."""
    from huggingface_hub import constants

    return constants.ENDPOINT


def download_checkpoint(repo: str, revision: str | None = None) -> Snapshot:
    """Fetch (or resume, or find in the cache) a safetensors checkpoint snapshot."""
    from huggingface_hub import HfApi, constants, snapshot_download

    rev = revision or "main"
    try:
        info = None if constants.HF_HUB_OFFLINE else _model_info_or_none(HfApi(), repo, rev)
        if info is not None:
            for name in sorted(s.rfilename for s in info.siblings or []):
                if name.endswith(".safetensors"):
                    fetch_blob(repo, name, info.sha or rev)
        # Now every large blob is in the cache: this only fetches the small files and links.
        path = Path(snapshot_download(repo, revision=rev, allow_patterns=CHECKPOINT_PATTERNS))
    except EdgeError:
        raise
    except Exception as exc:  # translated below; anything unknown is re-raised
        raise translate(exc, repo, rev) from None
    return Snapshot(repo, rev, path.name, path)


@dataclass(frozen=True)
class CheckpointSize:
    """What pulling a checkpoint costs: bytes to download and weights to store."""

    download: int  # the files `download_checkpoint` fetches
    parameters: int | None  # from the safetensors headers; None when they could not be read


def checkpoint_size(
    repo: str, revision: str | None = None, timeout: float = 5
) -> CheckpointSize | None:
    """Sizes from the hub's metadata, without downloading weights; None when it cannot say.

    Only used to tell a person what a pull would cost before it starts (they wait for it:
    short timeouts), so any failure (offline, hub down, odd repo) means "unknown"; the
    pull itself then reports the real error.
    """
    from huggingface_hub import HfApi, constants

    if constants.HF_HUB_OFFLINE:
        return None
    api = HfApi(endpoint=endpoint())  # HF_TOKEN is read by the client, as for downloads
    rev = revision or "main"
    try:
        info = api.model_info(repo, revision=rev, files_metadata=True, timeout=timeout)
    except Exception:
        return None
    wanted = [s for s in info.siblings or [] if _is_checkpoint_file(s.rfilename)]
    download = sum(s.size or 0 for s in wanted)
    return CheckpointSize(download, _parameter_count(api, repo, info.sha or rev, timeout))


def _is_checkpoint_file(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in CHECKPOINT_PATTERNS)


def _parameter_count(api: Any, repo: str, commit: str, timeout: float) -> int | None:
    """The weights the converter writes, from the safetensors headers (ranged reads)."""
    try:
        meta = api.get_safetensors_metadata(repo, revision=commit, timeout=timeout)
        tied = _tied_embeddings(repo, commit, timeout)
    except Exception:
        return None
    counts = {
        name: tensor.parameter_count
        for file in meta.files_metadata.values()
        for name, tensor in file.tensors.items()
    }
    if tied:  # Qwen3-0.6B ships a redundant lm_head copy; the converter drops it
        counts.pop("lm_head.weight", None)
    return sum(counts.values()) or None


def _tied_embeddings(repo: str, commit: str, timeout: float) -> bool:
    # Read config.json without caching it: asking must leave nothing behind.
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import build_hf_headers, get_session

    url = hf_hub_url(repo, "config.json", revision=commit)
    resp = get_session().get(
        url, headers=build_hf_headers(), timeout=timeout, follow_redirects=True
    )
    resp.raise_for_status()
    return bool(resp.json().get("tie_word_embeddings", False))


def _model_info_or_none(api: Any, repo: str, rev: str) -> Any:
    """Repo info, or None when the hub is unreachable (then the cache may still serve)."""
    try:
        return api.model_info(repo, revision=rev)
    except Exception as exc:
        if _is_transport_error(exc):
            return None
        raise


def _is_transport_error(exc: Exception) -> bool:
    # huggingface-hub lets its HTTP library's connection errors through unwrapped.
    return type(exc).__module__.split(".")[0] in ("httpx", "httpx2")


def fetch_blob(repo: str, filename: str, commit: str) -> Path:
    """Download one file into the HF cache's blob store, resuming a killed earlier attempt.

    huggingface-hub (2.x) restarts a file from byte 0 when a previous process died: its
    partial files get a random name each attempt. We keep one stable partial per blob,
    continue it with an HTTP Range request, check the sha256 the hub advertises as the
    LFS ETag, and move it into place; `snapshot_download` then finds the blob and links it.
    """
    from filelock import FileLock
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url
    from huggingface_hub.file_download import repo_folder_name

    meta = get_hf_file_metadata(hf_hub_url(repo, filename, revision=commit))
    if not meta.etag:
        raise DownloadError(
            f"{endpoint()} gave no ETag for {repo}/{filename}.", "Try again, or use another mirror."
        )
    blobs = (
        Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo, repo_type="model") / "blobs"
    )
    blob = blobs / meta.etag
    if blob.is_file():
        return blob
    blobs.mkdir(parents=True, exist_ok=True)
    partial = blobs / f"{meta.etag}.edge-partial"
    # Two pulls at once must not append to one file; locks live where huggingface-hub keeps its own.
    lock = Path(constants.HF_HUB_CACHE) / ".locks" / blobs.parent.name / f"{meta.etag}.edge.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock)):
        if blob.is_file():
            return blob
        _continue_download(partial, meta, filename)
        _check_sha256(partial, meta.etag, repo, filename)
        os.replace(partial, blob)
    return blob


def _continue_download(partial: Path, meta: Any, filename: str) -> None:
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers

    with partial.open("ab") as f:
        done = f.tell()
        if meta.size is not None and done > meta.size:
            f.truncate(0)
            done = 0
        if meta.size is None or done < meta.size:
            headers = build_hf_headers()
            http_get(
                meta.location,
                f,
                resume_size=done,
                headers=headers,
                expected_size=meta.size,
                displayed_filename=filename,
            )


def _check_sha256(path: Path, etag: str, repo: str, filename: str) -> None:
    # LFS files' ETag is their sha256; anything else (git blobs) is not checkable this way.
    if len(etag) != 64 or any(c not in "0123456789abcdef" for c in etag):
        return
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(8 * 2**20):
            h.update(block)
    if h.hexdigest() != etag:
        path.unlink(missing_ok=True)
        raise DownloadError(
            f"{repo}/{filename} arrived corrupted (sha256 mismatch); "
            "the partial file was discarded.",
            "Run the same command again to download it afresh.",
        )


def download_gguf(repo: str, quant: str, revision: str | None = None) -> Snapshot:
    """Fetch the one GGUF file of `quant` from a GGUF repo (e.g. Qwen/Qwen3-0.6B-GGUF)."""
    from huggingface_hub import HfApi, hf_hub_download

    rev = revision or "main"
    try:
        info = HfApi().model_info(repo, revision=rev)
        files = [s.rfilename for s in info.siblings or [] if s.rfilename.lower().endswith(".gguf")]
        name = pick_gguf(files, quant, repo)
        path = Path(hf_hub_download(repo, name, revision=info.sha or rev))
    except EdgeError:
        raise
    except Exception as exc:
        raise translate(exc, repo, rev) from None
    return Snapshot(repo, rev, info.sha or rev, path)


def pick_gguf(files: list[str], quant: str, repo: str) -> str:
    """The file of a GGUF repo whose name carries the quant type (e.g. `*-Q8_0.gguf`)."""
    want = quant.lower()
    matches = [f for f in files if fnmatch.fnmatch(f.lower(), f"*[-_.]{want}.gguf")]
    if len(matches) == 1:
        return matches[0]
    if not files:
        raise NotFoundError(
            f"{repo} has no .gguf files.", "Drop --gguf to convert its safetensors instead."
        )
    raise NotFoundError(
        f"{repo} has {'no' if not matches else 'several'} GGUF file(s) for {quant}.",
        f"Files there: {', '.join(sorted(files))}. Pick another --quant.",
    )


# C901 exception: a flat table of exception classes, one branch each.
def translate(exc: Exception, repo: str, revision: str) -> Exception:  # noqa: C901
    """One clear EdgeError for each way a hub download fails (by exception class)."""
    from huggingface_hub import constants
    from huggingface_hub import errors as hf

    where = endpoint()
    if isinstance(exc, hf.HFValidationError):
        return UsageError(
            f"'{repo}' is not a valid repo id ({exc}).", "Repo ids look like Qwen/Qwen3-0.6B."
        )
    if isinstance(exc, hf.GatedRepoError):
        return DownloadError(
            f"{repo} is gated on {where}: you must accept its terms and authenticate.",
            "Accept the terms on the model page, then set HF_TOKEN to a token of that account.",
        )
    if isinstance(exc, hf.RepositoryNotFoundError):
        return NotFoundError(
            f"Repository '{repo}' was not found on {where}.",
            "Check the spelling (e.g. Qwen/Qwen3-0.6B); private repos need HF_TOKEN.",
        )
    if isinstance(exc, hf.RevisionNotFoundError):
        return NotFoundError(
            f"Revision '{revision}' does not exist in {repo}.",
            "Use a branch, tag or commit of that repo, or leave --revision out for main.",
        )
    if isinstance(exc, hf.RemoteEntryNotFoundError):
        return NotFoundError(
            f"A file of {repo}@{revision} is missing on {where}.", "Try another revision."
        )
    if isinstance(exc, hf.LocalEntryNotFoundError):
        if constants.HF_HUB_OFFLINE:
            return OfflineError(
                f"HF_HUB_OFFLINE is set and {repo}@{revision} is not in the local cache.",
                "Unset HF_HUB_OFFLINE to download it, or pull a model that is cached.",
            )
        return DownloadError(
            f"Could not reach {where} to download {repo}, and it is not in the local cache.",
            "Check the network, or set HF_ENDPOINT to a reachable mirror.",
        )
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return DiskFullError(
            f"Ran out of disk space downloading {repo} ({exc.strerror}).",
            "Free some space (or set HF_HOME to a larger disk) and pull again: it resumes.",
        )
    if isinstance(exc, hf.HfHubHTTPError):
        return DownloadError(f"{where} refused the download of {repo}: {exc}", "Try again later.")
    if _is_transport_error(exc):  # mid-file: the partial is kept
        return DownloadError(
            f"The connection to {where} failed while downloading {repo} "
            f"({exc.__class__.__name__}).",
            "Run the same command again: the download resumes where it stopped.",
        )
    return exc
