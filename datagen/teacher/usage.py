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
    # Per request kind (bootstrap, classify, ...), answered live or from the cache alike: what a dry-run
    # needs to calibrate itself, with our tiktoken estimate beside the server's own prompt count.
    by_kind: dict[str, Counter] = field(default_factory=dict)
    cost_usd: float | None = None

    def record_kind(self, kind: str, estimated_prompt: int, prompt: int, completion: int) -> None:
        c = self.by_kind.setdefault(kind, Counter())
        c["requests"] += 1
        c["estimated_prompt_tokens"] += estimated_prompt
        c["prompt_tokens"] += prompt
        c["completion_tokens"] += completion

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
            "cost_usd": self.cost_usd,
            "by_kind": {k: dict(v) for k, v in sorted(self.by_kind.items())},
        }
