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


def to_alpaca(r: Record) -> dict[str, Any]:
    row: dict[str, Any] = {"instruction": r.instruction, "input": r.input, "output": r.output}
    if r.system:
        row["system"] = r.system
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
    if r.system:
        row["system"] = r.system
    return row


def to_messages(r: Record) -> dict[str, Any]:
    msgs = _turns(r)
    if r.system and not (msgs and msgs[0]["role"] == "system"):
        msgs = [{"role": "system", "content": r.system}] + msgs
    return {"messages": msgs}


EXPORTERS = {"alpaca.jsonl": to_alpaca, "sharegpt.jsonl": to_sharegpt, "messages.jsonl": to_messages}


def dataset_info(name: str) -> dict[str, Any]:
    """LLaMA-Factory's dataset_info.json entries for the three files of a version."""
    return {
        name: {"file_name": "alpaca.jsonl",
               "columns": {"prompt": "instruction", "query": "input", "response": "output", "system": "system"}},
        f"{name}_sharegpt": {"file_name": "sharegpt.jsonl", "formatting": "sharegpt",
                             "columns": {"messages": "conversations", "system": "system"}},
        f"{name}_messages": {"file_name": "messages.jsonl", "formatting": "sharegpt",
                             "columns": {"messages": "messages"},
                             "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                                      "assistant_tag": "assistant", "system_tag": "system"}},
    }
