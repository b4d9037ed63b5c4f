"""Prompt templates as files (prompts/<method>/<name>.txt), rendered without evaluating anything.

`{{name}}` placeholders are replaced by plain string substitution, so a user's own template can never
reach Python internals (no format-string attribute access, no Jinja). Every template used is hashed
into the manifest.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from datagen.errors import DatagenError

DEFAULT_PROMPTS_DIR = Path(__file__).resolve().parents[2] / "prompts"
_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")


@dataclass(frozen=True)
class Template:
    name: str
    path: Path
    text: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    @property
    def fields(self) -> set[str]:
        return set(_PLACEHOLDER.findall(self.text))

    def render(self, **values: str) -> str:
        missing = self.fields - set(values)
        if missing:
            raise DatagenError(f"{self.path}: placeholder '{{{{{sorted(missing)[0]}}}}}' has no value")
        return _PLACEHOLDER.sub(lambda m: values[m.group(1)], self.text)


def load_template(method: str, name: str, prompts_dir: str | Path | None = None,
                  required_fields: set[str] | None = None) -> Template:
    base = Path(prompts_dir) if prompts_dir else DEFAULT_PROMPTS_DIR
    path = base / method / f"{name}.txt"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatagenError(f"{path}: prompt template not found") from None
    except UnicodeDecodeError:
        raise DatagenError(f"{path}: prompt template is not UTF-8") from None
    tpl = Template(name=f"{method}/{name}", path=path, text=text)
    if required_fields is not None:
        lacking = required_fields - tpl.fields
        if lacking:
            raise DatagenError(f"{path}: template must contain the placeholder {{{{{sorted(lacking)[0]}}}}}")
        # Checked at load, before the first call: an unknown placeholder would otherwise fail only when
        # that template is first rendered, after earlier stages had spent teacher calls.
        unknown = tpl.fields - required_fields
        if unknown:
            bad = sorted(unknown)[0]
            line = text[:text.find(bad)].count("\n") + 1
            known = ", ".join("{{" + f + "}}" for f in sorted(required_fields))
            raise DatagenError(f"{path}:{line}: unknown placeholder {{{{{bad}}}}} (this template knows {known})")
    return tpl
