"""Token and request accounting for one role (teacher, judge, translator)."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Usage:
    role: str = "teacher"
    requests: int = 0          # calls that reached the endpoint and got an answer
    cache_hits: int = 0
    attempts: int = 0          # every HTTP attempt, including the failed ones
    retries: Counter = field(default_factory=Counter)   # cause -> count
    finish_reasons: Counter = field(default_factory=Counter)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0
    cached_completion_tokens: int = 0

    def to_dict(self) -> dict:
        return {
            "role": self.role,
            "requests": self.requests,
            "cache_hits": self.cache_hits,
            "attempts": self.attempts,
            "retries": dict(sorted(self.retries.items())),
            "finish_reasons": dict(sorted(self.finish_reasons.items())),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "tokens_served_from_cache": self.cached_prompt_tokens + self.cached_completion_tokens,
        }
