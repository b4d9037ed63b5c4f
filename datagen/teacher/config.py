"""Where the teacher is and how hard we may push it.

Precedence (DESIGN §3): CLI flags > environment (OPENAI_BASE_URL, OPENAI_API_KEY, DATAGEN_*) > YAML
config > defaults. The API key lives only in this object and in the Authorization header; `public()`
is what manifests and logs get.

Every setting is checked here, once, with its range and type, and an error names where the bad value
came from (the flag, the environment variable, or `file: teacher.field`): a user who exported
OPENAI_BASE_URL weeks ago should not be told to fix a `--base-url` they never typed.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit

import httpx

from datagen.errors import DatagenError

APIS = ("completions", "chat")
STRUCTURED_STYLES = ("auto", "json_schema", "llama_json_object", "none")
# use: read and write cached answers; refresh: ask again and overwrite them; off: neither read nor write.
CACHE_MODES = ("use", "refresh", "off")

# The `datagen run` flag that sets a setting; a setting without a flag is named by its config field.
FLAGS = {"base_url": "--base-url", "model": "--model", "api": "--api", "max_concurrency": "--max-concurrency",
         "rpm": "--rpm", "tpm": "--tpm", "batch_api": "--batch-api", "cache_mode": "--refresh / --no-cache"}

# Numeric settings: (whole number?, lowest, lowest allowed itself?, highest, what it counts). The upper
# bounds are far above any sensible value; they catch a unit slip (120000 meant as ms) before a run
# sleeps for days.
_DAY = 86400.0
NUMERIC = {
    "max_concurrency": (True, 1, True, None, "requests in flight"),
    "timeout_s": (False, 0, False, _DAY, "seconds"),
    "max_retries": (True, 0, True, 100, "retries per request"),
    "backoff_base_s": (False, 0, True, 3600.0, "seconds"),
    "backoff_max_s": (False, 0, True, _DAY, "seconds"),
    "rpm": (False, 0, False, None, "requests per window; leave it out for no limit"),
    "tpm": (False, 0, False, None, "tokens per window; leave it out for no limit"),
    "rate_window_s": (False, 0, False, _DAY, "seconds"),
    "batch_poll_s": (False, 0, False, _DAY, "seconds"),
    "shared_limit": (True, 1, True, None, "requests in flight across every run on this endpoint"),
}
OPTIONAL = {"base_url", "model", "rpm", "tpm", "api_key", "shared_limit"}
_CHOICES = {"api": APIS, "structured_output": STRUCTURED_STYLES, "cache_mode": CACHE_MODES}
_URL_SHAPE = "http(s)://host[:port]/v1"


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
    # slots of a Prefect global concurrency limit named after the endpoint host, held per request by
    # every run using it (datagen/flows/shared_limit.py); None: only this run's max_concurrency
    shared_limit: int | None = None
    structured_output: str = "auto"   # json_schema (OpenAI, vLLM) | llama_json_object | none | auto
    cache_mode: str = "use"           # use | refresh (--refresh) | off (--no-cache)
    api_key: str | None = field(default=None, repr=False)
    # setting -> where its value came from ("--base-url", "OPENAI_BASE_URL in the environment",
    # "run.yaml: teacher.timeout_s"); a setting not in here came from its flag or its default.
    sources: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name, (whole, low, low_ok, high, unit) in NUMERIC.items():
            _check_number(self, name, whole, low, low_ok, high, unit)
        if self.backoff_max_s < self.backoff_base_s:
            raise DatagenError(f"{self.where('backoff_max_s')}: must be at least backoff_base_s "
                               f"({self.backoff_base_s:g}), got {self.backoff_max_s:g}")
        for name, allowed in _CHOICES.items():
            value = getattr(self, name)
            if not isinstance(value, str) or value not in allowed:
                got = f"'{value}'" if isinstance(value, str) else _shown(value)
                raise DatagenError(f"{self.where(name)}: expected one of {', '.join(allowed)}, got {got}")
        if not isinstance(self.batch_api, bool):
            raise DatagenError(f"{self.where('batch_api')}: expected true or false, got {_shown(self.batch_api)}")
        if self.model is not None and (not isinstance(self.model, str) or not self.model.strip()):
            hint = " (quote it in YAML)" if "teacher.model" in self.where("model") else ""
            raise DatagenError(f"{self.where('model')}: expected a model name{hint}, got {_shown(self.model)}")
        if self.base_url is not None:
            self.base_url = _checked_base_url(self.base_url, self.where("base_url"))
        if self.batch_api and self.base_url is None:
            raise DatagenError(f"{self.where('batch_api')}: needs --base-url or OPENAI_BASE_URL (the embedded "
                               "llama.cpp teacher has no batch API)")

    @property
    def embedded(self) -> bool:
        return self.base_url is None

    def where(self, name: str) -> str:
        """How to name a setting to the user: the place its value came from."""
        return self.sources.get(name) or FLAGS.get(name) or f"teacher.{name}"

    @property
    def base_url_source(self) -> str:
        return "the embedded teacher" if self.embedded else self.where("base_url")

    def scrub(self, text: str) -> str:
        """Servers sometimes echo the presented key back (in an error or a page); it must not reach a log."""
        return text.replace(self.api_key, "***") if self.api_key else text

    def public(self) -> dict[str, Any]:
        """What may be written down: the endpoint's host only, never the key or URL credentials."""
        host = urlsplit(self.base_url).hostname if self.base_url else "embedded-llama.cpp"
        out = {f.name: getattr(self, f.name) for f in fields(self)
               if f.name not in ("api_key", "base_url", "sources")}
        out["host"] = host
        out["api_key_set"] = bool(self.api_key)
        return out


def safe_url(url: str, path: str = "") -> str:
    """`url` + `path` as it may be shown or logged: no user:password, query or fragment."""
    try:
        u = httpx.URL(url)
        shown = str(u.copy_with(username=None, password=None, query=None, fragment=None)).rstrip("/")
    except (httpx.InvalidURL, TypeError, ValueError):
        shown = _redact(str(url))
    return shown + path


def _redact(url: str) -> str:
    return re.sub(r"//[^/@]*@", "//***@", url)


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return f"'{value}' (a string)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "nothing (null)"
    if isinstance(value, (list, dict)):
        return f"{value!r} (a {'list' if isinstance(value, list) else 'mapping'})"
    return f"{value!r}"


def _check_number(cfg: TeacherConfig, name: str, whole: bool, low: float, low_ok: bool, high: float | None,
                  unit: str) -> None:
    value = getattr(cfg, name)
    if value is None and name in OPTIONAL:
        return
    kind = "a whole number" if whole else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DatagenError(f"{cfg.where(name)}: expected {kind} ({unit}), got {_shown(value)}")
    if whole and not isinstance(value, int):
        raise DatagenError(f"{cfg.where(name)}: expected a whole number ({unit}), got {value!r}")
    bad = not math.isfinite(value) or (value < low if low_ok else value <= low) or (high is not None and value > high)
    if bad:
        span = f"{'at least' if low_ok else 'more than'} {low:g}"
        if high is not None:
            span += f" and at most {high:g}"
        raise DatagenError(f"{cfg.where(name)}: must be {span} ({unit}), got {value!r}")


def _checked_base_url(url: Any, where: str) -> str:
    """The whole URL is parsed here, so a typo is one line naming its source, never a traceback later."""
    if not isinstance(url, str):
        raise DatagenError(f"{where}: expected {_URL_SHAPE}, got {_shown(url)}")
    shown = _redact(url)

    def bad(problem: str) -> DatagenError:
        return DatagenError(f"{where}: expected {_URL_SHAPE}, got '{shown}' ({problem})")

    if not url.strip():
        raise bad("empty")
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise bad("it contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError as e:
        problem = str(e)
        if "IPv6" in problem:
            problem = "an IPv6 address needs both brackets, e.g. http://[::1]:8000/v1"
        elif "Port" in problem or "port" in problem:
            problem = "the port must be a number from 1 to 65535"
        raise bad(problem) from None
    if parts.scheme not in ("http", "https"):
        raise bad("it must start with http:// or https://" if parts.scheme else "no http:// or https://")
    if not parts.netloc or not host:
        raise bad("no host")
    if port == 0:
        raise bad("the port must be a number from 1 to 65535")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise bad("a base URL has no ?query or #fragment; requests are sent to BASE/completions")
    try:
        httpx.URL(url)
    except httpx.InvalidURL as e:
        raise bad(str(e)) from None
    return url.rstrip("/")


# ----------------------------------------------------------------------------- resolving

_ENV_BASE_URL = ("DATAGEN_BASE_URL", "OPENAI_BASE_URL")
_ENV_API_KEY = ("DATAGEN_API_KEY", "OPENAI_API_KEY")


def _env_var(name: str) -> str:
    return "DATAGEN_" + name.upper()


def _from_env(name: str, raw: str, where: str) -> Any:
    """Environment values are text; each becomes the setting's type or an error naming the variable."""
    raw = raw.strip()
    if name in NUMERIC:
        whole = NUMERIC[name][0]
        try:
            return int(raw) if whole else float(raw)
        except ValueError:
            kind = "a whole number" if whole else "a number"
            raise DatagenError(f"{where}: expected {kind}, got '{raw}'") from None
    if name == "batch_api":
        low = raw.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise DatagenError(f"{where}: expected true or false, got '{raw}'")
    return raw


def resolve_teacher_config(flags: dict[str, Any], yaml_cfg: dict[str, Any] | None = None,
                           env: dict[str, str] | None = None, where: str = "config") -> TeacherConfig:
    """Merge flags > environment > YAML > defaults. Flags given as None count as absent."""
    env = os.environ if env is None else env
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if yaml_cfg is not None and not isinstance(yaml_cfg, dict):
        raise DatagenError(f"{where}: teacher: expected a mapping of settings")
    known = sorted(f.name for f in fields(TeacherConfig) if f.name not in ("api_key", "sources"))
    for k, v in (yaml_cfg or {}).items():
        if k == "api_key":
            raise DatagenError(f"{where}: teacher.api_key must not be written in a config file; set OPENAI_API_KEY")
        if k not in known:
            raise DatagenError(f"{where}: unknown teacher setting '{k}' (known: {', '.join(known)})")
        merged[k] = v
        sources[k] = f"{where}: teacher.{k}"
    for var in _ENV_BASE_URL:
        if env.get(var):
            merged["base_url"], sources["base_url"] = env[var], f"{var} in the environment"
            break
    for var in _ENV_API_KEY:
        if env.get(var):
            merged["api_key"] = env[var]
            break
    for name in known:
        var = _env_var(name)
        if name != "base_url" and env.get(var):
            label = f"{var} in the environment"
            merged[name], sources[name] = _from_env(name, env[var], label), label
    unknown = sorted(set(flags) - set(known))
    if unknown:
        raise TypeError(f"resolve_teacher_config: unknown flag setting(s) {unknown}")
    for k, v in flags.items():
        if v is not None:
            merged[k] = v
            sources[k] = FLAGS.get(k, "--" + k.replace("_", "-"))
    return TeacherConfig(**merged, sources=sources)


ROLES = ("judge", "translator")


def resolve_role_config(role: str, flags: dict[str, Any], role_yaml: dict[str, Any] | None,
                        teacher: TeacherConfig, env: dict[str, str] | None = None,
                        where: str = "config") -> TeacherConfig | None:
    """A role's own endpoint (DESIGN §3): `--<role>-base-url` / `--<role>-model` flags >
    DATAGEN_<ROLE>_BASE_URL / _MODEL / _API_KEY > the YAML `<role>:` section; every other setting, and
    whatever the role leaves out, is the teacher's. None: the role has no settings of its own and uses
    the teacher's endpoint itself (one client, one embedded server).

    The key: DATAGEN_<ROLE>_API_KEY, else the teacher's key only when the role talks to the teacher's
    own base URL; a key is never sent to another host it was not given for."""
    from dataclasses import replace

    env = os.environ if env is None else env
    prefix = f"DATAGEN_{role.upper()}_"
    if role_yaml is not None and not isinstance(role_yaml, dict):
        raise DatagenError(f"{where}: {role}: expected a mapping of settings")
    role_yaml = role_yaml or {}
    known = sorted(f.name for f in fields(TeacherConfig) if f.name not in ("api_key", "sources", "cache_mode"))
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for k, v in role_yaml.items():
        if k == "api_key":
            raise DatagenError(f"{where}: {role}.api_key must not be written in a config file; set {prefix}API_KEY")
        if k not in known:
            raise DatagenError(f"{where}: unknown {role} setting '{k}' (known: {', '.join(known)})")
        merged[k], sources[k] = v, f"{where}: {role}.{k}"
    for name in ("base_url", "model"):
        if env.get(prefix + name.upper()):
            merged[name], sources[name] = env[prefix + name.upper()].strip(), f"{prefix}{name.upper()} in the environment"
    for k, v in flags.items():
        if v is not None:
            merged[k], sources[k] = v, f"--{role}-{k.replace('_', '-')}"
    if not merged and not env.get(prefix + "API_KEY"):
        return None
    if "base_url" in merged and "model" not in merged:
        raise DatagenError(f"--{role}-model: required when {sources['base_url']} gives the {role} an endpoint "
                           "of its own")
    base = {f.name: getattr(teacher, f.name) for f in fields(TeacherConfig) if f.name != "sources"}
    own_key = env.get(prefix + "API_KEY")
    same_endpoint = merged.get("base_url", teacher.base_url) == teacher.base_url
    base["api_key"] = own_key or (teacher.api_key if same_endpoint else None)
    cfg = TeacherConfig(**{**base, **merged}, sources={**teacher.sources, **sources})
    return replace(cfg, cache_mode=teacher.cache_mode)
