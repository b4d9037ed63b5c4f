"""The Alpaca variant of Self-Instruct: prompt shape, response parsing, filters, and whole rounds against
scripted teacher objects (including answers that arrive out of order)."""
from __future__ import annotations

import asyncio
import random
import re

import pytest

from datagen.filters.instruction import ALPACA_BLACKLIST
from datagen.methods.alpaca import (AlpacaParams, AlpacaState, AlpacaTemplates, encode_prompt,
                                    parse_alpaca_response, seed_example)
from datagen.store.seeds import SeedTask
from datagen.teacher.client import BudgetExhausted, Completion

SEEDS = [SeedTask(id=f"s{i}", instruction=f"Seed task number {i} about topic {chr(97 + i)} with words.",
                  instances=[{"input": "" if i % 2 else f"input {i}", "output": f"output {i}"}])
         for i in range(8)]


def _item(n: int, instruction: str, inp: str = "<noinput>", out: str = "An answer.") -> str:
    return f"{n}. Instruction: {instruction}\n{n}. Input:\n{inp}\n{n}. Output:\n{out}\n"


def _answer(instructions: list[str], first: int = 4) -> str:
    """A continuation of the prompt: its first item's `4. Instruction:` is already in the prompt."""
    blocks = [_item(first + k, text) for k, text in enumerate(instructions)]
    body = "###\n".join(blocks) + "###\n"
    prefix = f"{first}. Instruction:"
    assert body.startswith(prefix)
    return body[len(prefix):]


def _words(rng: random.Random, n: int = 6) -> str:
    return " ".join("".join(rng.choice("bcdfghjklmnpqrstvwz") + rng.choice("aeiou") for _ in range(3))
                    for _ in range(n))


def _distinct(n: int, salt: int = 0) -> list[str]:
    rng = random.Random(salt)
    return [f"Explain {_words(rng)} clearly." for _ in range(n)]


def _completion(text: str, finish: str = "stop", key: str = "k") -> Completion:
    return Completion(text=text, finish_reason=finish, prompt_tokens=10, completion_tokens=5, cached=False,
                      key=key, model="scripted")


# --- parsing ---------------------------------------------------------------------------------------

def test_twenty_item_response_parses_into_twenty_items():
    instructions = _distinct(20)
    items, dropped = parse_alpaca_response(_answer(instructions), "stop")
    assert dropped == []
    assert [i["instruction"] for i in items] == instructions
    assert all(i["input"] == "" and i["output"] == "An answer." for i in items)


def test_length_cut_drops_only_the_last_item():
    text = _answer(_distinct(3)) + "7. Instruction: Summarise the following text in one"
    items, dropped = parse_alpaca_response(text, "length")
    assert len(items) == 3
    assert dropped == [("length_cut", "\n7. Instruction: Summarise the following text in one")]
    items, dropped = parse_alpaca_response(text, "stop")  # not cut: the fragment is malformed instead
    assert len(items) == 3 and [r for r, _ in dropped] == ["malformed"]


def test_noinput_becomes_empty_and_real_input_is_kept():
    text = (" Sort these numbers.\n4. Input:\n3, 1, 2\n4. Output:\n1, 2, 3\n###\n"
            + _item(5, "Name a prime number above ten.", "<NoInput>", "Eleven."))
    items, _ = parse_alpaca_response(text, "stop")
    assert items == [{"instruction": "Sort these numbers.", "input": "3, 1, 2", "output": "1, 2, 3"},
                     {"instruction": "Name a prime number above ten.", "input": "", "output": "Eleven."}]


def test_malformed_items_are_reported():
    text = " Give a fruit.\n4. Output:\nApple\n###\n" + _item(5, "Name a prime number above ten.")
    items, dropped = parse_alpaca_response(text, "stop")
    assert [i["instruction"] for i in items] == ["Name a prime number above ten."]
    assert [r for r, _ in dropped] == ["malformed"] and "Give a fruit." in dropped[0][1]


# --- prompt ----------------------------------------------------------------------------------------

def test_prompt_shows_three_seeds_and_ends_with_the_next_instruction():
    state = AlpacaState(SEEDS, AlpacaParams(), AlpacaTemplates.load())
    (prompt, parents), = state._prompts(1)
    assert prompt.endswith("###\n4. Instruction:")
    assert len(parents) == 3 and len(set(parents)) == 3
    assert prompt.count("###\n") == 4
    for i, sid in enumerate(parents, 1):
        seed = next(s for s in SEEDS if s.id == sid)
        ex = seed_example(seed)
        block = (f"###\n{i}. Instruction: {seed.instruction}\n{i}. Input:\n{ex['input'] or '<noinput>'}\n"
                 f"{i}. Output:\n{ex['output']}\n")
        assert block in prompt
    assert prompt.startswith(AlpacaTemplates.load().prompt.text.rstrip())
    assert "<noinput>" in encode_prompt(AlpacaTemplates.load().prompt,
                                        [{"instruction": "Say hi:", "input": "", "output": "Hi"}])


def test_sampling_is_alpacas():
    p = AlpacaParams().sampling()
    assert p == {"temperature": 1.0, "top_p": 1.0, "max_tokens": 3072, "stop": ["\n20", "20.", "20."]}
    assert AlpacaParams(max_tokens=100).sampling()["max_tokens"] == 100


@pytest.mark.parametrize("kwargs", [{"seeds_per_prompt": 0}, {"temperature": 3}, {"top_p": True},
                                    {"instructions_per_call": 4}, {"max_tokens": 0}, {"rouge_tokenizer": "x"}])
def test_bad_params_name_the_field(kwargs):
    field = next(iter(kwargs))
    with pytest.raises(ValueError, match=rf"^{field}: "):
        AlpacaParams(**kwargs)


# --- filters through a round -----------------------------------------------------------------------

class ScriptedTeacher:
    """Answers the i-th request with script[i] (the last one repeated); records what it was asked."""

    def __init__(self, script, delay=None, budget_after=None):
        self.script = list(script)
        self.calls: list[tuple[str, dict, str]] = []
        self.delay = delay
        self.budget_after = budget_after

    async def complete(self, prompt, params, kind="other", **_):
        n = len(self.calls)
        self.calls.append((prompt, params, kind))
        if self.budget_after is not None and n >= self.budget_after:
            raise BudgetExhausted("budget: max_total_tokens")
        text, finish = self.script[min(n, len(self.script) - 1)]
        if self.delay:
            await asyncio.sleep(self.delay(n))
        return _completion(text, finish, key=f"k{n}")


def _round(state, teacher):
    return asyncio.run(state.bootstrap_round(teacher))


@pytest.mark.parametrize("word", ALPACA_BLACKLIST)
def test_each_blacklist_word_rejects(word):
    assert len(ALPACA_BLACKLIST) == 18
    state = AlpacaState(SEEDS, AlpacaParams(num_instructions=5, prompts_per_round=1), AlpacaTemplates.load())
    ok = ["Describe the mapping between keys and values here.", "Explain why the report was filed late today."]
    bad = f"Please describe this {word.upper() if word == 'video' else word} in a few words."
    _round(state, ScriptedTeacher([(_answer([bad] + ok), "stop")]))
    assert [t.instruction for t in state.done] == ok
    row, = state.rejected
    assert row["reason"] == "blacklisted_word" and row["detail"]["word"].lower() == word


def test_word_count_and_start_rules():
    state = AlpacaState(SEEDS, AlpacaParams(num_instructions=9, prompts_per_round=1), AlpacaTemplates.load())
    cands = ["Name three birds.", "Name three birds please.", "Write a program that sorts a list of names.",
             "\"Quote\" this sentence for me please.", "Écris une phrase en français pour moi.",
             " ".join(["word"] * 151), "Reply " + " ".join(f"w{k}" for k in range(149))]
    _round(state, ScriptedTeacher([(_answer(cands), "stop")]))
    assert [r["reason"] for r in state.rejected] == ["too_few_words", "write_a_program", "starts_with_punctuation",
                                                     "starts_with_non_ascii", "too_many_words"]
    assert [t.instruction for t in state.done] == [cands[1], cands[6]]


def test_rouge_rule_drops_a_near_copy_of_a_seed_and_of_an_earlier_item():
    state = AlpacaState(SEEDS, AlpacaParams(num_instructions=9, prompts_per_round=1), AlpacaTemplates.load())
    fresh = "Suggest a name for a bakery that sells only bread."
    cands = ["Seed task number 3 about topic d with many words.", fresh,
             "Suggest a name for a bakery that sells only cakes."]
    _round(state, ScriptedTeacher([(_answer(cands), "stop")]))
    assert [t.instruction for t in state.done] == [fresh]
    rows = state.rejected
    assert [r["reason"] for r in rows] == ["rouge_similar", "rouge_similar"]
    assert rows[0]["detail"]["most_similar"] == SEEDS[3].instruction
    assert rows[1]["detail"]["most_similar"] == fresh
    assert rows[0]["detail"]["rouge_max"] > 0.7


def test_round_rejects_cut_and_malformed_items_with_reasons():
    state = AlpacaState(SEEDS, AlpacaParams(num_instructions=9, prompts_per_round=1), AlpacaTemplates.load())
    text = _answer(_distinct(2)) + "6. Instruction: nothing else\n###\n7. Instruction: Summarise the"
    _round(state, ScriptedTeacher([(text, "length")]))
    assert len(state.done) == 2
    assert [(r["stage"], r["reason"]) for r in state.rejected] == [("bootstrap", "malformed"),
                                                                  ("bootstrap", "length_cut")]
    assert state.counts["rejected.bootstrap.length_cut"] == 1


# --- whole runs ------------------------------------------------------------------------------------

def _seeded_teacher(delay=None):
    """Answers depend only on the request (its per-request seed), like a server honouring `seed`."""

    class T:
        def __init__(self):
            self.calls = []

        async def complete(self, prompt, params, kind="other", **_):
            self.calls.append((prompt, params, kind))
            rng = random.Random(params["seed"])
            instructions = [f"Explain {_words(rng)} clearly." for _ in range(4)]
            instructions.append("Suggest a name for a bakery that sells only bread.")  # same in every answer
            if delay:
                await asyncio.sleep(delay(params["seed"]))
            return _completion(_answer(instructions), key=f"req-{params['seed']}")
    return T()


def _run(state, teacher):
    async def go():
        while not state.finished():
            await state.bootstrap_round(teacher)
        state.finish()
    asyncio.run(go())
    return state.records("scripted")


def test_run_reaches_the_target_with_lineage():
    params = AlpacaParams(num_instructions=12, prompts_per_round=2, instructions_per_call=5)
    state = AlpacaState(SEEDS, params, AlpacaTemplates.load())
    teacher = _seeded_teacher()
    records = _run(state, teacher)
    assert len(records) == 12 and state.stop_reason == "target_reached"
    # 12 needed at 5 per call: 2 prompts (capped); then 12-10=2 left at 5 per call: 1 prompt.
    assert state.round == 2 and len(teacher.calls) == 3
    assert all(kind == "alpaca" for _, _, kind in teacher.calls)
    seeds = [p["seed"] for _, p, _ in teacher.calls]
    assert len(set(seeds)) == 3 and all(p["temperature"] == 1.0 for _, p, _ in teacher.calls)
    r = records[0]
    assert r.method == "self_instruct" and r.meta == {"variant": "alpaca"} and r.round == 1
    assert len(r.parents) == 3 and set(r.parents) <= {s.id for s in SEEDS}
    assert r.teacher == {"model": "scripted", "request": f"req-{seeds[0]}"}
    assert "rouge_max" in r.scores
    # the bakery instruction is accepted once, later copies fail ROUGE-L; the overflow is written down
    assert sum(rec.instruction.startswith("Suggest a name") for rec in records) == 1
    reasons = [row["reason"] for row in state.rejected]
    assert reasons.count("rouge_similar") == 1 and reasons.count("beyond_target") == 2
    counts = state.summary_counts(len(records))
    assert counts["instructions"] == 12 and counts["alpaca.prompts"] == 3 and counts["rejected"] == 3


def test_out_of_order_answers_give_identical_records():
    def make():
        return AlpacaState(SEEDS, AlpacaParams(num_instructions=13, prompts_per_round=4, instructions_per_call=5),
                           AlpacaTemplates.load())
    in_order = make()
    rec_a = _run(in_order, _seeded_teacher())
    first = None

    def inverse(seed):  # later requests answer first
        nonlocal first
        first = seed if first is None else first
        return 0.05 / (1 + seed - first)
    reversed_state = make()
    rec_b = _run(reversed_state, _seeded_teacher(delay=inverse))
    assert [r.to_dict() for r in rec_a] == [r.to_dict() for r in rec_b]
    assert in_order.rejected == reversed_state.rejected
    assert len(rec_a) == 13


def test_budget_refusal_stops_the_run_and_keeps_what_was_made():
    state = AlpacaState(SEEDS, AlpacaParams(num_instructions=50, prompts_per_round=3), AlpacaTemplates.load())
    teacher = ScriptedTeacher([(_answer(_distinct(5, salt=k)), "stop") for k in range(3)], budget_after=2)
    _run(state, teacher)
    assert state.finished() and state.stop_reason == "budget" and state.budget_stop == "budget: max_total_tokens"
    assert state.stop_explanation() == "budget: max_total_tokens"
    assert len(state.done) == 10 and state.round == 1


def test_stalls_when_nothing_is_new():
    state = AlpacaState(SEEDS, AlpacaParams(num_instructions=5, prompts_per_round=1, max_stalled_rounds=2),
                        AlpacaTemplates.load())
    _run(state, ScriptedTeacher([(_answer([SEEDS[0].instruction]), "stop")]))
    assert state.stop_reason == "stalled" and state.round == 2 and "stalled: 2 rounds" in state.stop_explanation()


def test_prompts_per_round_follows_what_remains():
    state = AlpacaState(SEEDS, AlpacaParams(num_instructions=45), AlpacaTemplates.load())
    assert state.prompt_count() == 3            # ceil(45 / 20)
    state = AlpacaState(SEEDS, AlpacaParams(num_instructions=1000), AlpacaTemplates.load())
    assert state.prompt_count() == 5            # capped at request_batch_size
    assert re.search(r"20 new tasks", AlpacaTemplates.load().prompt.text)
    assert set(AlpacaTemplates.load().hashes()) == {"alpaca/prompt"}
