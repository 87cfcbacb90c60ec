"""The tokenizer corpus (tests/support/corpus.py) the converter's tests read is what they
need: large, and mixed in scripts, code, emoji and special tokens."""

from __future__ import annotations

from tests.support.corpus import corpus


def test_corpus_is_large_and_mixed() -> None:
    texts = corpus()
    assert len(texts) >= 200
    assert any("你好" in t for t in texts) and any("😀" in t for t in texts)
    assert any("<|im_end|>" in t for t in texts) and any("def " in t for t in texts)
