"""Qwen2/Qwen3 byte-level BPE vocabulary, read from tokenizer.json the way llama.cpp wants it.

llama.cpp's `gpt2` tokenizer model takes the byte-level token strings as they appear in
tokenizer.json, one per id up to the model's vocab size (holes become `[PAD{id}]`
placeholders of type UNUSED), the merges as "a b" strings, and a type per token: added
tokens that are special or look like `<|...|>` are CONTROL (hidden when detokenizing),
the other added ones (`<think>`, `<tool_call>`) USER_DEFINED (always rendered as text).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gguf import TokenType

from edge.errors import InvalidModelError


@dataclass(frozen=True)
class Vocab:
    """Everything the GGUF tokenizer section holds."""

    tokens: list[str]
    types: list[int]
    merges: list[str]
    bos_id: int | None
    eos_id: int | None
    pad_id: int | None
    add_bos: bool
    chat_template: str | None


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise InvalidModelError(
            f"{path.parent} has no {path.name}.",
            "A Qwen3 folder needs tokenizer.json and tokenizer_config.json beside the weights.",
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidModelError(f"{path} is not valid JSON ({exc.__class__.__name__}).") from None


def looks_special(text: str) -> bool:
    """Added tokens written like `<|...|>` are control tokens even when not marked special."""
    return text.startswith("<|") and text.endswith("|>")


def _content(value: Any) -> str | None:
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


def load_vocab(folder: Path, vocab_size: int, config_bos: int | None = None) -> Vocab:
    """Build the GGUF vocabulary of a Qwen3 folder, padded to the model's `vocab_size`."""
    tok = _read_json(folder / "tokenizer.json")
    tcfg = _read_json(folder / "tokenizer_config.json")
    model = tok.get("model") or {}
    if model.get("type") != "BPE" or not isinstance(model.get("vocab"), dict):
        raise InvalidModelError(
            f"{folder}/tokenizer.json is not a byte-level BPE tokenizer (Qwen3 uses one)."
        )
    by_id: dict[int, str] = {i: t for t, i in model["vocab"].items()}
    added: dict[int, dict[str, Any]] = {}
    for entry in tok.get("added_tokens", []):
        by_id[entry["id"]] = entry["content"]
        added[entry["id"]] = entry
    if max(by_id) >= vocab_size:
        raise InvalidModelError(
            f"{folder}: the tokenizer has id {max(by_id)} "
            f"but config.json says vocab_size {vocab_size}."
        )
    tokens, types = [], []
    for i in range(vocab_size):
        text = by_id.get(i)
        if text is None:
            tokens.append(f"[PAD{i}]")
            types.append(TokenType.UNUSED)
        elif i in added:
            tokens.append(text)
            special = added[i].get("special") or looks_special(text)
            types.append(TokenType.CONTROL if special else TokenType.USER_DEFINED)
        else:
            tokens.append(text)
            types.append(TokenType.NORMAL)
    ids = {t: i for i, t in by_id.items()}
    return Vocab(
        tokens=tokens,
        types=[int(t) for t in types],
        merges=_merges(model.get("merges", [])),
        bos_id=_special_id(tcfg.get("bos_token"), ids, config_bos),
        eos_id=_special_id(tcfg.get("eos_token"), ids, None),
        pad_id=_special_id(tcfg.get("pad_token"), ids, None),
        add_bos=bool(tcfg.get("add_bos_token", False)),
        chat_template=_chat_template(folder, tcfg),
    )


def _merges(raw: list[Any]) -> list[str]:
    # tokenizers writes merges either as "a b" strings or, since 0.20, as [a, b] pairs.
    return [m if isinstance(m, str) else f"{m[0]} {m[1]}" for m in raw]


def _special_id(value: Any, ids: dict[str, int], fallback: int | None) -> int | None:
    text = _content(value)
    if text is not None and text in ids:
        return ids[text]
    return fallback


def _chat_template(folder: Path, tcfg: dict[str, Any]) -> str | None:
    # Newer repos keep the template in its own file; older ones inside tokenizer_config.json.
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    template = tcfg.get("chat_template")
    if isinstance(template, list):  # named templates: take the default one
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    return template if isinstance(template, str) else None
