"""JSON text from users' files, parsed so that what we accept can also be written back out.

JSON may spell a lone UTF-16 surrogate (`"\\ud800"`); Python decodes it into a str that no UTF-8
writer accepts, so such a row passed every check and then crashed the cache, the record id or an
export far from the file and line that held it. Only a line that contains a surrogate escape pays
for the walk over its values.
"""
from __future__ import annotations

import json
import re
from typing import Any

from datagen.errors import DatagenError

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def unpaired_surrogate(value: Any, path: str = "") -> str | None:
    """The field (dotted path) of the first string holding an unpaired surrogate, or None."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path or "value"
        return None
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = ((f"[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    for key, v in items:
        name = str(key)
        found = unpaired_surrogate(name, path) if isinstance(key, str) and not name.startswith("[") else None
        if found:
            return found
        sub = f"{path}{name}" if name.startswith("[") else (f"{path}.{name}" if path else name)
        found = unpaired_surrogate(v, sub)
        if found:
            return found
    return None


def check_text(obj: Any, raw: str, where: str) -> Any:
    """`obj` parsed from `raw`; a DatagenError naming `where` and the field if it is not valid Unicode."""
    if _SURROGATE_ESCAPE.search(raw):
        field = unpaired_surrogate(obj)
        if field:
            raise DatagenError(f"{where}: field '{field}' holds an unpaired surrogate escape (\\uD800-\\uDFFF), "
                               "which is not valid Unicode")
    return obj


def loads(raw: str, where: str) -> Any:
    """json.loads plus the Unicode check; JSON errors are left to the caller, who knows the line."""
    return check_text(json.loads(raw), raw, where)
