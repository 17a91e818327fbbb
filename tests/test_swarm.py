"""The swarm engine (``fuzz/swarm.py``): it picks from the rule machine's in-focus lanes, a
plan's walk is a function of the plan, and a held run under it says what it reached."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import attrs
import pytest
from hypothesis import settings as Settings
from hypothesis.database import InMemoryExampleDatabase

from tlbfuzz.fuzz.machine import Focus, machine_for
from tlbfuzz.fuzz.profiles import NO_SHRINK, PROFILES
from tlbfuzz.fuzz.runner import Held, fuzz_variant, run_machine, run_swarm
from tlbfuzz.fuzz.swarm import Lanes, Plan, walk
from tlbfuzz.protocol import VARIANTS, Config, World
from tlbfuzz.protocol.search import first_violation

if TYPE_CHECKING:
    from collections.abc import Callable

WIDE = Focus(
    kinds=(
        frozenset({"munmap", "mprotect", "user_write", "tlb_fill", "nmi"}),
        frozenset({"writeback", "truncate", "user_read", "user_write", "tlb_evict"}),
    ),
    vas=frozenset({0x1000, 0x2000}),
    ipi_weight=4,
)
NARROW = Focus(kinds=(frozenset({"tlb_fill"}), frozenset()), vas=frozenset({0x2000}), ipi_weight=1)
FOCUS = Focus(
    kinds=(
        frozenset({"madvise", "user_read", "nmi"}),
        frozenset({"context_switch", "tlb_fill", "tlb_evict", "pwc_evict"}),
    ),
    vas=frozenset({0x1000}),
    ipi_weight=2,
)


@pytest.mark.parametrize(
    ("variant", "cpus"), [("linux-5.2", 2), ("linux-current", 3), ("rfc-async-posted", 2)]
)
def test_swarm_lanes_are_the_rule_machines_lanes(variant: str, cpus: int) -> None:
    """Along random walks under three focuses, with one cache for all of them (as a run
    shares one), the lanes equal ``TlbMachine.lanes()`` state by state, and each lane's index
    is the CPU of its actions (PCT's priorities are per index)."""
    v = VARIANTS[variant]
    machine = machine_for(v, ("no_deadlock",))()
    lanes = Lanes()
    rng = random.Random(0)
    checked = 0
    for base in (FOCUS, WIDE, NARROW):
        f = attrs.evolve(base, kinds=(base.kinds * 2)[:cpus])
        machine.focus = f
        for _ in range(20):
            w = World.initial(v, Config(cpus=cpus))
            machine.world = w
            for _ in range(25):
                ours = lanes.of(w, f)
                assert [acts for _, acts in ours] == machine.lanes()
                assert all(a.cpu == i for i, acts in ours for a in acts)
                checked += 1
                acts = w.enabled_actions()
                if not acts:
                    break
                w.apply(acts[rng.randrange(len(acts))])
    assert checked > 1000


def test_a_plans_walk_is_a_function_of_the_plan() -> None:
    """The same plan walks the same way with a fresh cache and with one another plan warmed."""
    v = VARIANTS["rfc-async-posted"]
    warm = Lanes()
    walk(v, Plan(Config(cpus=2), WIDE, "uniform", 1), ["no_deadlock"], 30, walks=5, lanes=warm)
    for scheduler in ("uniform", "pct"):
        plan = Plan(Config(cpus=2), FOCUS, scheduler, 7)
        a = walk(v, plan, ["no_deadlock"], 30, walks=5)
        b = walk(v, plan, ["no_deadlock"], 30, walks=5, lanes=warm)
        assert a == b


def test_a_walk_shorter_than_the_change_points_runs() -> None:
    plan = Plan(Config(cpus=2), FOCUS, "pct", 3)
    for depth in range(4):
        r = walk(VARIANTS["linux-5.2"], plan, ["no_deadlock"], depth, walks=20)
        assert r.steps <= 20 * depth


def test_the_swarm_finds_the_posted_use_after_free_and_its_schedule_replays() -> None:
    v = VARIANTS["rfc-async-posted"]
    s = Settings(PROFILES["ci"], max_examples=3000, phases=NO_SHRINK, database=None)
    err, examples, _ = run_swarm(v, ("no_use_after_free",), s, seed=0, cpus=2)
    assert err is not None
    assert 0 < examples <= 3000
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


class RecordingDatabase(InMemoryExampleDatabase):
    """Remembers what was saved, to ask ``fetch`` for it later."""

    def __init__(self) -> None:
        super().__init__()
        self.saved: set[tuple[bytes, bytes]] = set()

    def save(self, key: bytes, value: bytes) -> None:
        super().save(key, value)
        self.saved.add((key, value))


@pytest.mark.parametrize("run", [run_machine, run_swarm], ids=["machine", "swarm"])
def test_a_run_on_fewer_properties_keeps_the_failing_example_a_run_on_more_saved(
    run: Callable[..., tuple[object, int, int]],
) -> None:
    """Hypothesis keys its database by the test: the same for every swarm run, and for
    the machine the same for every set of more than one property (``machine_for``). The
    engine, variant and properties go into the key (``runner.KeyedDatabase``); without
    that, the second run (what ``fuzz_variant`` does after a finding) would replay the first
    one's example, see it pass, and drop it."""
    db = RecordingDatabase()
    v = VARIANTS["rfc-async-posted"]
    s = Settings(PROFILES["ci"], max_examples=3000, phases=NO_SHRINK, database=db)
    rest = ("no_deadlock", "tlb_gen_soundness")
    err, _, _ = run(v, ("no_use_after_free", *rest), s, cpus=2)  # derandomized, no seed:
    assert err is not None  # Hypothesis uses no database under an explicit seed
    saved = set(db.saved)
    assert saved
    held, _, _ = run(v, rest, Settings(s, max_examples=20), cpus=2)
    assert held is None
    assert all(value in list(db.fetch(key)) for key, value in saved)


def test_after_a_finding_the_next_run_still_draws_its_models(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """fuzz_variant goes on with the properties not yet broken. The runs after a finding
    used to get the finding's minimised model as a fixed ``config`` (the variable was
    reused), so every later held claim covered that one model only."""
    from tlbfuzz.fuzz import runner

    given: list[Config | None] = []
    real = runner.run_swarm

    def recording(*args: object, **kwargs: object) -> object:
        given.append(args[6])  # type: ignore[arg-type]  # run_one's config, positional
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(runner, "run_swarm", recording)
    outcomes = fuzz_variant(
        VARIANTS["rfc-async-posted"],
        ["no_use_after_free", "no_deadlock"],
        profile="ci",
        max_examples=200,
    )
    assert [type(o).__name__ for o in outcomes] == ["Finding", "Held"]
    assert given == [None, None]  # both runs drew their models
