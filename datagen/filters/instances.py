"""Self-Instruct's instance filters (DESIGN §5), applied to one task's generated (input, output) pairs.

Returns the instances kept and a verdict for each one dropped, so every drop is written down.
"""
from __future__ import annotations

from datagen.filters.verdict import Verdict, drop

Instance = tuple[str, str]  # (input, output)


def invalid_instance(inp: str, out: str) -> Verdict | None:
    if inp == out:
        return drop("input_equals_output")
    if out == "":
        return drop("empty_output")
    if inp.strip().endswith(":") or out.strip().endswith(":"):
        return drop("ends_with_colon")
    return None


def filter_instances(instances: list[Instance], max_instances: int = 5
                     ) -> tuple[list[Instance], list[tuple[Instance, Verdict]]]:
    kept: list[Instance] = []
    dropped: list[tuple[Instance, Verdict]] = []
    for inst in instances:
        bad = invalid_instance(*inst)
        if bad is None:
            kept.append(inst)
        else:
            dropped.append((inst, bad))
    # One non-empty input with two different outputs means the task is ill-posed: drop it whole.
    outputs_by_input: dict[str, str] = {}
    for inp, out in kept:
        if inp and outputs_by_input.setdefault(inp, out) != out:
            dropped.extend((i, drop("conflicting_outputs", input=inp)) for i in kept)
            return [], dropped
    unique: list[Instance] = []
    for inst in kept:
        if inst in unique:
            dropped.append((inst, drop("duplicate_instance")))
        else:
            unique.append(inst)
    for inst in unique[max_instances:]:
        dropped.append((inst, drop("too_many_instances", max=max_instances)))
    return unique[:max_instances], dropped
