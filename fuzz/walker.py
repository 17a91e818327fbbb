"""The random walkers of ``protocol.search.walk``, seeded: a seed gives the same walks."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from protocol.search import walk
from protocol.search.walk import WalkResult

if TYPE_CHECKING:
    from collections.abc import Sequence

    from protocol import Config, Variant


def random_walk(
    variant: Variant,
    config: Config,
    props: Sequence[str],
    seed: int,
    walks: int = 10_000,
    depth: int = 20,
) -> WalkResult:
    """Each step uniform among the enabled actions (``protocol.search.walk.random_walk``)."""
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
    """PCT-style priority scheduling (``protocol.search.walk.pct_walk``)."""
    return walk.pct_walk(variant, config, props, random.Random(seed), walks, depth, max_changes)


__all__ = ["WalkResult", "pct_walk", "random_walk"]
