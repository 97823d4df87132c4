"""Reproducible random streams and temporary thread settings for experiments."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


def make_gen(seed: int, stream: int, i: int = 0, j: int = 0) -> torch.Generator:
    """A torch.Generator for (stream, i, j) derived from the master seed: independent, reproducible.

    `stream` names what is drawn (e.g. 0 train data, 1 test data, 2 inits), i and j index the
    sweep point and the repeat (each < 10 000, stream < 64), so every (seed, stream, i, j) gets
    its own seed and adding points or repeats never shifts the others' draws.
    """
    return torch.Generator().manual_seed(((seed * 64 + stream) * 10_000 + i) * 10_000 + j)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with n intra-op torch threads, then restore the previous setting. The many tiny ops of
    small-model loops run fastest on one thread: on a loaded 2-core machine a 2-thread pool stalls
    every op on the busy core."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
