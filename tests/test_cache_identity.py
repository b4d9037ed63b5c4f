"""The response cache answers for one endpoint only: another server (or another GGUF behind the same
`--model any`) is asked, not replayed; the same server, its `--batch-api` twin and the embedded teacher
on a new random port keep hitting their own answers. `--refresh` and `--no-cache` (cache_mode) are
checked here too.

The stub plays the servers; what it proves is our keying, not anything about generation.
"""
from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from datagen.teacher import embedded as embedded_mod
from datagen.teacher.cache import ResponseCache
from datagen.teacher.client import Teacher
from datagen.teacher.config import TeacherConfig
from datagen.teacher.embedded import EmbeddedTeacher
from openai_stub import StubConfig, StubServer

PARAMS = {"temperature": 0, "max_tokens": 20}
PROMPTS = ["1. Name a colour.\n2.", "1. Name a river.\n2.", "1. Name a tree.\n2."]
FAST_BATCH = {"batch_poll_s": 0.02}


def _cfg(srv: StubServer, **kw) -> TeacherConfig:
    return TeacherConfig(base_url=srv.base_url, model=kw.pop("model", "stub-model"), backoff_base_s=0.01, **kw)


def _ask(cfg: TeacherConfig, cache_path, prompts=PROMPTS, embedded=None) -> Teacher:
    """One run: every prompt once, through a fresh Teacher on the given cache file."""
    cache = ResponseCache(cache_path)
    teacher = Teacher(cfg, cache, embedded=embedded)

    async def go():
        async with teacher:
            teacher.answers = await asyncio.gather(*(teacher.complete(p, PARAMS) for p in prompts))
    try:
        asyncio.run(go())
    finally:
        cache.close()
    return teacher


def _completions(srv: StubServer) -> int:
    return len(srv.requests_to("/v1/completions"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_another_server_with_the_same_model_name_is_asked_not_replayed(tmp_path):
    cache = tmp_path / "cache.sqlite"
    with StubServer(StubConfig(responder=lambda kind, body: "from server A")) as a:
        first = _ask(_cfg(a), cache)
    with StubServer(StubConfig(responder=lambda kind, body: "from server B")) as b:
        second = _ask(_cfg(b), cache)
        assert _completions(b) == len(PROMPTS)
    assert second.usage.cache_hits == 0 and second.usage.requests == len(PROMPTS)
    assert {c.text for c in first.answers} == {"from server A"}
    assert {c.text for c in second.answers} == {"from server B"}
    # the record's request hash names the request, not the server: equal requests, equal hashes
    assert [c.key for c in first.answers] == [c.key for c in second.answers]


def test_another_gguf_behind_model_any_on_the_same_port_is_asked_again(tmp_path):
    """llama.cpp answers any model name with its one file; the listing says which file that is."""
    cache, port = tmp_path / "cache.sqlite", _free_port()

    def llama(gguf: str, n_params: int) -> StubConfig:
        return StubConfig(models=[gguf], any_model=True, model_fields={"owned_by": "llamacpp",
                          "meta": {"n_params": n_params}}, models_created_now=True,
                          responder=lambda kind, body: f"answered by {gguf}")

    with StubServer(llama("/models/small.gguf", 135), port=port) as srv:
        _ask(_cfg(srv, model="any"), cache)
    with StubServer(llama("/models/big.gguf", 8000), port=port) as srv:
        other = _ask(_cfg(srv, model="any"), cache)
        assert _completions(srv) == len(PROMPTS)
    assert {c.text for c in other.answers} == {"answered by /models/big.gguf"}
    # the first server again (its `created` stamp has moved on): provably the same model, all hits
    with StubServer(llama("/models/small.gguf", 135), port=port) as srv:
        again = _ask(_cfg(srv, model="any"), cache)
        assert _completions(srv) == 0
    assert again.usage.cache_hits == len(PROMPTS)
    assert {c.text for c in again.answers} == {"answered by /models/small.gguf"}


def test_a_server_without_models_listing_still_hits_its_own_answers(tmp_path):
    with StubServer(StubConfig(models_status=404)) as srv:
        _ask(_cfg(srv), tmp_path / "c.sqlite")
        again = _ask(_cfg(srv), tmp_path / "c.sqlite")
        assert _completions(srv) == len(PROMPTS) and again.usage.cache_hits == len(PROMPTS)


def test_the_identity_is_asked_once_per_run_not_once_per_request(tmp_path):
    prompts = [f"1. Task {i}\n2." for i in range(25)]
    with StubServer(StubConfig(latency_s=0.01)) as srv:
        _ask(_cfg(srv, max_concurrency=8), tmp_path / "c.sqlite", prompts)
        assert len(srv.requests_to("/v1/models")) == 1 and _completions(srv) == 25
        _ask(_cfg(srv), tmp_path / "c.sqlite", prompts)          # a second run: one more look, no completion
        assert len(srv.requests_to("/v1/models")) == 2 and _completions(srv) == 25


def test_a_dead_listing_fails_every_waiting_request_with_one_attempt_series(tmp_path):
    """If /models stays down, the run fails once with its reason; requests do not each retry it."""
    with StubServer(StubConfig()) as srv:
        srv.app.config.models_status = 503
        from datagen.errors import TeacherUnavailable
        with pytest.raises(TeacherUnavailable, match="/models"):
            _ask(_cfg(srv, max_retries=2), tmp_path / "c.sqlite", [f"p{i}" for i in range(10)])
        assert len(srv.requests_to("/v1/models")) == 3 and _completions(srv) == 0


def test_direct_run_and_its_batch_api_twin_share_answers(tmp_path):
    with StubServer(StubConfig(batch_delay_s=0.05)) as srv:
        _ask(_cfg(srv, batch_api=True, **FAST_BATCH), tmp_path / "c.sqlite", PROMPTS[:2])
        assert _completions(srv) == 0 and len(srv.app.batches) == 1
        direct = _ask(_cfg(srv), tmp_path / "c.sqlite", PROMPTS[:2])
        assert _completions(srv) == 0 and direct.usage.cache_hits == 2
        _ask(_cfg(srv), tmp_path / "c.sqlite", PROMPTS)           # a third prompt answered directly ...
        twin = _ask(_cfg(srv, batch_api=True, **FAST_BATCH), tmp_path / "c.sqlite", PROMPTS)
        assert len(srv.app.batches) == 1 and twin.usage.cache_hits == 3   # ... serves the batch twin


def test_batch_results_collected_from_another_server_are_not_replayed(tmp_path):
    """The batch state file sits next to the cache and outlives it; its stored answers are per endpoint."""
    with StubServer(StubConfig(batch_delay_s=0.05, responder=lambda k, b: "from A")) as a:
        _ask(_cfg(a, batch_api=True, **FAST_BATCH), tmp_path / "first.sqlite", PROMPTS[:2])
    with StubServer(StubConfig(batch_delay_s=0.05, responder=lambda k, b: "from B")) as b:
        other = _ask(_cfg(b, batch_api=True, **FAST_BATCH), tmp_path / "second.sqlite", PROMPTS[:2])
        assert len(b.app.batches) == 1
    assert {c.text for c in other.answers} == {"from B"}


class _EmbeddedOnAStub(EmbeddedTeacher):
    """The embedded teacher's life cycle (a new random port every start) with the stub as its server."""

    def __init__(self, gguf):
        super().__init__()
        self.gguf, self.srv, self.started = gguf, None, 0

    def start(self) -> str:
        self.srv = StubServer(StubConfig(responder=lambda kind, body: f"port {self.srv.port}")).start()
        self.model_path, self.port = self.gguf, self.srv.port
        self.started += 1
        return self.srv.base_url

    def stop(self) -> None:
        if self.srv is not None:
            self.srv.stop()
            self.srv = None

    def exit_reason(self):
        return None


def test_embedded_teacher_reruns_hit_the_cache_whatever_port_it_gets(tmp_path, monkeypatch):
    gguf = tmp_path / "SmolLM2-135M-Instruct-Q8_0.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 100)
    monkeypatch.setattr(embedded_mod, "smollm2_gguf", lambda: gguf)
    first_server = _EmbeddedOnAStub(gguf)
    first = _ask(TeacherConfig(), tmp_path / "c.sqlite", embedded=first_server)
    assert first_server.started == 1 and first.usage.requests == len(PROMPTS)

    rerun_server = _EmbeddedOnAStub(gguf)
    rerun = _ask(TeacherConfig(), tmp_path / "c.sqlite", embedded=rerun_server)
    assert rerun.usage.cache_hits == len(PROMPTS) and rerun_server.started == 0    # not even started
    assert [c.text for c in rerun.answers] == [c.text for c in first.answers]

    gguf.write_bytes(b"GGUF" + b"\1" * 200)                      # another model file: asked again
    upgraded_server = _EmbeddedOnAStub(gguf)
    upgraded = _ask(TeacherConfig(), tmp_path / "c.sqlite", embedded=upgraded_server)
    assert upgraded.usage.cache_hits == 0 and upgraded_server.started == 1


def test_the_api_key_reaches_neither_the_cache_nor_the_log(tmp_path, caplog):
    key = "sk-test-IDENTITY-SECRET-42"
    caplog.set_level(logging.DEBUG)
    with StubServer(StubConfig(require_api_key=key, models=["stub-model"])) as srv:
        _ask(_cfg(srv, api_key=key), tmp_path / "c.sqlite")
        assert srv.requests_to("/v1/models")[0]["headers"]["authorization"] == f"Bearer {key}"
    assert "response cache: answers are kept for" in caplog.text
    assert key not in caplog.text and "IDENTITY-SECRET" not in caplog.text
    for f in tmp_path.glob("c.sqlite*"):
        assert b"IDENTITY-SECRET" not in f.read_bytes()


def test_refresh_asks_again_and_overwrites_what_later_runs_get(tmp_path):
    with StubServer(StubConfig(responder=lambda kind, body: "old answer")) as srv:
        _ask(_cfg(srv), tmp_path / "c.sqlite")
        srv.app.config.responder = lambda kind, body: "new answer"
        refreshed = _ask(_cfg(srv, cache_mode="refresh"), tmp_path / "c.sqlite")
        assert _completions(srv) == 2 * len(PROMPTS) and refreshed.usage.cache_hits == 0
        later = _ask(_cfg(srv), tmp_path / "c.sqlite")
        assert _completions(srv) == 2 * len(PROMPTS)
    assert {c.text for c in refreshed.answers} == {c.text for c in later.answers} == {"new answer"}
    assert len(ResponseCache(tmp_path / "c.sqlite")) == len(PROMPTS)   # overwritten, not duplicated


def test_no_cache_neither_reads_nor_writes(tmp_path):
    with StubServer() as srv:
        _ask(_cfg(srv), tmp_path / "c.sqlite", PROMPTS[:1])
        uncached = _ask(_cfg(srv, cache_mode="off"), tmp_path / "c.sqlite")
        assert _completions(srv) == 1 + len(PROMPTS) and uncached.usage.cache_hits == 0
    assert len(ResponseCache(tmp_path / "c.sqlite")) == 1


def test_refresh_with_batch_api_submits_again_instead_of_reusing_collected_batches(tmp_path):
    with StubServer(StubConfig(batch_delay_s=0.05)) as srv:
        _ask(_cfg(srv, batch_api=True, **FAST_BATCH), tmp_path / "c.sqlite", PROMPTS[:2])
        _ask(_cfg(srv, batch_api=True, cache_mode="refresh", **FAST_BATCH), tmp_path / "c.sqlite", PROMPTS[:2])
        assert len(srv.app.batches) == 2


@pytest.mark.parametrize("listing, model, expected", [
    ([{"id": "a", "owned_by": "x"}, {"id": "b", "owned_by": "y"}], "b", {"id": "b", "owned_by": "y"}),
    ([{"id": "llama3.1:latest", "owned_by": "library"}, {"id": "qwen:7b"}], "llama3.1",
     {"id": "llama3.1:latest", "owned_by": "library"}),
    ([{"id": "/m/x.gguf", "created": 1, "meta": {"size": 9}}], "any", {"id": "/m/x.gguf", "meta": {"size": 9}}),
    ([{"id": "a"}, {"id": "b"}], "c", None),
    (None, "m", None),
])
def test_which_listing_entry_describes_the_model(listing, model, expected):
    from datagen.teacher.cache import served_model
    assert served_model(listing, model) == expected
