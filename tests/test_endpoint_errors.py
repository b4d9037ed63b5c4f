"""What a user reads when the endpoint is wrong: the full URL that was requested (never its
credentials), where that URL came from (--base-url, OPENAI_BASE_URL, the config file), and an HTML
page called an HTML page, at once, instead of six retries ending in "not JSON"."""
from __future__ import annotations

import asyncio

import pytest

from datagen.errors import DatagenError, TeacherUnavailable
from datagen.teacher.cache import ResponseCache
from datagen.teacher.client import Teacher
from datagen.teacher.config import TeacherConfig, resolve_teacher_config
from datagen.teacher.preflight import check_endpoint
from openai_stub import StubConfig, StubServer

PAGE = ("<!DOCTYPE html>\n<html lang=\"en\">\n<head><title>Open WebUI</title></head>\n<body><div id=\"app\">"
        + "Loading the chat interface, please wait. " * 10 + "</div></body></html>")


def _complete(cfg: TeacherConfig, cache_path=None) -> None:
    cache = ResponseCache(cache_path) if cache_path else None

    async def go():
        async with Teacher(cfg, cache) as t:
            await t.complete("1. Say hi.\n2.", {"max_tokens": 8})
    asyncio.run(go())


def _flat(text: str) -> str:
    return " ".join(text[:200].split())


def test_html_page_fails_the_preflight_naming_it_with_its_first_200_characters():
    with StubServer(StubConfig(html_page=PAGE)) as srv:
        cfg = TeacherConfig(base_url=srv.base_url, model="m", backoff_base_s=0.01)
        with pytest.raises(DatagenError) as err:
            check_endpoint(cfg)
        assert len(srv.requests) == 1                               # not retried
    msg = str(err.value)
    assert not isinstance(err.value, TeacherUnavailable) and "\n" not in msg
    assert "HTML page" in msg and f"{srv.base_url}/models" in msg and "--base-url" in msg
    assert _flat(PAGE) in msg and "</html>" not in msg            # the first 200 characters, no more


@pytest.mark.parametrize("cached", [False, True], ids=["no cache", "with cache"])
def test_html_page_on_a_completion_is_one_error_without_retries(tmp_path, cached):
    """A run that skipped the preflight (a scheduled deployment) still fails at once, not after 39 s."""
    with StubServer(StubConfig(html_page=PAGE)) as srv:
        cfg = TeacherConfig(base_url=srv.base_url, model="m", backoff_base_s=0.5)
        with pytest.raises(DatagenError, match="HTML page") as err:
            _complete(cfg, tmp_path / "c.sqlite" if cached else None)
        assert len(srv.requests) == 1
    assert _flat(PAGE) in str(err.value)
    assert not isinstance(err.value, TeacherUnavailable)


def test_not_json_that_is_not_html_is_still_retried_and_shown():
    with StubServer(StubConfig(rate_invalid_json=1.0, retry_after_s=0)) as srv:
        cfg = TeacherConfig(base_url=srv.base_url, model="m", backoff_base_s=0.01, max_retries=2)
        with pytest.raises(TeacherUnavailable, match="not JSON") as err:
            _complete(cfg)
        assert len(srv.requests_to("/v1/completions")) == 3
    assert f"{srv.base_url}/completions" in str(err.value)


def test_404_shows_the_full_url_so_a_typo_is_visible(tmp_path):
    with StubServer() as srv:
        typo = srv.url + "/vl"
        with pytest.raises(DatagenError) as err:
            _complete(TeacherConfig(base_url=typo, model="m"), tmp_path / "c.sqlite")
    msg = str(err.value)
    assert f"teacher at {typo}/completions: HTTP 404" in msg and "check --base-url" in msg


def test_404_names_openai_base_url_when_the_url_came_from_the_environment():
    with StubServer() as srv:
        env = {"OPENAI_BASE_URL": srv.url + "/vl"}
        cfg = resolve_teacher_config({"model": "m"}, {}, env)
        with pytest.raises(DatagenError) as err:
            _complete(cfg)
    msg = str(err.value)
    assert f"{srv.url}/vl/completions" in msg and "OPENAI_BASE_URL in the environment" in msg
    assert "--base-url" not in msg


def test_404_names_the_config_file_when_the_url_came_from_it():
    with StubServer() as srv:
        cfg = resolve_teacher_config({"model": "m"}, {"base_url": srv.url + "/vl"}, {}, where="run.yaml")
        with pytest.raises(DatagenError, match=r"check run\.yaml: teacher\.base_url"):
            _complete(cfg)


def test_url_credentials_never_appear_in_an_error():
    with StubServer() as srv:
        cfg = TeacherConfig(base_url=f"http://alice:hunter2-SECRET@127.0.0.1:{srv.port}/vl", model="m")
        with pytest.raises(DatagenError) as err:
            _complete(cfg)
    assert "SECRET" not in str(err.value) and f"http://127.0.0.1:{srv.port}/vl/completions" in str(err.value)


def test_endpoint_that_stays_down_names_the_url_and_its_source():
    with StubServer(StubConfig(rate_503=1.0, retry_after_s=0)) as srv:
        cfg = resolve_teacher_config({"model": "m"}, {"max_retries": 1, "backoff_base_s": 0.01},
                                     {"DATAGEN_BASE_URL": srv.base_url})
        with pytest.raises(TeacherUnavailable) as err:
            _complete(cfg)
    msg = str(err.value)
    assert f"teacher at {srv.base_url}/completions: still failing after 1 retries" in msg
    assert "DATAGEN_BASE_URL in the environment" in msg


def test_preflight_of_a_dead_server_names_the_environment_variable():
    cfg = resolve_teacher_config({"model": "m"}, {"max_retries": 1, "backoff_base_s": 0.01},
                                 {"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"})
    with pytest.raises(TeacherUnavailable) as err:
        check_endpoint(cfg)
    assert "http://127.0.0.1:9/v1/models: unreachable after 1 retries" in str(err.value)
    assert "OPENAI_BASE_URL in the environment" in str(err.value)
