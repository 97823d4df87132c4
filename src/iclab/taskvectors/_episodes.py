"""Seeded few-shot episodes: demonstrations, a query, and dummy queries for extracting θ(S).

Unlike the paper's code, dev and test queries come from disjoint halves of the task's pairs, and
dummy queries differ from the query and from every demonstration input. Episodes are plain data
so a run can save them and every number can be traced back to its prompts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from iclab.runtime import IclabError

from ._prompts import PreparedTask


@dataclass(frozen=True)
class Episode:
    demos: tuple[tuple[str, str], ...]  # (x, y) as written in the prompt
    query: str  # as written
    answer: str  # the gold output, as written
    dummies: tuple[str, ...]  # inputs used in place of the query when extracting θ(S)
    item: int  # index of the query in the prepared task's pairs

    def to_json(self) -> dict:
        return asdict(self)


def split_queries(n_pairs: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint dev and test query pools: a random half each (dev gets the smaller half)."""
    perm = rng.permutation(n_pairs)
    return np.sort(perm[: n_pairs // 2]), np.sort(perm[n_pairs // 2 :])


def sample_episodes(
    prepared: PreparedTask, pool: np.ndarray, n: int, k: int, n_dummy: int, rng: np.random.Generator
) -> list[Episode]:
    """n episodes whose queries come from `pool` (without replacement while the pool lasts);
    demonstrations are drawn from all other pairs, dummies from the pairs left after that."""
    pairs = prepared.pairs
    if len(pairs) < k + 1 + n_dummy:
        raise IclabError(f"task {prepared.task.name!r} has {len(pairs)} usable pairs, needs k + 1 + n_dummy = "
                         f"{k + 1 + n_dummy}; add pairs to the task or lower --k / --n_dummy")
    reps = -(-n // len(pool))
    queries = np.concatenate([rng.permutation(pool) for _ in range(reps)])[:n]
    episodes = []
    for q in queries:
        others = np.delete(np.arange(len(pairs)), q)
        chosen = rng.choice(others, size=k + n_dummy, replace=False)
        demos, dummies = chosen[:k], chosen[k:]
        episodes.append(
            Episode(
                demos=tuple(pairs[i] for i in demos),
                query=pairs[q][0],
                answer=pairs[q][1],
                dummies=tuple(pairs[i][0] for i in dummies),
                item=int(q),
            )
        )
    return episodes
