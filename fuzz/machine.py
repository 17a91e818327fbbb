"""Hypothesis rule machines that drive ``tlbfuzz.protocol.World`` through its enabled actions.

``setup`` draws the configuration and a *focus* for the run (swarm testing, by hand): for each
CPU a small set of action kinds it may start (kernel paths, hardware events, NMIs), the user
addresses the run touches, and how eagerly pending IPIs are delivered. One rule, ``step``, then
draws a CPU lane and an action among that lane's enabled, in-focus actions; the next step of
kernel code a CPU runs is always in focus. Everything shrinks: the focus towards fewer kinds,
the steps towards the first lane's first action (finishing what was started).

Why this design (one-off comparisons during development, not repeated by a script; the kept
design's figures come from ``bench/bench_race.py``): one flat
``sampled_from(enabled_actions())`` spreads each step over ~30 actions, mostly hardware noise,
and one rule per kind (Hypothesis's own swarm) spreads it over ~17 rules; both found few of the
review's races. A race needs a handful of ordered steps on two CPUs, and a per-CPU focus makes
each of them one of two or three choices. IPI delivery has its own weight because the review's
windows are exactly those where the IPI arrives late.

The rule draws a plain ``(lane, action)`` pair of integers and ``pick`` resolves it against
the current state. Drawing the action itself through ``st.runner().flatmap(...)`` made
Hypothesis build and validate a new strategy at every step; the plain pair, with the focus
strategy cached per configuration, ran about 1.5 times as many steps per second (a one-off
comparison; ``bench/bench_machine.py`` measures the kept design). Hypothesis's printed program then
reads ``state.step(choice=(1, 4))``; nobody reads it: the runner prints the schedule as lanes.
``machine_for(variant, props)`` makes one named subclass per variant and property set, so that
the printed program (``state = TlbMachine_rfc_async_posted()``) and the database keys differ.
"""

from __future__ import annotations

import functools
import itertools
from typing import TYPE_CHECKING, Any, ClassVar, Final

import attrs
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from tlbfuzz.protocol import PROPERTIES, Action, Budget, Config, World, budget_kinds, parse
from tlbfuzz.protocol.windows import reached, windows_of
from tlbfuzz.protocol.world import Kernel

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from tlbfuzz.protocol import Variant, Violation


def kind_of(w: World, a: Action) -> str:
    """What ``a`` is to the focus: ``progress`` (the next step of the kernel code a CPU runs),
    ``interrupt`` (taking a pending IPI), the focus kind of the path it starts (its record's
    ``focus_kind``), or the op of a hardware event or NMI."""
    start = w.kernel.start_of.get(a)
    if start is not None and not w.cpus[a.cpu].path and w.cpus[a.cpu].irq is None:
        return start.path.focus_kind
    if a.op == "flush_smp_call_function_queue":
        return "interrupt"
    if a.cpu >= 0 and not a.args:
        return "progress"
    return a.op


class PropertyViolated(AssertionError):
    """A property broke: carries everything needed to print, save and replay the schedule."""

    def __init__(
        self, variant: Variant, config: Config, violation: Violation, schedule: list[Action]
    ) -> None:
        super().__init__(f"{violation} (after {len(schedule)} steps)")
        self.variant = variant
        self.config = config
        self.violation = violation
        self.schedule = list(schedule)


def configs(
    variant: Variant,
    cpus: tuple[int, ...] = (2, 3),
    shape: Mapping[str, Any] | None = None,
    steer: tuple[str, ...] = (),
) -> st.SearchStrategy[Config]:
    """Model sizes: CPU count and per-CPU budgets of the variant's kernel paths (1 to each
    kind's ``fuzz_max``), drawn so they shrink too; ``shape`` fixes other Config fields
    (``memory_model="tso"``); ``steer`` names kinds of ``fuzz_max`` 0 to give one each
    (``tlbfuzz.fuzz.changes.steered_kinds``)."""
    kinds = budget_kinds(variant.paths())
    # A kind with fuzz_max 0 is left out (Budget.only gives it 0), not drawn as st.just(0):
    # even that moves the derandomized stream the ci profile's tests depend on (measured).
    counts = st.fixed_dictionaries(
        {k.name: st.integers(1, max(k.fuzz_max, 1)) for k in kinds if k.fuzz_max or k.name in steer}
    )
    budgets = counts.map(lambda d: Budget.only(**d))
    fixed = {k: st.just(v) for k, v in (shape or {}).items()}
    return st.builds(Config, cpus=st.sampled_from(cpus), budget=budgets, **fixed)


CHOICE: Final = st.tuples(st.integers(0, 11), st.integers(0, 59))
"""(lane, action): 12 is a multiple of every lane count, 60 of most lane lengths."""


@attrs.frozen
class Focus:
    """What one run concentrates on (drawn by ``setup``, shrinks like everything else)."""

    kinds: tuple[frozenset[str], ...]  # per CPU: the kinds of events and paths it may start
    vas: frozenset[int]
    ipi_weight: int  # out of 4: how often a CPU with a pending IPI takes it when picked


ACCESS_KINDS: Final = ("user_read", "user_write", "tlb_fill")
"""How a CPU comes to cache a translation: every CPU in a run has one or two of them."""
EVENT_KINDS: Final = (*ACCESS_KINDS, "nmi", "tlb_evict", "pwc_evict")


def path_kinds(variant: Variant, config: Config | None = None) -> tuple[str, ...]:
    """The focus kinds of the variant's paths under study, in the order of its paths: those
    the fuzzer draws (``fuzz_max`` > 0), and those ``config`` gives some CPU a budget of
    (``tlbfuzz fuzz --budget gup_fast=1``)."""
    asked = set()
    if config is not None:
        for k in budget_kinds(variant.paths()):
            if not k.fuzz_max and any(config.budget_of(c, k) for c in range(config.cpus)):
                asked.add(k.name)
    return tuple(
        dict.fromkeys(
            p.focus_kind
            for p in variant.paths().values()
            if not p.background and (p.budget.fuzz_max or p.budget.name in asked)
        )
    )


def background_kinds(variant: Variant) -> tuple[str, ...]:
    """Traffic from elsewhere (another subsystem's cross-call of a callback that reads user
    memory, say): like an NMI it can come from anywhere, so each is a coin, not a path."""
    return tuple(dict.fromkeys(p.focus_kind for p in variant.paths().values() if p.background))


def path_sets(kinds: tuple[str, ...]) -> tuple[tuple[frozenset[str], ...], ...]:
    """The sets of no, one and two kernel paths, by size: a size is drawn first, then a set of
    it, so that a third of the CPUs start no path at all (the CPU that keeps a stale entry
    usually needs none) and the rest stay small."""
    return (
        (frozenset(),),
        tuple(frozenset({p}) for p in kinds),
        tuple(frozenset(c) for c in itertools.combinations(kinds, 2)),
    )


ACCESS_SETS: Final = (
    *(frozenset({a}) for a in ACCESS_KINDS),
    *(frozenset(c) for c in itertools.combinations(ACCESS_KINDS, 2)),
)
EVICTIONS: Final = frozenset({"tlb_evict", "pwc_evict"})
RARE: Final = st.sampled_from((False, False, False, True))


def _cpu_focus(
    paths: frozenset[str],
    access: frozenset[str],
    nmi: bool,
    background: frozenset[str],
    evict: bool,
) -> frozenset[str]:
    coins = {"nmi": nmi} | dict.fromkeys(EVICTIONS, evict)
    return paths | access | background | {k for k, on in coins.items() if on}


def _coins(kinds: tuple[str, ...]) -> st.SearchStrategy[frozenset[str]]:
    return st.tuples(*[st.booleans()] * len(kinds)).map(
        lambda on: frozenset(k for k, b in zip(kinds, on, strict=True) if b)
    )


def _with_path(f: Focus, paths: frozenset[str], on: bool, cpu: int, kind: str) -> Focus:
    """``f`` with ``kind`` as the only one of ``paths`` that ``cpu`` starts (if ``on``): it
    keeps its accesses and coins, and stays as sparse as a drawn CPU."""
    if not on:
        return f
    kinds = tuple(k - paths | {kind} if i == cpu else k for i, k in enumerate(f.kinds))
    return attrs.evolve(f, kinds=kinds)


@functools.lru_cache(maxsize=1024)  # bounded: a user's variant is instrumented anew per run
def focus(
    variant: Variant, config: Config, toward: frozenset[str] = frozenset()
) -> st.SearchStrategy[Focus]:
    """Per CPU: up to two kernel paths it may start, one way to fill its TLB (two in a third
    of the draws), whether NMIs hit it, whether it sends another subsystem's cross-call, and
    (in a quarter of the draws) whether its caches evict; and the addresses of the run (one
    address in four fifths of the draws with the default two pages).

    Sparse on purpose. Every kind in focus adds actions to a CPU's lane, and a race needs a
    handful of steps in one order: with one focus held fixed for 60 examples, a minimal focus
    found the posted lost write in most seeds, a random focus that merely allowed it in 3 of
    30 (a one-off diagnosis). Every CPU can fill its TLB, because every review race needs a
    CPU that caches a translation; NMIs and cross-calls are coins, so that an NMI does not
    crowd out the access it needs (the switch-window NMI needs context_switch, nmi and an
    access on one CPU). Four variants of this draw were compared at 30,000 model steps on
    concerns 2-5 over the same 10 seeds (one-off; ``bench/bench_race.py`` measures the kept
    one): this one found 20 of 40, the denser draws 16-17.

    ``toward``: focus kinds of the paths drawn only for a patch under review, because they
    reach its changed decisions (``tlbfuzz.fuzz.changes.toward_kinds``); in half the draws
    one CPU runs one of them instead of the paths it drew. A decision the search never
    reaches cannot break anything, and the plain draw puts a given path on some CPU in about
    a fifth of the plans (``tests/test_changes.py: _share_with`` counts it;
    ``bench/bench_race.py --rows mm`` compares the searches)."""
    paths = path_kinds(variant, config)
    per_cpu = st.builds(
        _cpu_focus,
        st.sampled_from(path_sets(paths)).flatmap(st.sampled_from),
        st.sampled_from((ACCESS_SETS[:3], ACCESS_SETS[:3], ACCESS_SETS[3:])).flatmap(
            st.sampled_from
        ),
        st.booleans(),
        _coins(background_kinds(variant)),
        RARE,
    )
    vas = Kernel.of(variant, config).vas
    plain = st.builds(
        Focus,
        kinds=st.tuples(*[per_cpu] * config.cpus),
        vas=st.sampled_from([*[frozenset({va}) for va in vas] * 2, frozenset(vas)]),
        ipi_weight=st.sampled_from([4, 1, 2]),
    )
    steered = [k for k in paths if k in toward]
    if not steered:  # the plain draw, unchanged: the ci, dev and nightly streams depend on it
        return plain
    # A patch under review (``toward``: paths drawn only because they reach its changes):
    # in half the draws one CPU runs one of them instead of its own draw of paths.
    return st.builds(
        _with_path,
        plain,
        st.just(frozenset(paths)),
        st.booleans(),
        st.integers(0, config.cpus - 1),
        st.sampled_from(steered),
    )


class TlbMachine(RuleBasedStateMachine):
    """Drive one variant; check ``properties`` after every step."""

    variant: ClassVar[Variant]
    properties: ClassVar[tuple[str, ...]]
    toward: ClassVar[frozenset[str]] = frozenset()
    """Focus kinds to steer to (``focus``): the paths drawn for a patch alone."""
    # Statistics, for the CLI's "held after N examples, M steps".
    examples: ClassVar[int] = 0
    steps: ClassVar[int] = 0
    windows: ClassVar[dict[str, int]]
    """Per reachability window (``tlbfuzz.protocol.windows``): the steps that ended in it."""
    # Called with (examples, steps) as each example starts: the CLI's progress line.
    on_example: ClassVar[Callable[[int, int], None] | None] = None

    def __init__(self) -> None:
        super().__init__()
        self.world: World | None = None
        self.focus: Focus | None = None
        self.asked: tuple[str, ...] = ()  # the windows this example's budgets can reach
        self.schedule: list[Action] = []
        cls = type(self)
        cls.examples += 1
        if cls.on_example is not None:
            cls.on_example(cls.examples, cls.steps)

    def in_focus(self, a: Action) -> bool:
        assert self.focus is not None and self.world is not None
        k = kind_of(self.world, a)
        if k in {"progress", "interrupt"}:
            return True
        if a.cpu < 0:
            return False  # frame reuse never makes a violation: versions change at free time
        va = dict(a.args).get("va")
        return k in self.focus.kinds[a.cpu] and (va is None or va in self.focus.vas)

    def lanes(self) -> list[list[Action]]:
        """Per CPU with something to do: its in-focus enabled actions, interrupt first."""
        assert self.world is not None and self.focus is not None
        out = []
        for lane in self.world.enabled_by_lane():
            acts = [a for cat in lane for a in cat if self.in_focus(a)]
            if acts and acts[0].op == "flush_smp_call_function_queue" and len(acts) > 1:
                # weight IPI delivery: ipi_weight in 4 of the draws land on it
                acts = [acts[0]] * self.focus.ipi_weight * (len(acts) - 1) + acts[1:] * 4
            if acts:
                out.append(acts)
        return out

    def pick(self, choice: tuple[int, int]) -> Action:
        lanes = self.lanes()
        if not lanes:  # nothing in focus is enabled: anything enabled
            assert self.world is not None
            acts = self.world.enabled_actions()
            return acts[(choice[0] + choice[1]) % len(acts)]
        lane = lanes[choice[0] % len(lanes)]
        return lane[choice[1] % len(lane)]

    def terminal(self) -> bool:
        return self.world is not None and not self.world.enabled_actions()

    @precondition(lambda self: self.world is not None and not self.terminal())
    @rule(choice=CHOICE)
    def step(self, choice: tuple[int, int]) -> None:
        assert self.world is not None
        action = self.pick(choice)
        self.world.apply(action)
        self.schedule.append(action)
        cls = type(self)
        cls.steps += 1
        for name in reached(self.world, self.asked):
            cls.windows[name] += 1

    @precondition(lambda self: self.terminal())
    @rule()
    def nothing_left(self) -> None:
        """A terminal state (every budget spent, nothing mapped): Hypothesis needs a rule."""

    @invariant()
    def properties_hold(self) -> None:
        if self.world is None:
            return
        found = self.world.violations(self.properties)
        if found:
            raise PropertyViolated(self.variant, self.world.config, found[0], self.schedule)


def _setup(self: TlbMachine, config: Config, data: st.DataObject) -> None:
    self.world = World.initial(self.variant, config)
    self.asked = windows_of(self.world)
    for name in self.asked:  # a window scoped to kinds this example's budgets allow
        type(self).windows.setdefault(name, 0)
    self.focus = data.draw(focus(self.variant, config, self.toward), label="focus")


def machine_for(
    variant: Variant,
    props: tuple[str, ...],
    config_strategy: st.SearchStrategy[Config] | None = None,
    toward: frozenset[str] = frozenset(),
) -> type[TlbMachine]:
    """A TlbMachine subclass named after the variant (and the property, if only one);
    ``toward`` steers its focus (``focus``)."""
    unknown = [p for p in props if p not in PROPERTIES]
    if unknown:
        raise KeyError(f"unknown property {unknown[0]!r}")
    name = "TlbMachine_" + variant.name.replace("-", "_").replace(".", "_")
    if len(props) == 1:
        name += "__" + props[0]
    body: dict[str, object] = {
        "variant": variant,
        "properties": props,
        "toward": toward,
        "examples": 0,
        "steps": 0,
        "windows": {},  # each example's setup adds the windows it is asked (``windows_of``)
        "__module__": __name__,
        "setup": initialize(
            config=configs(variant) if config_strategy is None else config_strategy,
            data=st.data(),
        )(_setup),
    }
    return type(name, (TlbMachine,), body)


__all__ = [
    "ACCESS_KINDS",
    "EVENT_KINDS",
    "PropertyViolated",
    "TlbMachine",
    "configs",
    "kind_of",
    "machine_for",
    "parse",
]
