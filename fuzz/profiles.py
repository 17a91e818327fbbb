"""Hypothesis profiles for the fuzzer: ``dev``, ``ci`` and ``nightly``.

They are registered under our own names *and* applied explicitly by the runner, because
Hypothesis loads a built-in ``ci`` profile of its own whenever a CI variable is set.

Hypothesis's shrinker is left out of ``dev`` and ``ci``: on this model it spent 30-120 s per
failure and still left 9-13 steps where 7 is the minimum (``bench/bench_fuzz.py``), while
``protocol.search.minimise`` (ddmin over named actions, then breadth-first search over the
actions that remain) reaches the minimum in well under a second. ``nightly`` keeps it.
"""

from __future__ import annotations

from typing import Final

from hypothesis import HealthCheck, Phase, settings
from hypothesis.database import DirectoryBasedExampleDatabase

NO_SHRINK: Final = (Phase.explicit, Phase.reuse, Phase.generate)

COMMON: Final = settings(
    deadline=None,
    suppress_health_check=list(HealthCheck),
    print_blob=False,
)

PROFILES: Final[dict[str, settings]] = {
    "dev": settings(
        COMMON, max_examples=1000, stateful_step_count=20, database=None, phases=NO_SHRINK
    ),
    "ci": settings(
        COMMON,
        max_examples=3000,
        stateful_step_count=20,
        database=None,
        derandomize=True,
        phases=NO_SHRINK,
    ),
    "nightly": settings(
        COMMON,
        max_examples=20_000,
        stateful_step_count=30,
        database=DirectoryBasedExampleDatabase(".hypothesis/nightly"),
    ),
}

for _name, _s in PROFILES.items():
    settings.register_profile(f"tlbfuzz-{_name}", _s)
