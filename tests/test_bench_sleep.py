"""bench/bench_sleep.py: its oracle (exact sleep sets) must reach the plain search's states at
their plain depths, or the bound it prints measures a search that misses states; and it must
actually sleep, or the bound says nothing."""

from __future__ import annotations

import pytest

from bench.bench_sleep import Oracle, plain_depths, timed
from tlbfuzz.protocol import VARIANTS, Budget, Config, World


@pytest.mark.parametrize("variant", ["linux-5.2", "rfc-async"])
def test_sleep_sets_reach_every_state_at_its_least_depth(variant: str) -> None:
    config = Config(cpus=2, budget=Budget.only(madvise=1), reuse=False)
    start = World.initial(VARIANTS[variant], config)
    oracle = Oracle(start, 4)
    assert oracle.depths == plain_depths(start, 4, oracle.keys)
    states, plain, _ = timed(start, 4, oracle.keys, None)
    slept_states, slept, _ = timed(start, 4, oracle.keys, oracle.explored)
    assert slept_states == states == len(oracle.depths)
    assert slept < plain  # some transitions slept
