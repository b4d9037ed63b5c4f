"""Structured (JSON) answers: the right response_format per server, validation, bounded retries."""
from __future__ import annotations

import asyncio
import json

import pytest

from datagen.teacher.client import InvalidStructuredOutput, Teacher
from datagen.teacher.config import TeacherConfig
from openai_stub import StubConfig, StubServer

SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}, "score": {"type": "integer"}},
          "required": ["answer", "score"], "additionalProperties": False}


def _body(req):
    return json.loads(req["body"]) if isinstance(req["body"], str) else req["body"]


def _ask(srv, style="auto", max_invalid=2):
    t = Teacher(TeacherConfig(base_url=srv.base_url, model="stub", structured_output=style, backoff_base_s=0.01))

    async def go():
        async with t:
            return await t.complete_json("Rate this.", SCHEMA, {"temperature": 0.5, "max_tokens": 50},
                                         max_invalid=max_invalid)
    return t, asyncio.run(go())


def test_valid_answer_and_openai_style_response_format():
    with StubServer(StubConfig(responder=lambda kind, body: '{"answer": "fine", "score": 7}')) as srv:
        t, (value, answer) = _ask(srv)
        [req] = srv.requests_to("/v1/chat/completions")
    assert value == {"answer": "fine", "score": 7}
    assert _body(req)["response_format"]["type"] == "json_schema"
    assert _body(req)["response_format"]["json_schema"]["schema"] == SCHEMA


def test_llama_style_response_format():
    with StubServer(StubConfig(responder=lambda kind, body: '{"answer": "x", "score": 1}')) as srv:
        _ask(srv, style="llama_json_object")
        [req] = srv.requests_to("/v1/chat/completions")
    assert _body(req)["response_format"] == {"type": "json_object", "schema": SCHEMA}


def test_invalid_json_is_retried_with_a_new_seed_then_accepted():
    def responder(kind, body):
        return '{"answer": "ok", "score": 3}' if body.get("seed") == 2 else '{"answer": "ok", "score": "three"'
    with StubServer(StubConfig(responder=responder)) as srv:
        t, (value, _) = _ask(srv)
        seeds = [_body(r).get("seed") for r in srv.requests_to("/v1/chat/completions")]
    assert value["score"] == 3 and seeds == [None, 1, 2]
    assert t.usage.retries["invalid_json_output"] == 2


@pytest.mark.parametrize("text,reason", [('{"answer": 1}', "schema_mismatch"), ("not json at all", "invalid_json")])
def test_gives_up_after_n_attempts_with_a_reason(text, reason):
    with StubServer(StubConfig(responder=lambda kind, body: text)) as srv:
        with pytest.raises(InvalidStructuredOutput) as err:
            _ask(srv, max_invalid=1)
        assert len(srv.requests_to("/v1/chat/completions")) == 2
    assert err.value.reason.startswith(reason) and err.value.attempts == 2
