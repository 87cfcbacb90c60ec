"""A multilingual tokenizer corpus: Chinese, English, code, emoji, whitespace runs, special tokens.

Built deterministically from hand-written pieces and their pairings so it is large
(over 200 strings) yet every string is meaningful to a reader of a failing test.
"""

from __future__ import annotations

import itertools

BASE = [
    # English prose and punctuation
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "I'm sure you've heard: it's 3.14159, not 22/7!",
    'e.g. U.S.A., Dr. Smith\'s "quoted" text — with dashes – and… ellipses',
    "ALL CAPS AND MiXeD cAsE",
    "Numbers: 0 1 12 123 1234 12345 123456789 3.0e-10 -42 +7",
    "Dates 2026-11-24T20:09:00Z and times 23:59:59.999",
    "email@example.com https://example.org/path?q=1&r=%20#frag",
    # Chinese, Japanese, Korean and other scripts
    "你好，世界！",
    "今天天气很好，我们去公园散步吧。",
    "大语言模型在边缘设备上运行需要量化。",
    "通义千问（Qwen）是阿里巴巴开发的模型。",
    "中英混合: Qwen3 模型 has 0.6B 参数",
    "日本語のテキストとカタカナ、ひらがな。",
    "한국어 문장도 토큰화합니다.",
    "Привет, мир! Съешь же ещё этих мягких французских булок.",
    "Γειά σου Κόσμε",
    "مرحبا بالعالم",
    "שלום עולם",
    "नमस्ते दुनिया",
    "ภาษาไทยไม่มีช่องว่าง",
    "Tiếng Việt có dấu: Xin chào thế giới",
    "Ünïcödé àccénts: café naïve résumé Zürich",
    # Code
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n",
    "for (int i = 0; i < n; ++i) { sum += a[i]; }",
    "const x = await fetch(`/api/${id}`).then(r => r.json());",
    "SELECT name, COUNT(*) FROM users WHERE age >= 18 GROUP BY name;",
    '{"key": [1, 2, 3], "nested": {"a": null, "b": true}}',
    '#include <stdio.h>\nint main(void) { printf("%d\\n", 42); }',
    "fn main() { let v: Vec<u8> = vec![0xFF; 16]; }",
    '<div class="x">&lt;tag&gt; &amp; entity</div>',
    "$ pip install -e '.[test]' && pytest -q",
    "\tindented\twith\ttabs",
    # Emoji and symbols
    "😀😃😄😁",
    "👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 🇨🇳🇺🇸",
    "∑ ∫ √ ≤ ≥ ≠ ∞ π α β γ",
    "→ ← ↑ ↓ ★ ☆ ♥ ♦ ✓ ✗",
    "©®™ ¥€£$ ¢ §¶",
    # Whitespace runs
    "a  b   c    d     e",
    "   leading spaces",
    "trailing spaces   ",
    "\n\n\nnewlines\n\n",
    "mixed \t\n \r\n whitespace",
    " ",
    "\n",
    "                                        ",
    "line1\nline2\r\nline3\rline4",
    # Special and added tokens, in context
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|>",
    "<think>\nreasoning here\n</think>\n\nanswer",
    '<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>',
    "<tool_response>\nok\n</tool_response>",
    "<|fim_prefix|>def f(<|fim_suffix|>)<|fim_middle|>",
    "<|vision_start|><|image_pad|><|vision_end|>",
    "text<|im_end|>more text",
    "<think></think>",
    "not special: <|im_start and im_end|>",
    # Odd but valid text
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "ーーーーーーーーーー",
    "!!!???...,,,;;;:::",
    "0x7fffffff 0b1010 1_000_000",
]

SEPARATORS = [" ", "\n", "", "\t", "  "]


def corpus() -> list[str]:
    """The base strings plus deterministic pairings of them (over 200 strings)."""
    pairs = itertools.islice(itertools.combinations(BASE, 2), 0, None, 11)
    mixed = [a + SEPARATORS[i % len(SEPARATORS)] + b for i, (a, b) in enumerate(pairs)]
    return BASE + mixed
