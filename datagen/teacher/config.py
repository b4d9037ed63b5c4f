"""Where the teacher is and how hard we may push it.

Precedence (DESIGN §3): CLI flags > environment (OPENAI_BASE_URL, OPENAI_API_KEY, DATAGEN_*) > YAML
config > defaults. The API key lives only in this object and in the Authorization header; `public()`
is what manifests and logs get.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit

from datagen.errors import DatagenError

APIS = ("completions", "chat")


@dataclass
class TeacherConfig:
    base_url: str | None = None      # None: start the embedded llama.cpp teacher
    model: str | None = None
    api: str = "completions"
    max_concurrency: int = 8
    timeout_s: float = 120.0
    max_retries: int = 6
    backoff_base_s: float = 0.5
    backoff_max_s: float = 60.0
    rpm: float | None = None          # requests per minute (None: only what the server advertises)
    tpm: float | None = None          # tokens per minute (input estimated with tiktoken + max_tokens)
    rate_window_s: float = 60.0       # the window rpm/tpm apply to (providers use a minute)
    batch_api: bool = False           # send through the provider's /v1/batches (cheaper, slower)
    batch_poll_s: float = 5.0         # first wait between polls of a batch (grows to 2 min)
    structured_output: str = "auto"   # json_schema (OpenAI, vLLM) | llama_json_object | none | auto
    api_key: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.api not in APIS:
            raise DatagenError(f"--api: expected one of {', '.join(APIS)}, got '{self.api}'")
        if self.structured_output not in ("auto", "json_schema", "llama_json_object", "none"):
            raise DatagenError(f"teacher.structured_output: expected auto, json_schema, llama_json_object or none, "
                               f"got '{self.structured_output}'")
        if self.batch_api and self.base_url is None:
            raise DatagenError("--batch-api: needs --base-url (the embedded llama.cpp teacher has no batch API)")
        if self.max_concurrency < 1:
            raise DatagenError(f"--max-concurrency: must be at least 1, got {self.max_concurrency}")
        if self.base_url is not None:
            parts = urlsplit(self.base_url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise DatagenError(f"--base-url: expected http(s)://host[:port]/v1, got '{self.base_url}'")
            self.base_url = self.base_url.rstrip("/")

    @property
    def embedded(self) -> bool:
        return self.base_url is None

    def public(self) -> dict[str, Any]:
        """What may be written down: the endpoint's host only, never the key or URL credentials."""
        host = urlsplit(self.base_url).hostname if self.base_url else "embedded-llama.cpp"
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("api_key", "base_url")}
        out["host"] = host
        out["api_key_set"] = bool(self.api_key)
        return out


def resolve_teacher_config(flags: dict[str, Any], yaml_cfg: dict[str, Any] | None = None,
                           env: dict[str, str] | None = None, where: str = "config") -> TeacherConfig:
    """Merge flags > environment > YAML > defaults. Flags given as None count as absent."""
    env = os.environ if env is None else env
    merged: dict[str, Any] = {}
    if yaml_cfg is not None and not isinstance(yaml_cfg, dict):
        raise DatagenError(f"{where}: teacher: expected a mapping of settings")
    known = sorted(f.name for f in fields(TeacherConfig) if f.name != "api_key")
    for k, v in (yaml_cfg or {}).items():
        if k == "api_key":
            raise DatagenError(f"{where}: teacher.api_key must not be written in a config file; set OPENAI_API_KEY")
        if k not in known:
            raise DatagenError(f"{where}: unknown teacher setting '{k}' (known: {', '.join(known)})")
        merged[k] = v
    env_map = {
        "base_url": env.get("DATAGEN_BASE_URL") or env.get("OPENAI_BASE_URL"),
        "api_key": env.get("DATAGEN_API_KEY") or env.get("OPENAI_API_KEY"),
        "model": env.get("DATAGEN_MODEL"),
        "api": env.get("DATAGEN_API"),
    }
    merged.update({k: v for k, v in env_map.items() if v})
    merged.update({k: v for k, v in flags.items() if v is not None})
    try:
        return TeacherConfig(**merged)
    except TypeError as e:
        raise DatagenError(f"{where}: teacher: {e}") from None
