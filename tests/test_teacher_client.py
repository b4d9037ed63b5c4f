"""The teacher client against protocol behaviour: retries, Retry-After, cache, errors, accounting.

The scripted stub server stands in for an OpenAI-compatible endpoint; it proves nothing about
generation quality, only that our client speaks the protocol and survives its faults.
"""
from __future__ import annotations

import asyncio
import json
import time

import pytest

from datagen.errors import DatagenError, TeacherUnavailable
from datagen.teacher.cache import ResponseCache
from datagen.teacher.client import Teacher
from datagen.teacher.config import TeacherConfig, resolve_teacher_config
from openai_stub import StubConfig, StubServer

PARAMS = {"temperature": 0, "max_tokens": 20}


def _teacher(srv, tmp_path, **kw):
    cfg = TeacherConfig(base_url=srv.base_url, model=kw.pop("model", "stub-model"),
                        backoff_base_s=kw.pop("backoff_base_s", 0.01), **kw)
    return Teacher(cfg, ResponseCache(tmp_path / "cache.sqlite"))


def _run(coro):
    return asyncio.run(coro)


async def _complete_all(teacher, prompts, params=PARAMS):
    async with teacher:
        return await asyncio.gather(*(teacher.complete(p, params) for p in prompts))


def test_completion_records_usage_and_rerun_is_all_cache(tmp_path):
    with StubServer() as srv:
        first = _run(_complete_all(_teacher(srv, tmp_path), ["1. a\n2.", "1. b\n2."]))
        assert len(srv.requests_to("/v1/completions")) == 2
        assert all(c.text and not c.cached and c.prompt_tokens > 0 for c in first)
        t2 = _teacher(srv, tmp_path)
        again = _run(_complete_all(t2, ["1. a\n2.", "1. b\n2."]))
        assert len(srv.requests_to("/v1/completions")) == 2          # zero new calls
        assert [c.text for c in again] == [c.text for c in first] and all(c.cached for c in again)
        assert t2.usage.cache_hits == 2 and t2.usage.requests == 0


def test_same_prompt_twice_is_two_samples(tmp_path):
    with StubServer() as srv:
        t = _teacher(srv, tmp_path)
        _run(_complete_all(t, ["same", "same"]))
        assert t.usage.requests == 2 and len(srv.requests_to("/v1/completions")) == 2


def test_chat_api_sends_messages(tmp_path):
    with StubServer() as srv:
        [c] = _run(_complete_all(_teacher(srv, tmp_path, api="chat"), ["Say hi."]))
        [req] = srv.requests_to("/v1/chat/completions")
        body = json.loads(req["body"]) if isinstance(req["body"], str) else req["body"]
        assert body["messages"] == [{"role": "user", "content": "Say hi."}]
        assert c.text


def test_retry_after_is_obeyed_on_429(tmp_path):
    with StubServer(StubConfig(rate_429=1.0, faults_per_request_key=1, retry_after_s=1.5)) as srv:
        t = _teacher(srv, tmp_path)
        start = time.monotonic()
        [c] = _run(_complete_all(t, ["hello"]))
        elapsed = time.monotonic() - start
        assert c.text and t.usage.retries["429"] == 1
        assert elapsed >= 1.4          # waited as told, not the 10 ms backoff


@pytest.mark.parametrize("fault", ["500", "502", "503", "reset", "invalid_json"])
def test_transient_faults_are_retried(tmp_path, fault):
    cause = {"reset": "connection"}.get(fault, fault)
    with StubServer(StubConfig(**{f"rate_{fault}": 1.0}, faults_per_request_key=2, retry_after_s=0)) as srv:
        t = _teacher(srv, tmp_path)
        [c] = _run(_complete_all(t, ["hello"]))
        assert c.text
        assert sum(t.usage.retries.values()) == 2 and (t.usage.retries[cause] == 2 or fault == "reset")


def test_timeout_is_retried(tmp_path):
    with StubServer(StubConfig(rate_timeout=1.0, faults_per_request_key=1, timeout_hang_s=5)) as srv:
        t = _teacher(srv, tmp_path, timeout_s=0.5)
        [c] = _run(_complete_all(t, ["hello"]))
        assert c.text and t.usage.retries["timeout"] == 1


def test_endpoint_that_stays_down_raises_teacher_unavailable(tmp_path):
    with StubServer(StubConfig(rate_503=1.0, retry_after_s=0)) as srv:
        t = _teacher(srv, tmp_path, max_retries=2)
        with pytest.raises(TeacherUnavailable, match="still failing after 2 retries"):
            _run(_complete_all(t, ["hello"]))
        assert len(srv.requests_to("/v1/completions")) == 3


def test_wrong_key_is_a_clear_error_without_the_key(tmp_path):
    with StubServer(StubConfig(require_api_key="sk-right")) as srv:
        t = _teacher(srv, tmp_path, api_key="sk-wrong-SECRET-123")
        with pytest.raises(DatagenError, match="API key was refused") as err:
            _run(_complete_all(t, ["hello"]))
        assert "SECRET" not in str(err.value)
        ok = _teacher(srv, tmp_path, api_key="sk-right")
        assert _run(_complete_all(ok, ["hello"]))[0].text


def test_unknown_model_is_a_clear_error(tmp_path):
    with StubServer(StubConfig(models=["real-model"])) as srv:
        with pytest.raises(DatagenError, match="unknown model"):
            _run(_complete_all(_teacher(srv, tmp_path, model="nope"), ["hello"]))


def test_cache_holds_no_key(tmp_path):
    with StubServer(StubConfig(require_api_key="sk-SECRET-abc")) as srv:
        _run(_complete_all(_teacher(srv, tmp_path, api_key="sk-SECRET-abc"), ["hello"]))
    assert b"SECRET" not in (tmp_path / "cache.sqlite").read_bytes()


def test_config_precedence_flags_env_yaml():
    env = {"OPENAI_BASE_URL": "http://env:1/v1", "OPENAI_API_KEY": "sk-SECRET-9", "DATAGEN_MODEL": "env-model"}
    cfg = resolve_teacher_config({"model": "flag-model"}, {"base_url": "http://yaml:2/v1", "max_concurrency": 3}, env)
    assert (cfg.base_url, cfg.model, cfg.max_concurrency, cfg.api_key) == ("http://env:1/v1", "flag-model", 3, "sk-SECRET-9")
    assert "SECRET" not in str(cfg.public()) and "SECRET" not in repr(cfg) and cfg.public()["host"] == "env"
    with pytest.raises(DatagenError, match="api_key"):
        resolve_teacher_config({}, {"api_key": "x"}, {})
    with pytest.raises(DatagenError, match="--api"):
        resolve_teacher_config({"api": "grpc"}, {}, {})


def test_each_setting_remembers_where_it_came_from():
    env = {"OPENAI_BASE_URL": "http://env:1/v1", "DATAGEN_TIMEOUT_S": "30", "DATAGEN_BATCH_API": "no"}
    cfg = resolve_teacher_config({"max_concurrency": 4}, {"timeout_s": 99, "max_retries": 2}, env, where="run.yaml")
    assert (cfg.timeout_s, cfg.max_retries, cfg.max_concurrency, cfg.batch_api) == (30.0, 2, 4, False)
    assert cfg.where("base_url") == "OPENAI_BASE_URL in the environment"
    assert cfg.where("timeout_s") == "DATAGEN_TIMEOUT_S in the environment"
    assert cfg.where("max_retries") == "run.yaml: teacher.max_retries"
    assert cfg.where("max_concurrency") == "--max-concurrency"
    assert cfg.where("rpm") == "--rpm" and cfg.where("rate_window_s") == "teacher.rate_window_s"
    assert "sources" not in cfg.public() and cfg.public()["cache_mode"] == "use"


def test_an_answer_with_a_lone_surrogate_is_cached_not_a_crash(tmp_path):
    """A server may send JSON with "\\ud800"; no UTF-8 file (cache, export) can hold it as is."""
    import asyncio as _asyncio

    from datagen.teacher.cache import ResponseCache
    from datagen.teacher.client import Teacher
    from datagen.teacher.config import TeacherConfig
    from openai_stub import StubConfig, StubServer

    with StubServer(StubConfig(responder=lambda kind, body: "bad \ud800 answer")) as srv:
        async def go():
            async with Teacher(TeacherConfig(base_url=srv.base_url, model="stub"), ResponseCache(tmp_path / "c.sqlite")) as t:
                return await t.complete("Say something.", {"temperature": 0, "max_tokens": 8})
        answer = _asyncio.run(go())
    assert answer.text == "bad ? answer"
    answer.text.encode("utf-8")
