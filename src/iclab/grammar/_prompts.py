"""ICL prompts in the pretraining iteration format (docs/grammar.md: the default world).

    direct:  <eos> x1 -> y1 ; x2 -> y2 ; ... ; xq ->            predict yq
    CoT:     <eos> x1 -> z1 => y1 ; ... ; xq ->                 generate zq => yq, score yq
    oracle:  <eos> x1 -> z1 => y1 ; ... ; xq -> zq =>           predict yq with the true step given

Inputs within a prompt are distinct (drawn without replacement), as is usual for ICL tests.
"""

from __future__ import annotations

import numpy as np

from ._world import EOS, SEP_EX, SEP_IO, SEP_STEP, Task, World


def item_tokens(world: World, task: Task, x: int, cot: bool) -> list[str]:
    y = f"o{world.apply(task, x)}"
    if cot:
        return [f"o{x}", SEP_IO, f"o{world.mid(task, x)}", SEP_STEP, y]
    return [f"o{x}", SEP_IO, y]


def prompt_tokens(world: World, task: Task, xs: list[int], *, cot: bool = False, oracle: bool = False) -> list[str]:
    """Demonstrations on xs[:-1], then the query xs[-1] (with its true step if `oracle`)."""
    if cot and task.g < 0:
        raise ValueError(f"task {task.name} has no intermediate step; CoT prompts need a composition")
    tokens = [EOS]
    for x in xs[:-1]:
        tokens += item_tokens(world, task, x, cot) + [SEP_EX]
    tokens += [f"o{xs[-1]}", SEP_IO]
    if oracle:
        tokens += [f"o{world.mid(task, xs[-1])}", SEP_STEP]
    return tokens


def full_prompt(world: World, task: Task, xs: list[int], *, cot: bool = False) -> list[str]:
    """All len(xs) items answered: one teacher-forced pass scores the answer after every prefix."""
    tokens = [EOS]
    for i, x in enumerate(xs):
        tokens += item_tokens(world, task, x, cot) + ([SEP_EX] if i < len(xs) - 1 else [])
    return tokens


def draw_inputs(rng: np.random.Generator, n_objects: int, k: int) -> list[int]:
    """k inputs, distinct while k <= n_objects."""
    return [int(x) for x in rng.choice(n_objects, size=k, replace=k > n_objects)]
