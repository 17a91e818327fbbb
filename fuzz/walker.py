"""The random walkers of ``tlbfuzz.protocol.search.walk``, seeded: a seed gives the same walks."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from tlbfuzz.protocol.search import walk
from tlbfuzz.protocol.search.walk import WalkResult

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tlbfuzz.protocol import Config, Variant


def random_walk(
    variant: Variant,
    config: Config,
    props: Sequence[str],
    seed: int,
    walks: int = 10_000,
    depth: int = 20,
) -> WalkResult:
    """Each step uniform among the enabled actions
    (``tlbfuzz.protocol.search.walk.random_walk``)."""
    return walk.random_walk(variant, config, props, random.Random(seed), walks, depth)


def pct_walk(
    variant: Variant,
    config: Config,
    props: Sequence[str],
    seed: int,
    walks: int = 10_000,
    depth: int = 20,
    max_changes: int = 4,
) -> WalkResult:
    """PCT-style priority scheduling (``tlbfuzz.protocol.search.walk.pct_walk``)."""
    return walk.pct_walk(variant, config, props, random.Random(seed), walks, depth, max_changes)


__all__ = ["WalkResult", "pct_walk", "random_walk"]
