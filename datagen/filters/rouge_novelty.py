"""ROUGE-L novelty filter: Self-Instruct's "drop if ROUGE-L F > 0.7 against any pooled instruction".

The decision is the one rouge-score 0.1.2 would make (``RougeScorer(["rougeL"], use_stemmer=False)``,
``score(new, old)["rougeL"].fmeasure > threshold`` against every seed and accepted instruction), down to
its float arithmetic: the same tokens, the exact LCS length, then ``p = lcs/len(old)``,
``r = lcs/len(new)``, ``f = 2*p*r/(p+r)``. Only the search is different, so that a 52K-instruction run
takes seconds instead of the quadratic loop's hours:

* Every pooled instruction is indexed by its token *occurrences* ((token, 1), (token, 2), ...), so one
  ``bincount`` over the candidate's posting lists yields, for every pooled instruction, the multiset
  overlap ``ov`` of tokens. ``lcs <= ov``, hence ``f <= 2*ov/(len(new)+len(old))`` (the true value of the
  float formula is ``2*lcs/(len(new)+len(old))``). Instructions sharing no token score exactly 0.
* The exact LCS (rapidfuzz, on token ids encoded as one character each) is computed in decreasing order
  of that bound, and the search stops once the bound falls below the current k-th best exact score minus
  1e-9. Float rounding moves ``f`` by ~1e-16 from its true value, so a skipped pair provably cannot
  reach the k-th best (ties included); with k >= 1 that covers the maximum, hence the decision.
  Worst case (a pool of word-order permutations: high overlap, low LCS) degrades to one C++ LCS per
  pooled instruction, ~0.1-0.2 us each, never a Python DP (10,000 shuffles of one sentence: ~8 s).

What is exact and what is not (the honest part):

* exact, always: the keep/drop decision, ``rouge_max`` and ``most_similar`` — the ``top_k`` best pooled
  instructions with their scores, best first (pairs scoring 0 are not listed). These are the scores
  the quadratic loop reports; among tied scores we list the earlier pooled instruction first, where
  Self-Instruct's ``np.argsort`` picks arbitrarily. A drop carries ``rouge_max`` and the most similar
  text only.
* ``avg_similarity`` (Self-Instruct's mean similarity to the whole pool) needs every pair, which is the
  quadratic cost this module exists to avoid. It is exact while the pool holds at most ``MEAN_SAMPLE``
  instructions and, beyond that, the mean over a uniform reservoir sample of ``MEAN_SAMPLE`` pooled
  instructions (fixed seed, so reruns agree). ``avg_similarity_n`` says how many instructions it
  averages and ``pool_size`` how many there are: exact iff the two are equal.

Tokenizers (``tokenizer_name`` records which ran, for the manifest):

* ``"rouge_score"`` (default): rouge-score's own — ``lower()``, every run of characters outside
  ``[a-z0-9]`` becomes a separator, no stemmer. It drops every non-Latin character, so Chinese or
  Japanese instructions have no tokens, score 0 and are never deduplicated.
* ``"unicode"``: NFKC, ``casefold()``, words are runs of letters, digits and combining marks of any
  script, and each Han, Hiragana, Katakana, Thai, Lao, Khmer or Myanmar character (scripts written
  without spaces) is a token of its own. On ASCII text it yields exactly the default tokens.
"""
from __future__ import annotations

import random
import re
import sys
import unicodedata
from functools import lru_cache

import numpy as np
from rapidfuzz.distance import LCSseq
from rapidfuzz.process import cdist

from datagen.errors import DatagenError
from datagen.filters.params import number
from datagen.filters.verdict import Verdict, drop

__all__ = ["RougeNovelty", "tokenize", "rouge_l_f"]

TOKENIZERS = ("rouge_score", "unicode")
MEAN_SAMPLE = 500  # pooled instructions averaged for avg_similarity once the pool is larger
_MARGIN = 1e-9  # see module docstring: far above the float error of a score or a bound
_FIRST_BATCH = 32  # exact LCS computed for the best-bounded pairs first, to get a k-th best score
_BATCH = 256
_MAX_TEXT_IDS = sys.maxunicode - 0x800  # ids (and the "unseen" id) that map to a code point

_ROUGE_NON_ALNUM = re.compile(r"[^a-z0-9]+")
_UNSPACED = (
    "\u0e00-\u0e7f"  # Thai
    "\u0e80-\u0eff"  # Lao
    "\u1000-\u109f"  # Myanmar
    "\u1780-\u17ff"  # Khmer
    "\u3040-\u309f"  # Hiragana
    "\u30a0-\u30ff\u31f0-\u31ff\uff66-\uff9f"  # Katakana (+ phonetic extensions, halfwidth)
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # Han (+ extension A, compatibility)
    "\U00020000-\U0003ffff"  # Han extensions B..H
)
_UNSPACED_RE = re.compile(f"[{_UNSPACED}]")


@lru_cache(maxsize=1)
def _unicode_word_re() -> re.Pattern[str]:
    """Words = letters/digits plus combining marks: stdlib ``\\w`` lacks the marks (Devanagari vowel
    signs, viramas...), which would cut Hindi words apart. Built once, on first use (~0.1 s)."""
    ranges: list[list[int]] = []
    for cp in range(sys.maxunicode + 1):
        if unicodedata.category(chr(cp))[0] == "M":
            if ranges and ranges[-1][1] == cp - 1:
                ranges[-1][1] = cp
            else:
                ranges.append([cp, cp])
    marks = "".join(re.escape(chr(a)) + ("-" + re.escape(chr(b)) if b > a else "") for a, b in ranges)
    return re.compile(f"(?:[^\\W_]|[{marks}])+")


def tokenize(text: str, tokenizer: str = "rouge_score") -> list[str]:
    """Tokens as the named tokenizer sees them (see the module docstring)."""
    if tokenizer == "rouge_score":
        # rouge_score.tokenize.tokenize without stemmer: after the substitution only [a-z0-9 ] is
        # left, so its split-on-\s+-and-drop-invalid-tokens is exactly str.split().
        return _ROUGE_NON_ALNUM.sub(" ", text.lower()).split()
    if tokenizer == "unicode":
        text = unicodedata.normalize("NFKC", text).casefold()
        text = _UNSPACED_RE.sub(r" \g<0> ", text)
        return _unicode_word_re().findall(text)
    raise DatagenError(f"unknown ROUGE tokenizer {tokenizer!r}: choose one of {', '.join(TOKENIZERS)}")


def rouge_l_f(a_tokens, b_tokens) -> float:
    """rouge-score's ROUGE-L F for target ``a`` (the new instruction) and prediction ``b`` (a pooled
    one), same float operations in the same order; 0 when either side has no tokens."""
    if not a_tokens or not b_tokens:
        return 0.0
    lcs = LCSseq.similarity(a_tokens, b_tokens)
    return _f(lcs, len(a_tokens), len(b_tokens))


def _f(lcs: int, len_new: int, len_old: int) -> float:
    precision = lcs / len_old
    recall = lcs / len_new
    if precision + recall > 0:
        return 2 * precision * recall / (precision + recall)
    return 0.0


class _GrowArray:
    """A numpy array with amortised O(1) append (posting lists, lengths)."""

    __slots__ = ("buf", "n")

    def __init__(self, cap: int = 4, dtype: type = np.intp) -> None:
        self.buf = np.empty(cap, dtype=dtype)  # intp: what bincount wants, no conversion per query
        self.n = 0

    def append(self, v: int) -> None:
        if self.n == len(self.buf):
            self.buf = np.concatenate([self.buf, np.empty_like(self.buf)])
        self.buf[self.n] = v
        self.n += 1

    def view(self) -> np.ndarray:
        return self.buf[: self.n]


class RougeNovelty:
    """Stateful novelty index: ``check`` a candidate against everything added so far.

    Self-Instruct adds the seeds with ``add`` and streams candidates through ``check_and_add``, so an
    accepted instruction is compared with the later ones of the same batch.
    """

    def __init__(self, threshold: float = 0.7, tokenizer: str = "rouge_score", top_k: int = 10) -> None:
        if not isinstance(tokenizer, str) or tokenizer not in TOKENIZERS:
            tokenize("", str(tokenizer))  # raises the user-facing error
        self.threshold = float(number("rouge threshold", threshold, low=0, high=1))
        self.top_k = number("rouge top_k", top_k, integer=True, low=1)
        self.tokenizer_name = tokenizer
        self._texts: list[str] = []
        self._seqs: list = []  # token ids, one character per token (rapidfuzz compares code points)
        self._lens = _GrowArray(1024, np.float64)  # float: the bound needs no cast
        self._vocab: dict[str, int] = {}
        self._postings: dict[tuple[int, int], _GrowArray] = {}
        self._ids_as_text = True  # False only if the vocabulary outgrows the code-point space
        self._sample: list[int] = []
        self._sample_seqs: list = []
        self._sample_lens: list[int] = []
        self._rng = random.Random(0)

    def __len__(self) -> int:
        return len(self._texts)

    def add(self, text: str) -> None:
        """Pool ``text`` unconditionally (seeds, or instructions accepted elsewhere)."""
        self._add(text, self._token_ids(text, grow=True))

    def check(self, text: str) -> Verdict:
        """Keep, or drop("rouge_similar") when ROUGE-L F against a pooled instruction exceeds the
        threshold; the pool is not changed."""
        return self._verdict(text, self._token_ids(text, grow=False))[0]

    def check_and_add(self, text: str) -> Verdict:
        """``check``, and pool ``text`` when it is kept."""
        verdict, ids = self._verdict(text, self._token_ids(text, grow=False))
        if verdict.keep:
            self._add(text, self._token_ids(text, grow=True) if None in ids else ids)
        return verdict

    # -- internals -------------------------------------------------------------------------------

    def _token_ids(self, text: str, grow: bool) -> list:
        """Token ids; unseen tokens get None when not growing (they cannot match anything pooled)."""
        vocab = self._vocab
        if not grow:
            return [vocab.get(t) for t in tokenize(text, self.tokenizer_name)]
        ids = []
        for t in tokenize(text, self.tokenizer_name):
            i = vocab.get(t)
            if i is None:
                i = vocab[t] = len(vocab)
            ids.append(i)
        return ids

    def _encode(self, ids: list) -> object:
        """A sequence rapidfuzz compares element by element: a str with one code point per token while
        the ids fit (fast, nothing to hash), else a list of ints."""
        n = len(self._vocab)
        if self._ids_as_text and n > _MAX_TEXT_IDS:
            self._ids_as_text = False
            self._seqs = [self._decode(s) for s in self._seqs]
            self._sample_seqs = [self._seqs[i] for i in self._sample]
        if not self._ids_as_text:
            return list(ids)
        if n < 0xD800:
            return "".join(map(chr, ids))
        return "".join([chr(i + 0x800 if i >= 0xD800 else i) for i in ids])  # skip the surrogates

    @staticmethod
    def _decode(seq: str) -> list[int]:
        return [c if c < 0xD800 else c - 0x800 for c in map(ord, seq)]

    def _query_seq(self, ids: list) -> object:
        # A token unseen by the pool matches nothing; any id outside the vocabulary stands in for it.
        unseen = len(self._vocab)
        return self._encode([unseen if i is None else i for i in ids])

    def _add(self, text: str, ids: list[int]) -> None:
        idx = len(self._texts)
        self._texts.append(text)
        seq = self._encode(ids)
        self._seqs.append(seq)
        self._lens.append(len(ids))
        seen: dict[int, int] = {}
        postings = self._postings
        for t in ids:
            k = seen[t] = seen.get(t, 0) + 1
            plist = postings.get((t, k))
            if plist is None:
                plist = postings[(t, k)] = _GrowArray()
            plist.append(idx)
        # Reservoir sample (algorithm R) for the avg_similarity estimate.
        if idx < MEAN_SAMPLE:
            self._sample.append(idx)
            self._sample_seqs.append(seq)
            self._sample_lens.append(len(ids))
        else:
            j = self._rng.randrange(idx + 1)
            if j < MEAN_SAMPLE:
                self._sample[j] = idx
                self._sample_seqs[j] = seq
                self._sample_lens[j] = len(ids)

    def _verdict(self, text: str, ids: list) -> tuple[Verdict, list]:
        best = self._best(ids, max(self.top_k, 1))  # [(score, pool index)], best first
        rouge_max = best[0][0] if best else 0.0
        if rouge_max > self.threshold:
            return drop("rouge_similar", rouge_max=rouge_max, most_similar=self._texts[best[0][1]]), ids
        avg, n = self._average(ids)
        detail = {
            "rouge_max": rouge_max,
            "most_similar": [[self._texts[i], s] for s, i in best[: self.top_k]],
            "avg_similarity": avg,
            "avg_similarity_n": n,
            "pool_size": len(self._texts),
        }
        return Verdict(True, "", detail), ids

    def _best(self, ids: list, k: int) -> list[tuple[float, int]]:
        """The k best pooled instructions by exact ROUGE-L F (score > 0 only), best first."""
        la = len(ids)
        if not la or not self._texts:
            return []
        postings = self._postings
        seen: dict[int, int] = {}
        lists = []
        for t in ids:
            if t is None:
                continue
            kk = seen[t] = seen.get(t, 0) + 1
            plist = postings.get((t, kk))
            if plist is not None:
                lists.append(plist.view())
        if not lists:
            return []
        ov = np.bincount(np.concatenate(lists) if len(lists) > 1 else lists[0])
        bound = ov * 2.0 / (self._lens.buf[: len(ov)] + la)  # 0 where nothing is shared
        query = self._query_seq(ids)

        score_parts: list[np.ndarray] = []
        index_parts: list[np.ndarray] = []
        top = np.empty(0)  # the k best exact scores so far

        def verify(idx: np.ndarray) -> None:
            nonlocal top
            seqs = self._seqs
            lcs = cdist([query], [seqs[i] for i in idx], scorer=LCSseq.similarity, dtype=np.int32)[0]
            p = lcs / self._lens.buf[idx]
            r = lcs / la
            f = 2 * p * r / (p + r)  # rouge-score's operations, in its order; lcs >= 1 as overlap > 0
            score_parts.append(f)
            index_parts.append(idx)
            top = np.concatenate([top, f])
            if len(top) > k:
                top = np.partition(top, len(top) - k)[len(top) - k :]

        def floor() -> float:
            """Bounds below this cannot reach the k-th best exact score (ties included)."""
            return top.min() - _MARGIN if len(top) >= k else -np.inf

        # The best-bounded few first, to learn a k-th best score that prunes the rest.
        first_batch = max(_FIRST_BATCH, 2 * k)
        if len(bound) > first_batch:
            first = np.argpartition(bound, len(bound) - first_batch)[len(bound) - first_batch :]
            first = first[ov[first] > 0]
        else:
            first = np.flatnonzero(ov)
        verify(first)
        todo = bound >= floor() if len(top) >= k else ov > 0
        todo[first] = False
        rest = np.flatnonzero(todo)
        rest_bound = bound[rest]
        if len(rest):
            order = np.argsort(-rest_bound, kind="stable")
            rest, rest_bound = rest[order], rest_bound[order]
            start, step = 0, _BATCH
            while start < len(rest) and rest_bound[start] >= floor():
                verify(rest[start : start + step])
                start, step = start + step, min(step * 2, 8192)  # few calls when bounds are weak
        scores, found = np.concatenate(score_parts), np.concatenate(index_parts)
        if len(scores) > k:
            sel = scores >= top.min()
            scores, found = scores[sel], found[sel]
        ranked = np.lexsort((found, -scores))[:k]  # best first, ties: earlier pooled first
        return [(float(scores[i]), int(found[i])) for i in ranked]

    def _average(self, ids: list) -> tuple[float, int]:
        """Mean ROUGE-L F against the reservoir sample (the whole pool while it is small enough)."""
        n = len(self._sample)
        la = len(ids)
        if not n or not la:
            return 0.0, n
        lcs = cdist([self._query_seq(ids)], self._sample_seqs, scorer=LCSseq.similarity, dtype=np.int32)[0]
        lb = np.asarray(self._sample_lens, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            p = lcs / lb
            r = lcs / la
            f = np.where(lcs > 0, 2 * p * r / (p + r), 0.0)
        return float(np.mean(f)), n
