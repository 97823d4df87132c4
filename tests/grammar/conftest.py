"""Fixtures the grammar tests share."""

import pytest

from iclab.grammar._world import World, WorldConfig


@pytest.fixture(scope="session")
def world() -> World:
    """The quick presets' world (16 objects, 4 maps, no binary operation)."""
    return World(WorldConfig())


@pytest.fixture(scope="session")
def rich_world() -> World:
    """Every task type: the quick world plus a binary operation and 8 three-function compositions."""
    return World(WorldConfig(n_binary=1, n_triples=8))
