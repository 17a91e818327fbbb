"""Hypothesis profiles for the fuzzer: ``dev``, ``ci`` and ``nightly``.

They are registered under our own names (``tlbfuzz-dev``, ``tlbfuzz-ci``, ``tlbfuzz-nightly``;
``tests/conftest.py`` imports this module, so ``pytest --hypothesis-profile=tlbfuzz-ci``
works) *and* applied explicitly by the runner, because Hypothesis loads a built-in ``ci``
profile of its own whenever a CI variable is set. Every setting that profile changes is given
here explicitly, since a setting left out is inherited from whichever profile is loaded.

Hypothesis's shrinker is left out of ``dev`` and ``ci``: in one-off runs during development
(no script in bench/ repeats them) it spent tens of seconds per failure and still left
schedules several steps longer than the minimum, while ``tlbfuzz.protocol.search.minimise``
(ddmin over named actions, breadth-first search over the actions that remain, fewest CPUs)
reaches the minima that ``tests/test_fuzz.py`` asserts. ``nightly`` keeps it.

What ``ci``'s derandomized stream depends on: the Hypothesis version (pinned by the test
extra), the engines' strategies, and the integer literals Hypothesis mines from every *local*
module loaded in the process (not from installed packages) and mixes into about 5% of its
draws. There is no setting for the last (Hypothesis 6.155), and patching Hypothesis's
internals is not an option, so: one installed tlbfuzz gives the same findings run after run
(a user variant file is local code, so its literals join in),
but a checkout gives another stream than ``pip install .``, and a test fuzzing in the test
process would depend on which modules ran before it. The tests that assert what ``ci`` finds
therefore run the command from an installed copy, in its own process (``tests/clirun.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final, Literal

from hypothesis import HealthCheck, Phase, Verbosity, settings
from hypothesis.database import DirectoryBasedExampleDatabase

NO_SHRINK: Final = (Phase.explicit, Phase.reuse, Phase.generate)
NIGHTLY_DB: Final = Path(".hypothesis/nightly")
"""The nightly profile's example database (an output location: checked before a run)."""

COMMON: Final = settings(
    deadline=None,
    suppress_health_check=list(HealthCheck),
    print_blob=False,
    verbosity=Verbosity.normal,
    report_multiple_bugs=True,
)

PROFILES: Final[dict[str, settings]] = {
    "dev": settings(
        COMMON,
        max_examples=700,
        stateful_step_count=30,
        database=None,
        derandomize=False,
        phases=NO_SHRINK,
    ),
    "ci": settings(
        COMMON,
        max_examples=5000,
        stateful_step_count=30,
        database=None,
        derandomize=True,
        phases=NO_SHRINK,
    ),
    "nightly": settings(
        COMMON,
        max_examples=20_000,
        stateful_step_count=50,
        database=DirectoryBasedExampleDatabase(str(NIGHTLY_DB)),
        derandomize=False,
        phases=tuple(Phase),
    ),
}
"""Examples of 30 steps rather than 20: at a fixed budget of model steps they found 138 of
240 seed-concern pairs against 128, the gain being on the long races (the README's race,
``bench/bench_race.py --strategies hyp-ci@20,hyp-ci``). ``nightly`` walks 50 steps; at the
same step budget that was no better than 30, so nightly's edge is its tenfold budget and the
shrinker."""

Engine = Literal["machine", "swarm"]
ENGINES: Final[dict[str, Engine]] = {"dev": "machine", "ci": "swarm", "nightly": "machine"}
"""Which search runs under each profile: ``machine``, the rule machine (``fuzz/machine.py``:
Hypothesis draws every step), or ``swarm`` (``fuzz/swarm.py``: Hypothesis draws a focus and a
scheduler per example, the model walks it in a tight loop). ``ci`` is the swarm: at the race's
budget of model steps it found more of the review's races than the machine, sooner
(``bench/bench_race.py``; the README's race between the two engines gives the figures).
``nightly`` keeps the machine, with Hypothesis's shrinker, so the two searches cover for
each other. A profile's ``stateful_step_count`` is a walk's length in both."""

for _name, _s in PROFILES.items():
    settings.register_profile(f"tlbfuzz-{_name}", _s)
