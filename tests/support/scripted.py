"""What the scripted checkpoints of tests/conftest.py say (edge.model.synthetic's `script`):
lists of pieces, each one token, each token followed by one successor only."""

from __future__ import annotations

# A model stuck in loops: "Let me Let me …" while thinking, "Hello world Hello world …" after.
LOOPING_SCRIPT = [["\n", "<think>", "Let", " me", "Let"], ["\n\n", "Hello", " world", "Hello"]]

# With thinking off (the prompt ends "\n\n") it calls a tool: every piece is one token.
TOOL_SCRIPT = [
    [
        "\n\n",
        "<tool_call>",
        '{"',
        "name",
        '":"',
        "get",
        "_time",
        '","',
        "arguments",
        '":',
        "{",
        "}}",
        "</tool_call>",
        "<|im_end|>",
    ]
]

# Markup a hostile model could emit, in its thinking and in its answer; every piece is one
# token and no token repeats with another successor (the scripted model's one rule).
HOSTILE_THINKING = "<img src=x onerror=alert(1)>"
HOSTILE_ANSWER = "<script>window.pwned=true</script> [x](javascript:top.close)"
HOSTILE_SCRIPT = [
    [
        "\n",
        "<think>",
        "<img",
        " src",
        "=x",
        " on",
        "error",
        "=",
        "alert",
        "(",
        "1",
        ")>",
        "</think>",
        "\n\n",
        "<script",
        ">window",
        ".p",
        "wn",
        "ed",
        "=true",
        "</",
        "script",
        ">",
        " [",
        "x",
        "](",
        "javascript",
        ":",
        "top",
        ".close",
        ")",
        "<|im_end|>",
    ]
]
