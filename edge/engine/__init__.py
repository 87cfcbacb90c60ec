"""The engine layer: the only code that talks to llama.cpp (edge.model.quantize aside).

Callers use the seam (`edge.engine.seam`): build a `Job`, `submit` it with an inbox, read
typed events back. `Engine` is the one implementation: a scheduler thread decoding every
running job in one batch, for the CLI (one slot) and the server (N slots) alike.
"""

from edge.engine.fallback import open_engine
from edge.engine.llama import llama_cpp_version
from edge.engine.sampling import build_sampler, schema_grammar
from edge.engine.scheduler import Engine
from edge.engine.seam import (
    EngineAPI,
    Event,
    Finish,
    FinishReason,
    Inbox,
    Item,
    Job,
    Limits,
    Run,
    SamplingParams,
    ShelfUse,
    ThinkingControl,
    Ticket,
    TokenEvent,
    TokenLogprob,
    Usage,
    generate,
)
from edge.errors import ContextOverflowError

__all__ = [
    "ContextOverflowError",
    "Engine",
    "EngineAPI",
    "Event",
    "Finish",
    "FinishReason",
    "Inbox",
    "Item",
    "Job",
    "Limits",
    "Run",
    "SamplingParams",
    "ShelfUse",
    "ThinkingControl",
    "Ticket",
    "TokenEvent",
    "TokenLogprob",
    "Usage",
    "build_sampler",
    "generate",
    "llama_cpp_version",
    "open_engine",
    "schema_grammar",
]
