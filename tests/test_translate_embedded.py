"""`datagen translate` on the real embedded teacher (llama.cpp + SmolLM2-135M, the default with no
--base-url) and the real Prefect engine, a handful of records into one language. A 135M model mostly
fails to translate, so this checks the accounting, not quality: every attempt ends as a verified or
unverified translation or as a rejected row with its reason, and the manifest's language mix and
rejection counts agree with records.jsonl and rejected.jsonl."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from conftest import run_cli

pytestmark = pytest.mark.slow
ROWS = [
    {"instruction": "Explain why the sky looks blue during the day.", "input": "",
     "output": "Sunlight is scattered by the air, and blue light is scattered the most."},
    {"instruction": "Give three tips for saving money on groceries.", "input": "",
     "output": "1. Plan your meals.\n2. Buy in bulk.\n3. Compare prices at https://example.com first."},
    {"instruction": "Write a greeting for {name}.", "input": "<noinput>", "output": "Hello {name}, nice to meet you!"},
]


def _rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_translate_on_the_embedded_teacher_accounts_for_every_attempt(tmp_path, prefect_env):
    src = tmp_path / "alpaca.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    out = tmp_path / "out"
    p = run_cli(["dedup", str(src), "--name", "tiny", "--out", str(out)], env=prefect_env)
    assert p.returncode == 0, p.stderr[-3000:]
    p = run_cli(["translate", "tiny", "--to", "fr", "--max-tokens", "200", "--out", str(out)], env=prefect_env)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "Traceback" not in p.stderr
    v = out / "tiny" / (out / "tiny" / "LATEST").read_text().strip()
    assert v.name == "v0002"          # the originals always survive, so a version is published
    m = json.loads((v / "manifest.json").read_text())
    assert m["recipe"] == "translate" and m["parent"] == "tiny@v0001"
    records, rejected = _rows(v / "records.jsonl"), _rows(v / "rejected.jsonl")
    translated = [r for r in records if r["method"] == "translate"]
    t = m["translate"]
    fr = t["per_language"]["fr"]
    # every attempt is accounted for: passed, rejected with a reason, or skipped
    assert fr["attempted"] == len(ROWS)
    assert fr["passed"] + sum(fr["rejected"].values()) + fr["skipped_already_in_target"] + \
        fr["not_translated_budget"] == len(ROWS)
    assert fr["passed"] == len(translated) == fr["verified"] + fr["unverified"]
    # the manifest's reasons are the rejected rows' reasons, and the harness's rejected counts agree
    reasons = Counter(r["reason"] for r in rejected if r["stage"] == "translate")
    assert dict(reasons) == t["rejected"] == fr["rejected"] == m["rejected"].get("translate", {})
    assert all(r["detail"]["language"] == "fr" for r in rejected)
    mix = Counter(t["language_mix"])
    assert sum(mix.values()) == len(records) and mix["en"] + mix["unknown"] == len(ROWS)
    assert mix["fr"] == fr["verified"] and mix["fr (unverified)"] == fr["unverified"]
    assert any(u["role"] == "translator" and u["requests"] + u["cache_hits"] >= 1 for u in m["usage"])
    assert m["translator"]["same_as"] == "teacher"
    print("embedded translation:", json.dumps(t["per_language"]), json.dumps(t["language_mix"]))
