"""Every output format, derived from the one Record shape (DESIGN §2).

Alpaca (LLaMA-Factory `alpaca`, axolotl `alpaca`), ShareGPT (`conversations` of from/value turns) and
OpenAI messages (TRL SFTTrainer, OpenAI fine-tuning). Multi-turn records export their conversation;
single-turn records export instruction (+ input) and output.
"""
from __future__ import annotations

from typing import Any

from datagen.records import Record

SHAREGPT_ROLE = {"system": "system", "user": "human", "assistant": "gpt"}


def user_prompt(r: Record) -> str:
    return f"{r.instruction}\n\n{r.input}" if r.input else r.instruction


def _turns(r: Record) -> list[dict[str, str]]:
    if r.conversation:
        return [{"role": t["role"], "content": t["content"]} for t in r.conversation]
    return [{"role": "user", "content": user_prompt(r)}, {"role": "assistant", "content": r.output}]


def system_prompt(r: Record) -> str:
    """The record's system prompt: its `system` field, or a conversation's leading system turn."""
    if r.system:
        return r.system
    if r.conversation and r.conversation[0]["role"] == "system":
        return r.conversation[0]["content"]
    return ""


def to_alpaca(r: Record) -> dict[str, Any]:
    row: dict[str, Any] = {"instruction": r.instruction, "input": r.input, "output": r.output}
    if system_prompt(r):
        row["system"] = system_prompt(r)
    if r.conversation:
        # Alpaca's `history` holds earlier [user, assistant] pairs; the last pair is the main row.
        turns = [t for t in r.conversation if t["role"] != "system"]
        pairs = [(turns[i]["content"], turns[i + 1]["content"]) for i in range(0, len(turns) - 1, 2)]
        if pairs:
            row.update(instruction=pairs[-1][0], input="", output=pairs[-1][1],
                       history=[list(p) for p in pairs[:-1]])
    return row


def to_sharegpt(r: Record) -> dict[str, Any]:
    conv = [{"from": SHAREGPT_ROLE[t["role"]], "value": t["content"]} for t in _turns(r) if t["role"] != "system"]
    row: dict[str, Any] = {"id": r.id, "conversations": conv}
    if system_prompt(r):
        row["system"] = system_prompt(r)
    return row


def to_messages(r: Record) -> dict[str, Any]:
    msgs = _turns(r)
    if r.system and not (msgs and msgs[0]["role"] == "system"):
        msgs = [{"role": "system", "content": r.system}] + msgs
    return {"messages": msgs}


EXPORTERS = {"alpaca.jsonl": to_alpaca, "sharegpt.jsonl": to_sharegpt, "messages.jsonl": to_messages}


# LLaMA-Factory's tag names for each file shape (its DatasetAttr defaults, written out so the entry
# says what it means). The ShareGPT converter accepts user/observation turns at the 1st, 3rd, ...
# position, assistant/function turns at the 2nd, 4th, ..., a system turn only first, and an even count;
# any other row is logged and dropped, so `check_turns` refuses such a row before it is written.
SHAREGPT_TAGS = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
                 "observation_tag": "observation", "function_tag": "function_call", "system_tag": "system"}
MESSAGES_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
                 "observation_tag": "tool", "function_tag": "function", "system_tag": "system"}
_ODD, _EVEN = ("human", "observation"), ("gpt", "function_call")


def sharegpt_violation(conversation: list[dict[str, Any]]) -> str | None:
    """Which of LLaMA-Factory's ShareGPT rules a `conversations` list breaks (None if none)."""
    turns = conversation[1:] if conversation and conversation[0].get("from") == "system" else conversation
    if not turns:
        return "no human/gpt turns"
    for i, t in enumerate(turns):
        role = t.get("from")
        if role == "system":
            return f"turn {i + 1} is a system turn; a system turn may only come first"
        want = _ODD if i % 2 == 0 else _EVEN
        if role not in want:
            where = "odd" if i % 2 == 0 else "even"
            return f"turn {i + 1} is '{role}'; position {i + 1} must be {' or '.join(want)} ({'/'.join(want)} at {where} positions)"
    if len(turns) % 2:
        return f"{len(turns)} turns; an even number is needed (the last turn must be gpt's)"
    return None


def check_turns(r: Record) -> str | None:
    """Why LLaMA-Factory would skip this record (None when it would keep it), judged on all of its
    turns: a system turn after the first, which the ShareGPT row would drop, counts as a violation."""
    conv = []
    for t in _turns(r):
        if t["role"] not in SHAREGPT_ROLE:
            return f"role '{t['role']}' has no ShareGPT name (known: system, user, assistant)"
        conv.append({"from": SHAREGPT_ROLE[t["role"]], "value": t["content"]})
    return sharegpt_violation(conv)


def llamafactory_entry(shape: str, file_name: str, columns_present: set[str] = frozenset()) -> dict[str, Any]:
    """One dataset_info.json entry. Optional columns (`system`, `history`) are mapped only when the
    file has them: LLaMA-Factory reads every mapped column of every row, and a column no row has is a
    KeyError at load time."""
    if shape == "alpaca":
        columns = {"prompt": "instruction", "query": "input", "response": "output"}
        columns.update({c: c for c in ("system", "history") if c in columns_present})
        return {"file_name": file_name, "formatting": "alpaca", "columns": columns}
    if shape == "sharegpt":
        columns = {"messages": "conversations"}
        if "system" in columns_present:
            columns["system"] = "system"
        return {"file_name": file_name, "formatting": "sharegpt", "columns": columns, "tags": dict(SHAREGPT_TAGS)}
    if shape == "messages":
        return {"file_name": file_name, "formatting": "sharegpt", "columns": {"messages": "messages"},
                "tags": dict(MESSAGES_TAGS)}
    raise ValueError(f"unknown shape {shape!r}")


def optional_columns(row: dict[str, Any]) -> set[str]:
    return {c for c in ("system", "history") if row.get(c)}


def dataset_info(name: str, columns_present: dict[str, set[str]] | None = None) -> dict[str, Any]:
    """LLaMA-Factory's dataset_info.json entries for the three files of a version; `columns_present`
    maps a file name to the optional columns some of its rows carry."""
    present = columns_present or {}
    return {
        name: llamafactory_entry("alpaca", "alpaca.jsonl", present.get("alpaca.jsonl", set())),
        f"{name}_sharegpt": llamafactory_entry("sharegpt", "sharegpt.jsonl", present.get("sharegpt.jsonl", set())),
        f"{name}_messages": llamafactory_entry("messages", "messages.jsonl"),
    }
