"""SQLite response cache keyed by the SHA-256 of the canonical request *and of who answers it*.

The request part covers everything that changes an answer (endpoint kind, model, prompt or messages,
every sampling parameter, the sample index). A model name alone does not say which model answers:
llama.cpp serves its one GGUF file whatever name is asked for (the README's own example passes
`--model any`), and two vLLM hosts may serve different checkpoints under one name. So every cache key
also carries the endpoint's identity: host, port and API path, plus the stable facts `/models` reports
about the model there (its id, owner, root/parent checkpoint, llama.cpp's size and parameter counts).
Volatile fields (`created`, which vLLM and llama.cpp stamp with the current time) stay out, so the same
server keeps hitting its own answers, and a direct run and its `--batch-api` twin (same endpoint, same
listing) share them.

The embedded teacher runs on a new random port each run; its identity is the GGUF file it serves (name
and size), so reruns hit the cache without starting the server.

Nothing secret enters a key or the file: the API key is never read here, and URL credentials, query and
fragment are dropped from the address.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import httpx

# What /models says about a model that does not change between two calls to the same server, and
# does change when another checkpoint is served: OpenAI/LiteLLM/Ollama give id + owned_by, vLLM adds
# root (the checkpoint path) and parent (the base of a LoRA adapter), llama.cpp adds meta (n_params,
# size, vocabulary, ...).
STABLE_MODEL_FIELDS = ("id", "owned_by", "root", "parent", "meta")


def request_key(request: dict[str, Any]) -> str:
    canonical = json.dumps(request, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def cache_key(identity: dict[str, Any], request_hash: str) -> str:
    """The row a request's answer lives in: the request hash (what records cite) under one endpoint."""
    return request_key({"endpoint_identity": identity, "request": request_hash})


def endpoint_address(base_url: str) -> str:
    """host:port/path, never user:password, query or fragment; the default port is spelled out so
    http://h/v1 and http://h:80/v1 are one endpoint."""
    url = httpx.URL(base_url)
    host = f"[{url.host}]" if ":" in url.host else url.host
    return f"{host}:{url.port or (443 if url.scheme == 'https' else 80)}{url.path.rstrip('/')}"


def served_model(listing: list[Any] | None, model: str) -> dict[str, Any] | None:
    """The listing entry for `model`, reduced to its stable fields; None when the listing cannot say.

    An exact id wins, then Ollama's implicit `:latest` tag; a server listing exactly one model serves
    that one whatever the name (llama.cpp). With several entries and no match nothing is claimed."""
    entries = [m for m in listing or [] if isinstance(m, dict) and isinstance(m.get("id"), str)]
    match = next((m for m in entries if m["id"] == model), None)
    if match is None:
        match = next((m for m in entries if m["id"] == f"{model}:latest"), None)
    if match is None and len(entries) == 1:
        match = entries[0]
    if match is None:
        return None
    return {k: match[k] for k in STABLE_MODEL_FIELDS if k in match}


def remote_identity(base_url: str, model: str, listing: list[Any] | None) -> dict[str, Any]:
    return {"endpoint": endpoint_address(base_url), "served": served_model(listing, model)}


def embedded_identity(gguf: str | Path) -> dict[str, Any]:
    gguf = Path(gguf)
    return {"endpoint": "embedded", "gguf": gguf.name, "bytes": gguf.stat().st_size}


def cached_answer_count(path: str | Path | None) -> int:
    """Answers held by a cache file, read-only (0 when there is none yet); raises sqlite3.Error for a
    file that is not a SQLite database."""
    if not path or not Path(path).is_file():
        return 0
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        has = db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='responses'").fetchone()
        return db.execute("SELECT COUNT(*) FROM responses").fetchone()[0] if has else 0
    finally:
        db.close()


class ResponseCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, response TEXT NOT NULL, "
            "created REAL DEFAULT (unixepoch('subsec')))")

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT response FROM responses WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, response: dict[str, Any]) -> None:
        blob = json.dumps(response, ensure_ascii=False)
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO responses (key, response) VALUES (?, ?)", (key, blob))

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
