"""Ollama's API, the answer half of the translation: engine text → NDJSON lines and the
folded answer (`message` for chat, `response` for generate, thinking apart, tool calls with
their arguments as objects), the final line's counts and nanosecond durations, and the
model's card as /api/tags, /api/show and /api/ps show it.

Pure translation, no I/O: route.py feeds engine events in and reads the model file's size.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass
from typing import Any

from edge.chat.parts import AnswerSplitter, Part
from edge.chat.sampling import sampling_defaults
from edge.engine import Finish
from edge.server.ollama.request import OllamaSpec, listed_name
from edge.server.pulls import PullStep
from edge.server.sse import dumps

_quote = json.encoder.encode_basestring  # a str as a JSON string, the way dumps writes it
NS = 1_000_000_000


def rfc3339(ns: int) -> str:
    """A UTC time in nanoseconds as Ollama writes `created_at`: RFC 3339, nanoseconds, Z."""
    seconds, frac = divmod(ns, NS)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{frac:09d}Z"


class PartWriter:
    """Engine text → Ollama deltas: `{"content": …}`, `{"thinking": …}` or
    `{"tool_calls": [...]}`, keeping the whole answer for the folded reply. A raw generate
    splits nothing off: all of it is the response."""

    def __init__(self, spec: OllamaSpec) -> None:
        self.parts = None if spec.raw else AnswerSplitter(tools=spec.tools)
        self.content = ""
        self.thinking = ""
        self.tool_calls: list[dict[str, Any]] = []

    def text(self, text: str) -> list[dict[str, Any]]:
        """Deltas for a piece of generated text."""
        if self.parts is None:
            self.content += text
            return [{"content": text}]
        return self._deltas(self.parts.feed(text))

    def finish(self, reason: str) -> list[dict[str, Any]]:
        """Deltas for what the splitters still held at the end."""
        return [] if self.parts is None else self._deltas(self.parts.finish(reason))

    def _deltas(self, parts: list[Part]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for p in parts:
            if p.call is not None:
                arguments = p.call.arguments_object()
                function = {
                    "index": len(self.tool_calls),
                    "name": p.call.name,
                    "arguments": arguments,
                }
                call = {"id": p.call.id, "function": function}
                self.tool_calls.append(call)
                out.append({"tool_calls": [call]})
            elif not p.text:
                continue
            elif p.kind == "reasoning":
                self.thinking += p.text
                out.append({"thinking": p.text})
            else:
                self.content += p.text
                out.append({"content": p.text})
        return out


def done_reason(reason: str) -> str:
    """Ollama's done_reason for the engine's finish ("cancelled" cut the text, as a limit)."""
    return "stop" if reason == "stop" else "length"


def counts(finish: Finish, started_ns: int, load_ns: int, now_ns: int) -> dict[str, int]:
    """The final object's counts and durations, in nanoseconds; `load_ns`: how long the
    request waited for the model to wake (0 when it was loaded)."""
    u = finish.usage
    return {
        "total_duration": now_ns - started_ns,
        "load_duration": load_ns,
        "prompt_eval_count": u.prompt_tokens,
        "prompt_eval_duration": int(finish.ttft * NS),
        "eval_count": u.completion_tokens,
        "eval_duration": int((finish.total - finish.ttft) * NS),
    }


class Lines:
    """One generation's NDJSON lines for /api/chat (`message`) or /api/generate
    (`response`, `thinking`). A plain text or thinking delta, the per-token line, is written
    from a template; anything else goes through dumps."""

    def __init__(self, model: str, chat: bool) -> None:
        self.model, self.chat = model, chat
        self._head = '{"model":' + _quote(model) + ',"created_at":"'

    def delta(self, d: dict[str, Any]) -> bytes:
        """The line of one delta."""
        now = rfc3339(time.time_ns())
        if len(d) == 1 and ("content" in d or "thinking" in d):
            text = _quote(d.get("content", ""))
            if "thinking" in d:
                text += ',"thinking":' + _quote(d["thinking"])
            body = (
                '"message":{"role":"assistant","content":' + text + "}"
                if self.chat
                else '"response":' + text
            )
            return (self._head + now + '",' + body + ',"done":false}\n').encode()
        return line(self.object(now, d, {"done": False}))

    def object(self, now: str, delta: dict[str, Any], tail: dict[str, Any]) -> dict[str, Any]:
        """A whole object: the head, the delta as `message` or `response`, then `tail`."""
        out: dict[str, Any] = {"model": self.model, "created_at": now}
        if self.chat:
            out["message"] = {
                "role": "assistant",
                "content": delta.get("content", ""),
                **_rest(delta),
            }
        else:
            out["response"] = delta.get("content", "")
            out.update(_rest(delta))
        return {**out, **tail}


def _rest(delta: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in delta.items() if k != "content"}


def line(payload: dict[str, Any]) -> bytes:
    """One NDJSON line."""
    return dumps(payload).encode() + b"\n"


def pull_status(step: PullStep, name: str) -> dict[str, Any]:
    """A pull's progress line: a status alone, or with bytes as Ollama's layer lines are,
    `pulling <digest>` with the digest, total and completed (clients key their bars by the
    digest; ours names the model being built, as there is no layer)."""
    if step.total is None:
        return {"status": step.status}
    digest = hashlib.sha256(f"{name}\0{step.status}".encode()).hexdigest()
    return {
        "status": f"pulling {digest[:12]}",
        "digest": f"sha256:{digest}",
        "total": step.total,
        "completed": step.completed or 0,
    }


def folded(writer: PartWriter) -> dict[str, Any]:
    """The whole answer as one delta: content, and thinking and tool calls when there were."""
    out: dict[str, Any] = {"content": writer.content}
    if writer.thinking:
        out["thinking"] = writer.thinking
    if writer.tool_calls:
        out["tool_calls"] = writer.tool_calls
    return out


# --- the model's card ----------------------------------------------------------------------

VERSION = "0.12.0"
"""What /api/version says. Clients compare it with the release that brought what they use:
Copilot's Ollama provider refuses servers under 0.6.4, `think` came with 0.9; Open WebUI
parses it as dotted integers (a suffix such as "-edge" would break its `int()`)."""

CAPABILITIES = ["completion", "tools", "thinking"]
PARAMETER_SIZE = "0.6B"  # edge-qwen serves Qwen3-0.6B
NEVER = "2318-01-01T00:00:00Z"  # /api/ps's expires_at when the model never sleeps (as Ollama's)


@dataclass(frozen=True)
class ModelCard:
    """What the server knows of the model it serves, for /api/tags, /api/show and /api/ps.
    `header` holds the GGUF header's numbers when the model has loaded (else empty)."""

    name: str
    size: int
    quantization: str
    modified_at: str
    n_ctx: int
    header: dict[str, int]

    @property
    def digest(self) -> str:
        """An identifier for this model as served (not the file's hash, which would mean
        reading the whole file): Ollama's clients use the digest only to tell models apart."""
        key = f"{self.name}\0{self.size}\0{self.quantization}".encode()
        return hashlib.sha256(key).hexdigest()

    def details(self) -> dict[str, Any]:
        return {
            "parent_model": "",
            "format": "gguf",
            "family": "qwen3",
            "families": ["qwen3"],
            "parameter_size": PARAMETER_SIZE,
            "quantization_level": self.quantization,
        }

    def tag(self) -> dict[str, Any]:
        """Its entry in /api/tags."""
        return {
            "name": self.name,
            "model": self.name,
            "modified_at": self.modified_at,
            "size": self.size,
            "digest": self.digest,
            "details": self.details(),
        }

    def loaded(self, expires_in: float) -> dict[str, Any]:
        """Its entry in /api/ps: loaded until it sleeps, `expires_in` seconds from now (inf:
        never)."""
        entry = {k: v for k, v in self.tag().items() if k != "modified_at"}
        until = (
            rfc3339(time.time_ns() + int(expires_in * NS)) if math.isfinite(expires_in) else NEVER
        )
        return {**entry, "expires_at": until, "size_vram": 0, "context_length": self.n_ctx}

    def show(self, template: str) -> dict[str, Any]:
        """/api/show. `qwen3.context_length` is the context this server loaded, not the one
        the model was trained for: clients (Copilot) size their prompts by it."""
        info: dict[str, Any] = {
            "general.architecture": "qwen3",
            "general.basename": "Qwen3",
            "general.size_label": PARAMETER_SIZE,
            "general.file_type": self.quantization,
            **{f"qwen3.{k}": v for k, v in self.header.items()},
            "qwen3.context_length": self.n_ctx,
        }
        return {
            "license": "Apache-2.0",
            "modelfile": f"# Served by edge-qwen\nFROM {self.name}\n"
            + "".join(f"PARAMETER {p}\n" for p in parameters()),
            "parameters": "\n".join(parameters()),
            "template": template,
            "details": self.details(),
            "model_info": info,
            "capabilities": CAPABILITIES,
            "modified_at": self.modified_at,
        }


def parameters() -> list[str]:
    """The defaults a request gets, in a Modelfile's `PARAMETER` words: Qwen's sampling
    for thinking (non-thinking answers get Qwen's other set) and the stop tokens."""
    knobs = sampling_defaults(True)
    out = [f"{k} {knobs[k]:g}" for k in ("temperature", "top_k", "top_p", "min_p")]
    return [*out, 'stop "<|im_start|>"', 'stop "<|im_end|>"']


def card(model_id: str, info: Any, size: int, modified_ns: int, n_ctx: int) -> ModelCard:
    """The card from the engine's header reading (`info`, None before the model loads or
    for an engine without one) and the file's size and time."""
    quant = str(getattr(info, "file_type", "") or "unknown").upper()
    header = {}
    if info is not None:
        header = {
            "embedding_length": info.n_embd,
            "block_count": info.layers,
            "feed_forward_length": info.n_ff,
            "attention.head_count": info.n_head,
            "attention.head_count_kv": info.kv_heads,
            "attention.key_length": info.head_dim,
            "vocab_size": info.n_vocab,
        }
    return ModelCard(listed_name(model_id), size, quant, rfc3339(modified_ns), n_ctx, header)
