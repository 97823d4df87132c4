"""One seeding scheme for every experiment.

Every random draw of a run comes from a stream named by a key under the run's master seed:
`make_gen(seed, "train", i, r)` (torch) and `make_rng(seed, "probe-split")` (numpy) hash
(seed, *key) through numpy's SeedSequence, so streams are independent, reproducible, and adding
a sweep point or a repeat never shifts the draws of the others. Keys are ints or strings.
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

Key = int | str


def seed_sequence(seed: int, *key: Key) -> np.random.SeedSequence:
    """The SeedSequence of stream `key` under master seed `seed` (strings enter as their CRC-32)."""
    parts = [int(seed)] + [zlib.crc32(k.encode()) if isinstance(k, str) else int(k) for k in key]
    if any(p < 0 for p in parts):
        raise ValueError(f"seeds and stream keys must be >= 0 (got {parts})")
    return np.random.SeedSequence(parts)


def make_rng(seed: int, *key: Key) -> np.random.Generator:
    """A numpy Generator for stream `key` of master seed `seed`."""
    return np.random.default_rng(seed_sequence(seed, *key))


def make_gen(seed: int, *key: Key) -> torch.Generator:
    """A torch.Generator for stream `key` of master seed `seed` (e.g. `make_gen(seed, 0, i, r)`: stream 0,
    sweep point i, repeat r)."""
    import torch  # here, so that importing the runtime does not load torch

    return torch.Generator().manual_seed(int(seed_sequence(seed, *key).generate_state(1, np.uint64)[0] >> 1))
