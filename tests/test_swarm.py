"""The swarm engine (``fuzz/swarm.py``): it picks from the rule machine's in-focus lanes, a
plan's walk is a function of the plan, and a held run under it says what it reached."""

from __future__ import annotations

import random

import pytest
from hypothesis import settings as Settings
from hypothesis.database import InMemoryExampleDatabase

from tlbfuzz.fuzz.machine import Focus, machine_for
from tlbfuzz.fuzz.profiles import NO_SHRINK, PROFILES
from tlbfuzz.fuzz.runner import Held, fuzz_variant, run_swarm
from tlbfuzz.fuzz.swarm import Lanes, Plan, walk
from tlbfuzz.protocol import VARIANTS, Config, World
from tlbfuzz.protocol.search import first_violation

FOCUS = Focus(
    kinds=(
        frozenset({"madvise", "user_read", "nmi"}),
        frozenset({"context_switch", "tlb_fill", "tlb_evict", "pwc_evict"}),
    ),
    vas=frozenset({0x1000}),
    ipi_weight=2,
)


@pytest.mark.parametrize("variant", ["linux-5.2", "linux-current", "rfc-async-posted"])
def test_swarm_lanes_are_the_rule_machines_lanes(variant: str) -> None:
    """Along 40 random walks, the cached lanes equal ``TlbMachine.lanes()`` state by state."""
    v = VARIANTS[variant]
    machine = machine_for(v, ("no_deadlock",))()
    machine.focus = FOCUS
    lanes = Lanes()
    rng = random.Random(0)
    checked = 0
    for _ in range(40):
        w = World.initial(v, Config(cpus=2))
        machine.world = w
        for _ in range(25):
            ours = [acts for _, acts in lanes.of(w, FOCUS)]
            assert ours == machine.lanes()
            checked += 1
            acts = w.enabled_actions()
            if not acts:
                break
            w.apply(acts[rng.randrange(len(acts))])
    assert checked > 500


def test_a_plans_walk_is_a_function_of_the_plan() -> None:
    v = VARIANTS["rfc-async-posted"]
    for scheduler in ("uniform", "pct"):
        plan = Plan(Config(cpus=2), FOCUS, scheduler, 7)
        a = walk(v, plan, ["no_deadlock"], 30, walks=5)
        b = walk(v, plan, ["no_deadlock"], 30, walks=5, lanes=Lanes())
        assert a == b
        assert a.steps > 30


def test_the_swarm_finds_the_posted_use_after_free_and_its_schedule_replays() -> None:
    v = VARIANTS["rfc-async-posted"]
    s = Settings(PROFILES["ci"], max_examples=3000, phases=NO_SHRINK, database=None)
    err, examples, steps = run_swarm(v, ("no_use_after_free",), s, seed=0, cpus=2)
    assert err is not None
    assert 0 < examples <= 3000
    assert steps >= len(err.schedule)
    hit = first_violation(World.initial(v, err.config), err.schedule, ["no_use_after_free"])
    assert hit is not None and hit[0] == len(err.schedule)


@pytest.mark.slow
def test_a_held_ci_run_says_which_windows_it_reached() -> None:
    (o,) = fuzz_variant(
        VARIANTS["linux-5.2"], ["no_deadlock"], profile="ci", max_examples=400, seed=1
    )
    assert isinstance(o, Held)
    assert o.steps > 400
    assert o.windows["stale_entry_during_flush"] > 0
    assert o.windows["flush_ipi_pending_after_return"] == 0  # 5.2 waits: never reached


def test_a_run_on_other_properties_keeps_the_failing_example_another_run_saved() -> None:
    """Every swarm run has the same test source, which Hypothesis keys its database by; the
    run's variant and properties go into the key (``runner.KeyedDatabase``), or the second run
    would replay the first one's example, see it pass, and drop it."""
    db = InMemoryExampleDatabase()
    v = VARIANTS["rfc-async-posted"]
    s = Settings(PROFILES["ci"], max_examples=3000, phases=NO_SHRINK, database=db)
    err, _, _ = run_swarm(v, ("no_use_after_free",), s, cpus=2)  # derandomized, no seed:
    assert err is not None  # Hypothesis uses no database under an explicit seed
    saved = {k: set(vals) for k, vals in db.data.items() if vals}
    assert saved
    held, _, _ = run_swarm(v, ("no_deadlock",), Settings(s, max_examples=20), cpus=2)
    assert held is None
    assert all(vals <= db.data[k] for k, vals in saved.items())
