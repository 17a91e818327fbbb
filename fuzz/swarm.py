"""Swarm walks: a whole example's choices drawn in one go, the model run in a tight loop.

The rule machine (``fuzz/machine.py``) lets Hypothesis draw every step, which costs far more
than the model's step (``bench/bench_machine.py`` measures both engines). Here Hypothesis
draws only what shapes a walk, a *plan*:

- the configuration (CPUs and per-CPU budgets, as the machine draws them);
- the machine's *focus*, unchanged (``machine.focus``): per CPU the kinds of paths and events
  it may start, the addresses, how eagerly IPIs are taken;
- a scheduler: ``uniform`` (each step a random lane, then a random in-focus action of it, as
  the machine's ``step`` rule picks) or ``pct`` (PCT priorities over the lanes, Burckhardt et
  al., ASPLOS 2010: one lane runs until a change point drops it below every other; the shape
  of the review's races, where one CPU stays put while another runs a whole flush);
- a seed for the choices inside the plan.

A plan's walk is a pure function of the plan (``walk``), so Hypothesis's database, its
``derandomize`` and its ``seed`` work as for the machine. No built-in profile shrinks a plan
(``ci`` has no shrink phase); the schedule a finding prints is reduced by
``tlbfuzz.protocol.search.minimise``, as every finding is. An example walks its plan once
(``WALKS_PER_PLAN``): at the race's budget, four walks per plan spent less time per find
but found fewer races (README, the race between the two engines).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Final, Literal

import attrs
from hypothesis import strategies as st

from tlbfuzz.fuzz.machine import Focus, configs, focus, kind_of
from tlbfuzz.protocol import World
from tlbfuzz.protocol.windows import reached, windows_of

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tlbfuzz.protocol import Action, Config, Variant, Violation

Scheduler = Literal["uniform", "pct"]
SCHEDULERS: Final[tuple[Scheduler, ...]] = ("uniform", "pct")
WALKS_PER_PLAN: Final = 1
PCT_MAX_CHANGES: Final = 4


@attrs.frozen
class Plan:
    """Everything one example's walks depend on."""

    config: Config
    focus: Focus
    scheduler: Scheduler
    seed: int


@attrs.define
class Walked:
    """What the walks of one plan did: the violating schedule and what it broke (None if
    none), model steps, and per reachability window the steps that ended in it."""

    schedule: list[Action] | None
    violation: Violation | None
    steps: int
    windows: dict[str, int]


class Lanes:
    """The machine's in-focus lanes (``TlbMachine.lanes``), with each action's focus kind and
    address computed once per action and idleness of its CPU (``machine.kind_of``), not once
    per step."""

    def __init__(self) -> None:
        self._meta: dict[tuple[Action, bool], tuple[str, int | None]] = {}

    def kind(self, w: World, a: Action) -> tuple[str, int | None]:
        # A path's start and its first step can be one Action; kind_of tells them apart by
        # whether the CPU is idle, so that goes into the key.
        c = w.cpus[a.cpu] if a.cpu >= 0 else None
        key = (a, c is not None and not c.path and c.irq is None)
        m = self._meta.get(key)
        if m is None:
            m = self._meta[key] = (kind_of(w, a), dict(a.args).get("va"))
        return m

    def of(self, w: World, f: Focus) -> list[tuple[int, list[Action]]]:
        """Per CPU lane with an in-focus enabled action: (lane index, its actions, an IPI
        first and weighted as the machine weights it)."""
        out = []
        for i, lane in enumerate(w.enabled_by_lane()):
            if i >= len(f.kinds):  # the page allocator: never in focus
                break
            kinds = f.kinds[i]
            acts = []
            for cat in lane:
                for a in cat:
                    k, va = self.kind(w, a)
                    if k in ("progress", "interrupt") or (
                        k in kinds and (va is None or va in f.vas)
                    ):
                        acts.append(a)
            if acts and acts[0].op == "flush_smp_call_function_queue" and len(acts) > 1:
                acts = [acts[0]] * f.ipi_weight * (len(acts) - 1) + acts[1:] * 4
            if acts:
                out.append((i, acts))
        return out


def walk(
    variant: Variant,
    plan: Plan,
    props: Sequence[str],
    depth: int,
    walks: int = WALKS_PER_PLAN,
    lanes: Lanes | None = None,
) -> Walked:
    """Up to ``walks`` walks of ``depth`` steps from the initial state of ``plan.config``;
    stops at the first state that breaks one of ``props``."""
    lanes = Lanes() if lanes is None else lanes
    rng = random.Random(plan.seed)
    start = World.initial(variant, plan.config)
    asked = windows_of(start)
    windows = dict.fromkeys(asked, 0)
    steps = 0
    f = plan.focus
    for _ in range(walks):
        w = start.copy()
        schedule: list[Action] = []
        n_lanes = len(f.kinds)
        prio = list(range(n_lanes))
        rng.shuffle(prio)
        changes = set(rng.sample(range(depth), rng.randint(0, min(PCT_MAX_CHANGES, depth))))
        low = -1
        for i in range(depth):
            ls = lanes.of(w, f)
            if not ls:  # nothing in focus is enabled: anything enabled
                acts = w.enabled_actions()
                if not acts:
                    break
                a = acts[rng.randrange(len(acts))]
            elif plan.scheduler == "uniform":
                acts = ls[rng.randrange(len(ls))][1]
                a = acts[rng.randrange(len(acts))]
            else:
                lane, acts = max(ls, key=lambda t: prio[t[0]])
                if i in changes:  # this lane runs now, then drops below every other
                    prio[lane] = low
                    low -= 1
                a = acts[rng.randrange(len(acts))]
            w.apply_enabled(a)  # taken from its enabled lists
            schedule.append(a)
            steps += 1
            for name in reached(w, asked):
                windows[name] += 1
            found = w.violations(props)
            if found:
                return Walked(schedule, found[0], steps, windows)
    return Walked(None, None, steps, windows)


def plans(
    variant: Variant,
    config_strategy: st.SearchStrategy[Config] | None = None,
    toward: frozenset[str] = frozenset(),
) -> st.SearchStrategy[Plan]:
    """Hypothesis's draw of a plan: the machine's configuration and focus (steered
    ``toward`` a patch's paths, ``machine.focus``), a scheduler, a seed."""
    cfgs = configs(variant) if config_strategy is None else config_strategy
    made: dict[Config, st.SearchStrategy[Plan]] = {}

    def rest(config: Config) -> st.SearchStrategy[Plan]:
        # One strategy per configuration, as ``focus`` is one, so that Hypothesis validates
        # it once and not at every example: the same draws (the ``ci`` stream does not
        # move), in less time (``bench/bench_machine.py``'s plans rows). Kept per call, not
        # process-wide: a user's variant is instrumented anew for every run.
        s = made.get(config)
        if s is None:
            s = made[config] = st.builds(
                Plan,
                st.just(config),
                focus(variant, config, toward),
                st.sampled_from(SCHEDULERS),
                st.integers(0, 2**32 - 1),
            )
        return s

    return cfgs.flatmap(rest)


__all__ = ["SCHEDULERS", "Lanes", "Plan", "Walked", "plans", "walk"]
