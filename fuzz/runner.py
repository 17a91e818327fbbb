"""Run a search engine for one variant (the rule machine or the swarm, as the profile says:
``profiles.ENGINES``) and collect findings, minimised."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import attrs
from hypothesis import given
from hypothesis import seed as hypothesis_seed
from hypothesis import settings as Settings
from hypothesis import strategies as st
from hypothesis.database import ExampleDatabase
from hypothesis.reporting import with_reporter
from hypothesis.stateful import run_state_machine_as_test

from tlbfuzz.fuzz.changes import (
    Otherwise,
    Reach,
    asking_kinds,
    changes_of,
    instrument,
    steered_kinds,
    summary,
    toward_kinds,
)
from tlbfuzz.fuzz.machine import PropertyViolated, configs, machine_for
from tlbfuzz.fuzz.narrow import (
    NARROW_STATES,
    BaseInModel,
    Narrowed,
    Question,
    base_in_model,
    ran_kinds,
)
from tlbfuzz.fuzz.narrow import search_shapes as narrow
from tlbfuzz.fuzz.profiles import ENGINES, PROFILES, Engine
from tlbfuzz.fuzz.swarm import WALKS_PER_PLAN, Lanes, Plan, plans
from tlbfuzz.fuzz.swarm import walk as swarm_walk
from tlbfuzz.protocol import TSO_ONLY, VARIANTS, World, budget_kinds
from tlbfuzz.protocol.search import fewer_cpus, first_violation

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

    from tlbfuzz.protocol import Action, Config, Variant, Violation


@attrs.frozen
class Finding:
    """A property broken by a schedule, minimised, with how it was found."""

    variant: Variant
    config: Config
    prop: str
    violation: Violation
    schedule: list[Action]
    found_length: int  # as Hypothesis found it, before minimisation
    examples: int
    steps: int  # model steps the machine took up to and including the failing example
    seconds: float
    narrowed: str = ""
    """Found by the narrowed search (``tlbfuzz.fuzz.narrow``) after the fuzzer held: the
    question, as ``explore --budget`` words; empty for the fuzzer's own finding."""
    narrowed_base: BaseInModel | None = None
    """The narrowed search's finding: what the property does on the patch's base in the same
    model (``narrow.base_in_model``)."""

    def paragraphs(self) -> list[str]:
        """What the mail says of the finding beyond its schedule, from the search itself."""
        return [] if self.narrowed_base is None else self.narrowed_base.lines()


@attrs.frozen
class Held:
    """No schedule broke the property within the profile's budget."""

    variant: Variant
    prop: str
    examples: int
    steps: int
    seconds: float
    windows: dict[str, int] = attrs.field(factory=dict)
    """Per reachability window (``tlbfuzz.protocol.windows``): the steps that ended in it; 0 means
    the search never looked where the property could break there."""
    changes: dict[str, Any] | None = None
    """A user's variant: how often the search reached each decision it changes, and answered
    otherwise than its base (``tlbfuzz.fuzz.changes.summary``); None for a built-in one."""
    never_drawn: tuple[str, ...] = ()
    """Kinds of kernel path no example could start: drawn only when asked (``fuzz_max`` 0)
    and not steered to, or given no budget by a fixed ``--budget`` (``budget_fixed``). The
    held says nothing of races that need one."""
    budget_fixed: bool = False


Outcome = Finding | Held


def run_machine(
    variant: Variant,
    props: tuple[str, ...],
    settings: Settings,
    seed: int | None = None,
    cpus: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    config: Config | None = None,
    windows: dict[str, int] | None = None,
    shape: Mapping[str, Any] | None = None,
    steer: tuple[str, ...] = (),
    toward: frozenset[str] = frozenset(),
) -> tuple[PropertyViolated | None, int, int]:
    """One Hypothesis run; returns (the violation raised, examples, steps). ``on_progress``
    gets (examples, steps) as each example starts. ``config`` fixes the model's size and
    budgets (else they are drawn, with ``cpus`` CPUs if given). ``windows``, if given, gets
    the run's steps per reachability window added. ``shape``: Config fields every drawn
    config has (``--memory-model tso``); ``steer``: kinds drawn only for this variant
    (``configs``); ``toward``: focus kinds to steer the focus to (``machine.focus``)."""
    sizes = (cpus,) if cpus else (2, 3)
    strategy = (
        st.just(config)
        if config
        else configs(variant, sizes, shape, steer)
        if cpus or shape or steer
        else None  # the machine's own draw, unchanged: the dev and nightly streams depend on it
    )
    machine = machine_for(variant, props, strategy, toward)
    machine.on_example = on_progress
    if seed is not None:
        machine = hypothesis_seed(seed)(machine)

    keyed = Settings(settings, database=_keyed(settings.database, "machine", variant, props))

    def run() -> None:
        run_state_machine_as_test(machine, settings=keyed)  # type: ignore[no-untyped-call]

    err = _violation_of(run)
    _add(windows, machine.windows)
    return err, machine.examples, machine.steps


def _violation_of(run: Callable[[], None]) -> PropertyViolated | None:
    """Run one Hypothesis test quietly; the property violation it raised, if any. Several
    distinct failures (``report_multiple_bugs``) come as a group: take a property one, and
    re-raise a group without one (a crash of the model)."""
    try:
        with with_reporter(lambda _msg: None):
            run()
    except PropertyViolated as e:
        return e
    except BaseExceptionGroup as group:
        match, _ = group.split(PropertyViolated)
        if match is None:
            raise
        first = match.exceptions[0]
        assert isinstance(first, PropertyViolated)
        return first
    return None


def _keyed(
    db: ExampleDatabase | None, engine: str, variant: Variant, props: tuple[str, ...]
) -> ExampleDatabase | None:
    if db is None:
        return None
    return KeyedDatabase(db, f"tlbfuzz-{engine} {variant.name} {' '.join(props)} ".encode())


class KeyedDatabase(ExampleDatabase):
    """``db`` with ``prefix`` before every key. Hypothesis keys a test's examples by its
    source: every swarm run has the same source (``run_swarm``), and the rule machine's class
    is named after the variant and, only when there is one, the property (``machine_for``).
    So the engine, the variant and the properties go into the key: otherwise a run on one
    property set would replay, and drop as passing, the failing example a run on another set
    saved (``fuzz_variant`` goes on with the properties not yet broken)."""

    def __init__(self, db: ExampleDatabase, prefix: bytes) -> None:
        super().__init__()
        self.db = db
        self.prefix = prefix

    def save(self, key: bytes, value: bytes) -> None:
        self.db.save(self.prefix + key, value)

    def fetch(self, key: bytes) -> Iterable[bytes]:
        return self.db.fetch(self.prefix + key)

    def delete(self, key: bytes, value: bytes) -> None:
        self.db.delete(self.prefix + key, value)

    def move(self, src: bytes, dest: bytes, value: bytes) -> None:
        self.db.move(self.prefix + src, self.prefix + dest, value)


def run_swarm(
    variant: Variant,
    props: tuple[str, ...],
    settings: Settings,
    seed: int | None = None,
    cpus: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    config: Config | None = None,
    windows: dict[str, int] | None = None,
    shape: Mapping[str, Any] | None = None,
    steer: tuple[str, ...] = (),
    walks_per_plan: int = WALKS_PER_PLAN,
    toward: frozenset[str] = frozenset(),
) -> tuple[PropertyViolated | None, int, int]:
    """``run_machine``'s contract with the swarm engine (``fuzz/swarm.py``): Hypothesis
    draws one plan per example and the model walks it, ``stateful_step_count`` steps a walk,
    ``walks_per_plan`` walks an example; ``steer`` and ``toward`` as ``run_machine``'s."""
    sizes = (cpus,) if cpus else (2, 3)
    drawn = st.just(config) if config else configs(variant, sizes, shape, steer)
    strategy = plans(variant, drawn, toward)
    lanes = Lanes()
    depth = settings.stateful_step_count
    total = [0, 0]  # examples, steps
    seen: dict[str, int] = {}

    def one_plan(plan: Plan) -> None:
        total[0] += 1
        if on_progress is not None:
            on_progress(total[0], total[1])
        r = swarm_walk(variant, plan, props, depth, walks_per_plan, lanes)
        total[1] += r.steps
        _add(seen, r.windows)
        if r.schedule is not None:
            assert r.violation is not None
            raise PropertyViolated(variant, plan.config, r.violation, r.schedule)

    test = given(plan=strategy)(one_plan)
    test = Settings(settings, database=_keyed(settings.database, "swarm", variant, props))(test)
    if seed is not None:
        test = hypothesis_seed(seed)(test)
    err = _violation_of(test)
    _add(windows, seen)
    return err, total[0], total[1]


def _add(total: dict[str, int] | None, more: dict[str, int]) -> None:
    if total is not None:
        for k, n in more.items():
            total[k] = total.get(k, 0) + n


def _finding(
    variant: Variant,
    config: Config,
    schedule: list[Action],
    prop: str,
    cost: tuple[int, int, float],
) -> Finding:
    """``schedule`` on the fewest CPUs that still break ``prop``, replayed for its words;
    ``cost``: the examples and steps so far, and when the search began."""
    examples, steps, t0 = cost
    found, small = fewer_cpus(variant, config, schedule, [prop])
    hit = first_violation(World.initial(variant, found), small, [prop])
    assert hit is not None and hit[0] == len(small), "minimised schedule must replay"
    seconds = time.perf_counter() - t0
    return Finding(variant, found, prop, hit[1], small, len(schedule), examples, steps, seconds)


def fuzz_variant(
    variant: Variant,
    props: Sequence[str],
    profile: str = "dev",
    seed: int | None = None,
    max_examples: int | None = None,
    cpus: int | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
    seconds: float | None = None,
    settings: Settings | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    config: Config | None = None,
    shape: Mapping[str, Any] | None = None,
    engine: Engine | None = None,
    narrow_states: int | None = None,
) -> list[Outcome]:
    """Fuzz ``variant`` against ``props``: run the machine on every property not yet broken,
    until a run holds them all. Each finding is minimised and checked again by replay. With
    ``seconds``, keep going with fresh seeds (runs of ``max_examples``) until time is up.
    ``settings`` replaces the profile's (the benchmarks vary a profile's settings);
    ``on_progress`` gets the (examples, steps) so far for this variant as examples start;
    ``config`` fixes the model's size and budgets (``tlbfuzz fuzz --budget``); ``engine``
    replaces the profile's search (``profiles.ENGINES``).

    A patch (a variant with ``changes_of``) that the fuzzer holds, with no fixed ``config``,
    then gets the narrowed search (``tlbfuzz.fuzz.narrow``) on the properties still held, up
    to ``narrow_states`` unique states (default: the profile's ``NARROW_STATES``; 0: none):
    what it breaks is a finding, and the held says what it reached."""
    settings = PROFILES[profile] if settings is None else settings
    run_one = run_swarm if (engine or ENGINES[profile]) == "swarm" else run_machine
    changes = changes_of(variant)
    steer: tuple[str, ...] = ()
    toward: frozenset[str] = frozenset()
    counts: dict[str, list[int]] = {}
    searched = variant  # a user's variant: instrumented for the search, reported as itself
    reach: dict[str, Reach] | None = None  # the probe's: to steer, or to say where to look
    if changes is not None:
        if config is None:
            reach = asking_kinds(variant, changes)
            steer = steered_kinds(variant, reach, shape)
            toward = toward_kinds(variant, steer)
        searched, tally = instrument(variant, changes)
    kinds = budget_kinds(variant.paths())
    never_drawn = tuple(
        k.name
        for k in kinds
        if (
            not any(config.budget_of(c, k) for c in range(config.cpus))
            if config is not None
            else not k.fuzz_max and k.name not in steer
        )
    )
    if max_examples is not None:
        settings = Settings(settings, max_examples=max_examples)
    remaining = list(props)
    outcomes: list[Outcome] = []
    deadline = None if seconds is None else time.perf_counter() + seconds
    run = 0
    total_examples = total_steps = 0
    windows: dict[str, int] = {}
    t_start = time.perf_counter()
    while remaining:
        t0 = time.perf_counter()
        run_seed = seed if deadline is None else (seed or 0) + run
        run += 1

        def progress(ex: int, st: int, bx: int = total_examples, bs: int = total_steps) -> None:
            if on_progress is not None:
                on_progress(bx + ex, bs + st)

        if changes is not None:
            tally.take()  # what the last finding's minimiser asked is not the search's
        err, examples, steps = run_one(
            searched,
            tuple(remaining),
            settings,
            run_seed,
            cpus,
            progress,
            config,
            windows,
            shape,
            steer,
            toward=toward,
        )
        if changes is not None:
            for name, (reached, otherwise) in tally.take().items():
                n = counts.setdefault(name, [0, 0])
                n[0] += reached
                n[1] += otherwise
        total_examples += examples
        total_steps += steps
        if err is None and deadline is not None and time.perf_counter() < deadline:
            continue  # time left: another run with the next seed
        if err is None:
            examples, steps = total_examples, total_steps
            t0 = t_start
        memory_model = (
            config.memory_model
            if config is not None
            else str((shape or {}).get("memory_model", "sc"))
        )
        narrowed: Narrowed | None = None
        states = NARROW_STATES[profile] if narrow_states is None else narrow_states
        if err is None and changes is not None and reach is not None and states > 0:
            if memory_model != "sc" or any(n not in TSO_ONLY for n in changes.decisions):
                narrowed = narrow(
                    variant,
                    reach,
                    shape,
                    remaining,
                    states,
                    ran_kinds(variant, steer),
                    Otherwise(searched, tally),  # the search's own instrumented copy
                )
            found = narrowed.found if narrowed is not None else {}
            on_base: dict[Question, dict[str, BaseInModel]] = {}
            for prop, b in found.items():
                by_narrowing = _finding(
                    variant, b.question.config, b.schedule, prop, (examples, steps, t0)
                )
                if b.question not in on_base:  # one search of the base per model
                    base = VARIANTS[changes.bases[0]]
                    ps = [p for p, x in found.items() if x.question == b.question]
                    on_base[b.question] = base_in_model(base, b.question, ps, states)
                by_narrowing = attrs.evolve(
                    by_narrowing,
                    narrowed=str(b.question),
                    narrowed_base=on_base[b.question][prop],
                )
                outcomes.append(by_narrowing)
                if on_outcome:
                    on_outcome(by_narrowing)
                remaining.remove(prop)
        seconds_used = time.perf_counter() - t0
        if err is None:
            for p in remaining:
                o: Outcome = Held(
                    variant,
                    p,
                    examples,
                    steps,
                    seconds_used,
                    dict(windows),
                    None
                    if changes is None
                    else summary(
                        changes,
                        counts,
                        reach,
                        tuple(k.name for k in kinds),
                        memory_model,
                        None if narrowed is None else narrowed.to_dict(),
                    ),
                    never_drawn,
                    config is not None,
                )
                outcomes.append(o)
                if on_outcome:
                    on_outcome(o)
            break
        prop = err.violation.prop
        # the finding's own config: ``config`` stays what the next runs draw from
        o = _finding(variant, err.config, err.schedule, prop, (examples, steps, t0))
        outcomes.append(o)
        if on_outcome:
            on_outcome(o)
        remaining.remove(prop)
    return outcomes
