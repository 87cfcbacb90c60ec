"""`/set` and `/show` in `edge-qwen chat`: the sampling and limits of the next turns.

Each knob is a `TurnOptions` field. The sampling knobs take the ranges the server takes
for the same fields, so a value means the same in the terminal as over HTTP; the seed is
held to llama.cpp's 32 bits. `default` (or `off`) gives a knob back to Qwen's recommended
value for the thinking mode, or to no limit (loop_guard: back on).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edge.chat.conversation import TurnOptions, sampling_for
from edge.errors import UsageError

UNSET = ("default", "off", "none", "unset")


@dataclass(frozen=True)
class Knob:
    """One setting: its `TurnOptions` field and what it accepts."""

    field: str
    parse: Callable[[str], object]
    accepts: str


def _number(
    kind: type, low: float | None, high: float | None, *, open_low: bool = False
) -> Callable[[str], object]:
    def parse(text: str) -> object:
        value = kind(text)
        if value != value:  # nan compares false with every bound
            raise ValueError(text)
        if low is not None and (value <= low if open_low else value < low):
            raise ValueError(text)
        if high is not None and value > high:
            raise ValueError(text)
        return value

    return parse


def _switch(text: str) -> bool:
    if text in ("on", "true", "yes", "1"):
        return True
    if text in ("off", "false", "no", "0"):
        return False
    raise ValueError(text)


INT32 = 2**31 - 1
KNOBS: dict[str, Knob] = {
    k.field: k
    for k in (
        Knob("temperature", _number(float, 0, 2), "0 to 2"),
        Knob("top_p", _number(float, 0, 1, open_low=True), "above 0, up to 1"),
        Knob("top_k", _number(int, 0, INT32), "0 (all) or more"),
        Knob("min_p", _number(float, 0, 1), "0 to 1"),
        Knob("max_tokens", _number(int, 1, INT32), "1 or more"),
        Knob("thinking_budget", _number(int, 0, INT32), "0 or more"),
        # llama.cpp's seed is 32 bits, and 0xFFFFFFFF means "pick one at random".
        Knob("seed", _number(int, 0, 2**32 - 2), "0 to 4294967294"),
        Knob("loop_guard", _switch, "on or off"),
    )
}
# Other spellings people bring from elsewhere (Ollama's num_predict, the CLI's flags).
ALIASES = {"temp": "temperature", "num_predict": "max_tokens", "budget": "thinking_budget"}


def knob_named(name: str) -> Knob:
    """The knob `name` means, in any spelling: `max-tokens`, `max_tokens`, `num_predict`."""
    key = name.lower().replace("-", "_")
    key = ALIASES.get(key, key)
    if key not in KNOBS:
        raise UsageError(f"/set knows no {name!r}.", f"It knows: {', '.join(KNOBS)}.")
    return KNOBS[key]


def thinking_asked(line: str) -> bool | None:
    """Ollama's spellings of /think and /no_think inside /set: `think`, `nothink`,
    `think on|off`. None when `line` is not one of them (a knob, then)."""
    words = line.lower().split()
    if words[:1] in (["nothink"], ["no_think"]) and len(words) == 1:
        return False
    if words[:1] != ["think"] or len(words) > 2:
        return None
    try:
        return _switch(words[1]) if len(words) == 2 else True
    except ValueError:
        raise UsageError(f"/set think takes on or off, not {words[1]!r}.") from None


def set_knob(opts: TurnOptions, line: str) -> tuple[TurnOptions, str]:
    """Apply `/set`'s argument (`NAME VALUE`; Ollama's `parameter NAME VALUE` too).

    Returns the new options and a line saying what changed; a bad name or value is a
    UsageError that says what is accepted, and leaves the options as they were.
    """
    words = line.split()
    if words[:1] == ["parameter"]:
        words = words[1:]
    if len(words) != 2:
        raise UsageError("Usage: /set NAME VALUE, e.g. /set temperature 0.2.", "/show lists them.")
    knob, text = knob_named(words[0]), words[1].lower()
    if text in UNSET and knob.field != "loop_guard":
        return _with(opts, knob.field, None), f"{knob.field} back to default"
    if text == "default":  # loop_guard: on unless turned off
        return _with(opts, knob.field, True), f"{knob.field} back to default (on)"
    try:
        value = knob.parse(text)
    except ValueError:
        raise UsageError(
            f"{knob.field} takes {knob.accepts}, not {words[1]!r}.",
            f"/set {knob.field} default gives it back to the default.",
        ) from None
    shown = ("on" if value else "off") if isinstance(value, bool) else value
    return _with(opts, knob.field, value), f"{knob.field} = {shown}"


def _with(opts: TurnOptions, field: str, value: Any) -> TurnOptions:
    return dataclasses.replace(opts, **{field: value})


def show_knobs(opts: TurnOptions, thinking: bool) -> list[str]:
    """One line per knob: the value the next turn uses, and where it comes from."""
    sampled = sampling_for(thinking, opts)
    mode = f"Qwen's default, thinking {'on' if thinking else 'off'}"
    rows = []
    for knob in KNOBS.values():
        given = getattr(opts, knob.field)
        if knob.field == "loop_guard":
            shown, origin = ("on" if given else "off"), ""
        elif given is not None:
            shown, origin = str(given), "set"
        elif hasattr(sampled, knob.field) and knob.field not in ("max_tokens", "seed"):
            shown, origin = str(getattr(sampled, knob.field)), mode
        else:
            shown, origin = "none", "no limit" if knob.field != "seed" else "random"
        rows.append(f"  {knob.field:<16}{shown:<8}{origin and f'({origin})'}".rstrip())
    return rows
