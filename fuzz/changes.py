"""What a user's variant changes, where the search asks it, and whether it ever answered
otherwise.

A reviewer's patch is a variant that differs from a kernel at a few decision points: the
methods it overrides, and the methods that read a switch it sets otherwise
(``examples/my_variant.py``). A search that never reaches those points, or reaches them only
where the patch answers as the kernel does, says nothing about the patch, however long it
ran: its "held" would be a miss that looks like a pass. So:

- ``changes_of`` finds the *base* (the built-in variant with the fewest switches set
  otherwise) and the decisions the variant may answer otherwise, each with why: overridden,
  or reads a switch that differs. Which method reads which switch is read from the source of
  ``Variant`` (``self.<switch>`` and ``self.<method>()`` inside each method), not listed.
- ``instrument`` wraps those decisions: each ask also asks the base, and a ``Tally`` counts
  how often each was reached and answered otherwise. ``tlbfuzz fuzz`` and ``explore`` print
  it below their held cells (``summary_lines``), ``NEVER REACHED`` and ``NEVER ANSWERED
  OTHERWISE`` included; a change never reached makes the held no pass
  (``tlbfuzz.fuzz.results.judge_changes``).
- ``steered_kinds`` is the steering: the kinds of kernel path the fuzzer draws only when
  asked (``BudgetKind.fuzz_max == 0``: reclaim, migration, NUMA hinting...) that reach a
  changed decision, found by a short deterministic probe (``asking_kinds``), two of them
  together where one alone does not reach it.
  ``fuzz_variant`` draws them too, so a patch to migration's flush gets migrations without a
  ``--budget`` (``examples/copy_before_flush.py``).
- A barrier (``TSO_ONLY``) changes no step under sc: a held run under sc says nothing about
  it (``summary`` marks it ``sc_blind``), and exits 4 as for a change never
  reached.
- ``whose`` replays a finding on its variant's base (the nearest built-in one for a variant
  of the user's, ``BASE_OF`` for a built-in one), and back through the bases while they break
  too, so a reviewer learns whether the race is the patch's or one it inherited.

Built-in variants are not instrumented: their differences are the subject of the corpus and
the race table, and their streams are what the tests assert.
"""

from __future__ import annotations

import ast
import inspect
import itertools
import textwrap
from functools import cache
from typing import TYPE_CHECKING, Any, Final, cast

import attrs

from tlbfuzz.fuzz.mail import prose
from tlbfuzz.fuzz.narrow import how_far
from tlbfuzz.fuzz.user import with_methods
from tlbfuzz.protocol import (
    BASE_OF,
    TSO_ONLY,
    VARIANTS,
    Budget,
    BudgetKind,
    Config,
    Path,
    Step,
    Variant,
    World,
)
from tlbfuzz.protocol.paths import budget_kinds, shape_for
from tlbfuzz.protocol.search import Replayed, bfs, replayed
from tlbfuzz.protocol.world import HW_OPS, Kernel

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from tlbfuzz.protocol import Action
    from tlbfuzz.protocol.paths import Guard
    from tlbfuzz.protocol.state import Locals
    from tlbfuzz.protocol.world import Start

NOT_SWITCHES: Final = frozenset({"name", "summary", "kernel_ref"})
"""Fields of a variant that describe it and decide nothing."""
PROBE_WALKS: Final = 16
PROBE_STEPS: Final = 60
PROBE_STATES: Final = 1000
DIFFER_WALKS: Final = 8
"""Walks per narrowed model that look for the change answered otherwise (``Otherwise``)."""


@attrs.frozen
class Changes:
    """How a variant differs from its base: ``decisions`` maps each decision method it may
    answer otherwise to why (``overridden``, or ``reads <switch>``) and the built-in variant
    its answers are compared with. When several built-in variants are equally near, each
    is a base (``bases``), and a decision that reads a switch is compared with the base that
    sets that switch otherwise."""

    bases: tuple[str, ...]
    switches: tuple[str, ...]
    decisions: Mapping[str, tuple[str, str]]

    @property
    def base(self) -> str:
        """The bases as a summary records them (``summary``; ``bases_of`` reads them back)."""
        return _OR.join(self.bases)


_OR: Final = " or "


@cache
def _readers() -> tuple[tuple[str, ...], dict[str, frozenset[str]]]:
    """(decision methods in source order, per method the switches it reads, itself or
    through the methods it calls on ``self``)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(Variant)))
    cls = tree.body[0]
    assert isinstance(cls, ast.ClassDef)
    fields = {f.name for f in attrs.fields(Variant)}
    methods = [n for n in cls.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")]
    names = tuple(m.name for m in methods)
    direct: dict[str, set[str]] = {}
    calls: dict[str, set[str]] = {}
    for m in methods:
        attrs_read = {
            n.attr
            for n in ast.walk(m)
            if isinstance(n, ast.Attribute)
            and isinstance(n.value, ast.Name)
            and n.value.id == "self"
        }
        direct[m.name] = attrs_read & fields
        calls[m.name] = attrs_read & set(names)
    reads: dict[str, frozenset[str]] = {}
    for name in names:
        seen, todo, out = {name}, [name], set()
        while todo:
            at = todo.pop()
            out |= direct[at]
            for callee in calls[at] - seen:
                seen.add(callee)
                todo.append(callee)
        reads[name] = frozenset(out)
    return names, reads


def _switches(v: Variant) -> dict[str, object]:
    return {f.name: getattr(v, f.name) for f in attrs.fields(Variant) if f.name not in NOT_SWITCHES}


def is_builtin(v: Variant) -> bool:
    return any(v is b for b in VARIANTS.values())


def changes_of(v: Variant) -> Changes | None:
    """How a user's variant differs from the nearest built-in one; None for a built-in."""
    if is_builtin(v):
        return None
    mine = _switches(v)
    differing = {
        b.name: tuple(k for k, x in _switches(b).items() if mine[k] != x) for b in VARIANTS.values()
    }
    least = min(len(d) for d in differing.values())
    bases = tuple(name for name, d in differing.items() if len(d) == least)
    names, reads = _readers()
    decisions: dict[str, tuple[str, str]] = {}
    for name in names:
        if getattr(type(v), name) is not getattr(Variant, name):
            decisions[name] = ("overridden", bases[0])
            continue
        for b in bases:
            read = [s for s in differing[b] if s in reads[name]]
            if read:
                decisions[name] = ("reads " + ", ".join(read), b)
                break
    switches = tuple(dict.fromkeys(s for b in bases for s in differing[b]))
    return Changes(bases, switches, decisions)


@attrs.define
class Tally:
    """Per changed decision: [times reached, times answered otherwise than its base].

    A decision asked while the model runs is reached when asked. One asked while a path's
    steps are built (``path_steps()``, ``flush_steps()``, an ``Inline`` run such as
    migration's copy and flush) is reached each time the first step of a path it shaped
    runs, and answered otherwise each time a CPU gets to the first step that differs from
    the base's in that path (``_arriving``; where that is the first step and it waits, each
    ask of its guard counts both, ``_waiting``). A path of the variant's own
    (``extra_paths``, or one that replaces a built-in of its name) counts for ``paths()``
    the same way; a built-in path ``paths()`` leaves out counts where the base's CPU could
    start it (``_leaving_out``). ``gate``, if set, must be true for an ask to count (the
    probe's)."""

    counts: dict[str, list[int]]
    gate: Callable[[], bool] | None = None
    shaping: list[tuple[str, bool]] | None = None
    """While a path's steps are built: the decisions asked, and whether each differed."""

    def asked(self, name: str, differed: bool) -> None:
        if self.shaping is not None:
            self.shaping.append((name, differed))
            return
        if self.gate is not None and not self.gate():
            return
        n = self.counts[name]
        n[0] += 1
        n[1] += differed

    def hit(self, names: tuple[str, ...], otherwise: bool) -> None:
        if self.gate is not None and not self.gate():
            return
        for name in names:
            self.counts[name][otherwise] += 1

    def take(self) -> dict[str, list[int]]:
        """The counts so far, and zero them."""
        out = {k: list(n) for k, n in self.counts.items()}
        for n in self.counts.values():
            n[0] = n[1] = 0
        return out


def _wrap(name: str, mine: Callable[..., Any], base: Variant, tally: Tally) -> Any:
    theirs = getattr(base, name)

    def asked(self: Variant, *args: Any) -> Any:
        answer = mine(self, *args)
        try:
            differed = bool(theirs(*args) != answer)
        except Exception:  # the base cannot answer what the patch is asked: that differs
            differed = True
        tally.asked(name, differed)
        return answer

    asked.__name__ = name
    asked.__doc__ = getattr(mine, "__doc__", None)
    return asked


def _counting(
    run: Callable[[World, int], None],
    hooks: Mapping[tuple[str, int], tuple[tuple[str, ...], tuple[str, ...]]],
    tally: Tally,
) -> Any:
    """``run`` that first counts what ``hooks`` ((path, index) -> (reached, otherwise)
    names) says for the step the CPU runs: one function per step name, since the kernel
    checks that a name means one step function in every path, keyed by the index since a
    name may come twice in one path (a forced flush, then the gather's own)."""

    def counted(w: World, cpu: int) -> None:
        c = w.cpus[cpu]
        hook = hooks.get((c.path, c.pc))
        if hook is not None:
            reached, otherwise = hook
            tally.hit(reached, False)
            tally.hit(otherwise, True)
        run(w, cpu)

    return counted


def _arriving(skip: Guard | None, names: tuple[str, ...], tally: Tally) -> Guard:
    """The ``skip`` of a path's first step that differs from the base's: ``World._run_step``
    asks it exactly when the CPU gets to that step (the step before it has run, the steps
    between were skipped), so it counts ``names`` answered otherwise there, whether the CPU
    then runs the step, waits at its guard or skips it, and answers as the step's own skip
    (none: never skipped). Counted when the step ran, a patch whose differing step is
    skipped (no IPI sent) never answered otherwise."""

    def arrived(w: World, cpu: int) -> bool:
        tally.hit(names, True)
        return skip is not None and skip(w, cpu)

    return arrived


def _waiting(
    guard: Guard, reached: tuple[str, ...], otherwise: tuple[str, ...], tally: Tally
) -> Guard:
    """The ``guard`` of a path's first step, where the path differs from the base's from its
    very first step: the CPU may wait there where the base's runs, and that wait is the
    difference. Each ask while it waits counts ``reached`` and ``otherwise`` (asks, as a
    decision's are: the step's run counts them once more)."""

    def asked(w: World, cpu: int) -> bool:
        tally.hit(reached, False)
        tally.hit(otherwise, True)
        return guard(w, cpu)

    return asked


def instrument(v: Variant, changes: Changes) -> tuple[Variant, Tally]:
    """A copy of ``v`` whose changed decisions are counted into the returned tally. The
    copy's steps are built here once, against the base's, and its ``path_steps()`` returns
    them (with the counting step functions), so every path sees one function per step."""
    tally = Tally({name: [0, 0] for name in changes.decisions})
    cls = type(v)
    wrappers: dict[str, object] = {}
    for name, (_, against) in changes.decisions.items():
        if name not in ("path_steps", "paths"):
            wrappers[name] = _wrap(name, getattr(cls, name), VARIANTS[against], tally)
    steps_of: dict[str, tuple[Step, ...]] = {}

    def path_steps(self: Variant, path: Path) -> tuple[Step, ...]:
        steps = steps_of.get(path.name)
        return steps if steps is not None else cls.path_steps(self, path)

    wrappers["path_steps"] = path_steps
    base = VARIANTS[changes.bases[0]]
    dropped = left_out(v, base) if "paths" in changes.decisions else frozenset()
    if dropped:
        mine = cast("Callable[..., bool]", wrappers.get("may_start", cls.may_start))
        wrappers["may_start"] = _leaving_out(mine, base, dropped, tally)
    new = with_methods(v, wrappers)
    built = {p.name: _shape(cls, new, base, p, changes, tally) for p in v.paths().values()}
    hooks: dict[str, dict[tuple[str, int], tuple[tuple[str, ...], tuple[str, ...]]]] = {}
    for path, (steps, reached, otherwise, at) in built.items():
        if reached:
            hooks.setdefault(steps[0].name, {})[path, 0] = (reached, ())
        if otherwise and at == 0:
            r, _ = hooks.setdefault(steps[0].name, {}).get((path, 0), ((), ()))
            hooks[steps[0].name][path, 0] = (r, otherwise)
    runs: dict[str, Any] = {}
    for path, (steps, reached, otherwise, at) in built.items():
        out = []
        for i, step in enumerate(steps):
            st = step
            if st.name in hooks:
                st = attrs.evolve(
                    st, run=runs.setdefault(st.name, _counting(st.run, hooks[st.name], tally))
                )
            if otherwise and i == at and at > 0:  # this step's own: not shared by name
                st = attrs.evolve(st, skip=_arriving(st.skip, otherwise, tally))
            if otherwise and i == at == 0 and st.guard is not None:
                st = attrs.evolve(st, guard=_waiting(st.guard, reached, otherwise, tally))
            out.append(st)
        steps_of[path] = tuple(out)
    return new, tally


def left_out(v: Variant, base: Variant) -> frozenset[str]:
    """The base's paths that ``v``'s ``paths()`` leaves out, of a budget kind ``v`` keeps
    another path of (one of a kind ``v`` has no path of is in no model of ``v``: its budget
    cannot be given). One that ``moves`` pages only where a kept path of its kind moves
    too: only then has ``v``'s world the spare address its starts name (``Kernel.vas``),
    so one without is not counted."""
    mine = v.paths()
    kinds = {p.budget.name for p in mine.values()}
    moving = {p.budget.name for p in mine.values() if p.moves}
    return frozenset(
        name
        for name, p in base.paths().items()
        if name not in mine and p.budget.name in kinds and (not p.moves or p.budget.name in moving)
    )


_Plan = list[dict[tuple[str, "Locals"], list["Start"]]]
"""Per CPU: (path, locals) of the start that asks for the kind's left-out paths -> the base's
starts of them."""


def _plan(mine: Kernel, theirs: Kernel, dropped: frozenset[str]) -> _Plan:
    """Per CPU, for each kind with a left-out path: the first of ``mine``'s starts of that
    kind (``World._starts`` asks ``may_start`` of it once each time it works out the CPU's
    starts, whenever the kind's budget slot is open), preferring one a kernel thread may
    start too, and the base's starts of the left-out paths of the kind (asked only with
    the kind's budget left, so the budget needs no check). Where the variant
    has no start of the kind on a CPU (its paths' arguments take no value there), nothing
    asks, and the left-out paths are not counted on that CPU; no built-in kind is so."""
    out: _Plan = []
    for cpu, starts in enumerate(mine.starts):
        kinds: dict[str, list[Start]] = {}
        for s in theirs.starts[cpu]:
            if s.path.name in dropped and all(
                value in mine.vas for name, value in s.action.args if name == "va"
            ):  # an address only the base's world has (its spare one) is none of this world's
                kinds.setdefault(s.path.budget.name, []).append(s)
        asks: dict[tuple[str, Locals], list[Start]] = {}
        for kind, theirs_of_kind in kinds.items():
            of_kind = [s for s in starts if s.path.budget.name == kind]
            if not of_kind:  # none of the variant's paths of the kind starts here: no ask
                continue
            ask = next((s for s in of_kind if not s.path.from_user), of_kind[0])
            asks[ask.path.name, ask.locals] = theirs_of_kind
        out.append(asks)
    return out


def _leaving_out(
    mine: Callable[..., bool], base: Variant, dropped: frozenset[str], tally: Tally
) -> Any:
    """``may_start`` that also counts ``paths()`` where the variant leaves out ``dropped``
    (``left_out``): reached each time a CPU's starts are worked out with a budget of their
    kind left, and answered otherwise when the base's CPU could start one of them there (a
    user task where it needs one, and its start guard allowing, on this world). Such a
    patch runs only schedules the base may run; a model where the base could start a
    left-out path is still not the base's model. Its answers are ``mine``'s."""
    plans: dict[Kernel, tuple[_Plan, Kernel]] = {}

    def may_start(self: Variant, w: World, cpu: int, path: Path, lv: Locals) -> bool:
        k = w.kernel
        known = plans.get(k)
        if known is None:
            kb = Kernel.of(base, w.config)
            known = plans[k] = (_plan(k, kb, dropped), kb)
        plan, kb = known
        theirs = plan[cpu].get((path.name, lv))
        if theirs is not None:  # asked with the kind's budget left (World._starts' gate)
            user = w.cpus.peek(cpu).user_mode  # peek: a copy-on-write world keeps its parent's
            could = any(
                (user or not s.path.from_user)
                and (
                    kb.may_start(w, cpu, s.path, s.locals)
                    if kb.may_start is not None
                    else s.guard is None or s.guard(w, cpu, s.locals)
                )
                for s in theirs
            )
            tally.hit(("paths",), False)
            if could:
                tally.hit(("paths",), True)
        return mine(self, w, cpu, path, lv)

    may_start.__name__ = "may_start"
    return may_start


def _shape(
    cls: type[Variant], v: Variant, base: Variant, path: Path, changes: Changes, tally: Tally
) -> tuple[tuple[Step, ...], tuple[str, ...], tuple[str, ...], int]:
    """``path``'s steps in ``v``, with what counts when it runs: the decisions asked while
    building them (reached when the path's first step runs), those of them that answered
    otherwise (when a CPU gets to the first step that differs from the base's), and that
    step's index."""
    tally.shaping = []
    try:
        steps = cls.path_steps(v, path)
    finally:
        asked, tally.shaping = tally.shaping, None
    own = base.paths().get(path.name) != path  # extra_paths: a path of its own
    theirs = () if own else base.path_steps(path)
    reached = {n for n, _ in asked if n in changes.decisions}
    otherwise = {n for n, differed in asked if differed and n in changes.decisions}
    if "path_steps" in changes.decisions:
        reached.add("path_steps")
        if steps != theirs:
            otherwise.add("path_steps")
    if own and "paths" in changes.decisions:
        reached.add("paths")
        otherwise.add("paths")
    if steps == theirs:
        otherwise.clear()
    at = next(
        (i for i, (a, b) in enumerate(zip(steps, theirs, strict=False)) if a != b),
        min(len(steps) - 1, len(theirs)),  # one is the other cut short
    )
    order = tuple(changes.decisions)
    return (
        steps,
        tuple(n for n in order if n in reached),
        tuple(n for n in order if n in otherwise),
        at,
    )


def _config(cpus: int, budget: Budget, kind: BudgetKind) -> Config:
    """A probe's model: ``budget``, in the shape ``kind``'s paths need to start."""
    shape: dict[str, Any] = dict(kind.shape)
    return attrs.evolve(Config(cpus=cpus, budget=budget, reuse=False), **shape)


def _walks(probe: Variant, tally: Tally, config: Config, gate: str = "") -> set[str]:
    """The decisions reached in a few deterministic walks of ``config``; with ``gate`` (a
    kind), only while a path of that kind is running on some CPU."""
    return {name for name, (reached, _) in _walked(probe, tally, config, gate).items() if reached}


def _walked(
    probe: Variant, tally: Tally, config: Config, gate: str = "", walks: int = PROBE_WALKS
) -> dict[str, list[int]]:
    """``_walks``' counts: per changed decision, [times reached, times answered otherwise]."""
    w0 = World.initial(probe, config)
    paths = w0.kernel.paths
    current = [w0]
    if gate:
        tally.gate = lambda: any(
            c.path and paths[c.path].budget.name == gate for c in current[0].cpus
        )
    tally.take()
    try:
        for walk in range(walks):
            w = current[0] = w0.copy()
            for i in range(PROBE_STEPS):
                acts = w.enabled_actions()
                if not acts:
                    break
                w.apply(acts[(i * 7919 + walk * 104729 + i * i * walk) % len(acts)])
    finally:
        tally.gate = None
    return tally.take()


@attrs.define
class Otherwise:
    """``v`` instrumented (``instrument``) to count, in ``tally``, each ask of a changed
    decision it answers otherwise than its base would: it runs as ``v`` runs. The narrowed
    search (``tlbfuzz.fuzz.narrow``) asks it two things of a model. Before searching it, do
    a few deterministic walks see the change answered otherwise (``differs``: evidence that
    the change makes a difference there, not a proof either way)? While searching it, did any
    step (``count``)? A model searched whole where none did is the base's model: every step
    from every reachable state runs as the base runs it. Without ``LOADED_MM_SWITCHING`` in
    ``should_flush_tlb()`` (``examples/my_variant.py:SKIP_SWITCHING_CPUS``) every flush asks
    the decision, but it is answered otherwise only against a CPU switching between two mms."""

    variant: Variant
    tally: Tally
    walks: int = DIFFER_WALKS
    _memo: dict[Config, bool] = attrs.field(factory=dict)

    @classmethod
    def of(cls, v: Variant, changes: Changes, walks: int = DIFFER_WALKS) -> Otherwise:
        probe, tally = instrument(v, changes)
        return cls(probe, tally, walks)

    def count(self) -> int:
        """Asks answered otherwise since the last walks."""
        return sum(otherwise for _, otherwise in self.tally.counts.values())

    def differs(self, config: Config) -> bool:
        """Whether ``walks`` of the probe's deterministic walks of ``config`` see one of the
        changed decisions answered otherwise."""
        d = self._memo.get(config)
        if d is None:
            counts = _walked(self.variant, self.tally, config, walks=self.walks)
            d = self._memo[config] = any(otherwise for _, otherwise in counts.values())
        return d


def _pair_config(cpus: int, a: BudgetKind, b: BudgetKind) -> Config | None:
    """``_config`` of one path of ``a`` and one of ``b`` per CPU, in the shape both need; None
    if their shapes disagree."""
    shape = shape_for((a, b))
    if shape is None:
        return None
    return attrs.evolve(_config(cpus, Budget.only(**{a.name: 1, b.name: 1}), a), **shape)


def _explored(probe: Variant, tally: Tally, config: Config) -> set[str]:
    """The decisions reached in a breadth-first search of ``config``'s kernel steps (no
    hardware events or NMIs), up to ``PROBE_STATES`` states. A pair's decision can need three
    steps in one order (``change_prot_numa()``, its ``change_pte_range()``, then reclaim's
    ``try_to_unmap_one()`` of the same page), which the deterministic walks miss."""
    tally.take()
    bfs(World.initial(probe, config), (), 40, PROBE_STATES, allowed=_kernel_step)
    return {name for name, (reached, _) in tally.take().items() if reached}


def _kernel_step(a: Action) -> bool:
    return a.op not in HW_OPS and a.op != "nmi"


@attrs.frozen
class Reach:
    """The kinds of path seen to reach a decision: ``alone`` (a model with that kind and
    nothing else) and ``helped`` (only next to the kinds the fuzzer draws)."""

    alone: frozenset[str] = frozenset()
    helped: frozenset[str] = frozenset()

    @property
    def kinds(self) -> frozenset[str]:
        return self.alone | self.helped


def asking_kinds(v: Variant, changes: Changes, cpus: int = 2) -> dict[str, Reach]:
    """Per changed decision, the kinds of kernel path whose runs reach it. For each kind, a
    model where each CPU may start as many paths of that kind as the fuzzer draws at most
    and nothing else, walked a few times (deterministically) with hardware events around:
    asks from another CPU's flush handler count for the kind, since its flush is why they
    come. A decision no kind reaches alone is looked for with all the drawn kinds together
    (a switch back to an mm whose ``mm_cpumask`` bit is still set, while another CPU
    flushes: all of them are its kinds), then with each kind the fuzzer draws only when
    asked next to all the drawn ones, counting only asks while that kind's path runs
    (``flush_tlb_batched_pending()`` is asked only after a batched flush), then with each
    of those alone and then each two of them, searched breadth-first (``_explored``), so a
    pair is credited only where neither kind reaches the decision alone:
    ``pte_accessible()`` is asked only when reclaim or migration meets a PTE that NUMA
    hinting made PROT_NONE while its flush is pending."""
    probe, tally = instrument(v, changes)
    kinds = budget_kinds(v.paths())
    alone: dict[str, set[str]] = {name: set() for name in changes.decisions}
    helped: dict[str, set[str]] = {name: set() for name in changes.decisions}
    for k in kinds:
        only = Budget.only(**{k.name: max(k.fuzz_max, 1)})
        for name in _walks(probe, tally, _config(cpus, only, k)):
            alone[name].add(k.name)
    drawn = {k.name: k.fuzz_max for k in kinds if k.fuzz_max}
    together = _walks(probe, tally, Config(cpus=cpus, budget=Budget.only(**drawn), reuse=False))
    for name in together:  # a switch and a flush together, say: the drawn kinds need no help
        if not alone[name]:
            helped[name] = set(drawn)
    unasked = {name for name in changes.decisions if not alone[name] and not helped[name]}
    if unasked:
        for k in kinds:
            if k.fuzz_max:
                continue
            both = _config(cpus, Budget.only(**drawn, **{k.name: 1}), k)
            for name in _walks(probe, tally, both, gate=k.name) & unasked:
                helped[name].add(k.name)
    unasked = {name for name in unasked if not helped[name]}
    quiet = [k for k in kinds if not k.fuzz_max]
    if unasked:  # a quiet kind alone, searched: an order of its steps the walks missed
        for k in quiet:
            for name in _explored(probe, tally, _config(cpus, Budget.only(**{k.name: 1}), k)):
                if name in unasked:
                    alone[name].add(k.name)
        unasked = {name for name in unasked if not alone[name]}
    if unasked:  # two quiet kinds: NUMA hinting's PROT_NONE entry met by reclaim, say
        for a, b in itertools.combinations(quiet, 2):
            pair = _pair_config(cpus, a, b)
            if pair is not None:
                for name in _explored(probe, tally, pair) & unasked:
                    helped[name] |= {a.name, b.name}
    return {
        name: Reach(frozenset(alone[name]), frozenset(helped[name])) for name in changes.decisions
    }


def steered_kinds(
    v: Variant, reach: Mapping[str, Reach], shape: Mapping[str, Any] | None = None
) -> tuple[str, ...]:
    """The kinds the fuzzer draws only when asked (``fuzz_max == 0``) that it should draw
    for this variant, from ``asking_kinds``' answer: those that reach a changed decision no
    drawn kind reaches (a patch to migration's flush needs migrations; a patch to
    should_flush_tlb() gets flushes anyway). A kind whose paths need a shape of the model
    (khugepaged's ``anon_pages=0``) is left out unless the run's ``shape`` (``tlbfuzz fuzz
    --anon-pages 0``) has it: other models cannot start it."""
    kinds = budget_kinds(v.paths())
    drawn = {k.name for k in kinds if k.fuzz_max}
    steer: set[str] = set()
    for r in reach.values():
        if not r.kinds & drawn:
            steer |= r.kinds
    model = attrs.evolve(Config(), **(shape or {}))  # the run's shape, defaults included
    return tuple(
        k.name for k in kinds if k.name in steer and all(getattr(model, f) == n for f, n in k.shape)
    )


def toward_kinds(v: Variant, steer: tuple[str, ...]) -> frozenset[str]:
    """The focus kinds (``machine.focus``) of the paths of the kinds drawn only for this
    variant (``steered_kinds``), which the focus is steered to as well. Not the drawn kinds
    that reach a change: they come up at the rate the focus was tuned for, and steering to
    them lowered the rate on the orderings whose race needs another path on the other CPU
    (``bench/bench_race.py --rows mm``, README)."""
    return frozenset(
        p.focus_kind for p in v.paths().values() if p.budget.name in steer and not p.background
    )


def summary(
    changes: Changes,
    counts: Mapping[str, list[int]],
    reach: Mapping[str, Reach] | None = None,
    kinds: tuple[str, ...] = (),
    memory_model: str = "sc",
    narrowed: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What a result record keeps (``Record.changes``): the base, and per changed decision
    why it is one, how often the search reached it and how often it answered otherwise;
    with ``reach`` (``asking_kinds``), for a decision the search never reached, also the
    kinds of path the probe saw reach it (``reached_by``, in the order of ``kinds``) and
    whether one did alone (``alone``: then a ``--budget`` of it reaches it). A barrier
    (``TSO_ONLY``) in a run under sc is marked ``sc_blind``: no answer of it changes a
    step there, so the held cells say nothing about it. ``narrowed``: what the narrowed
    search around the change reached (``tlbfuzz.fuzz.narrow.Narrowed.to_dict``)."""
    out: dict[str, Any] = {"base": changes.base, "decisions": {}}
    if narrowed is not None:
        out["narrowed"] = dict(narrowed)
    for name, (why, base) in changes.decisions.items():
        reached, otherwise = counts.get(name, [0, 0])
        d: dict[str, Any] = {
            "why": why if len(changes.bases) == 1 else f"{why}, against {base}",
            "reached": reached,
            "otherwise": otherwise,
        }
        if memory_model == "sc" and name in TSO_ONLY:
            d["sc_blind"] = True
        if reach is not None and not reached:
            r = reach.get(name, Reach())
            d["reached_by"] = [k for k in kinds if k in r.kinds]
            d["alone"] = [k for k in kinds if k in r.alone]
        out["decisions"][name] = d
    return out


def add_summaries(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any] | None:
    """Two runs' summaries added up (None: not measured, adds nothing). A barrier counted by a
    run under sc (``sc_blind``) and by one under tso keeps only the tso run's counts: the
    others say nothing of it."""
    if a is None or b is None:
        return a if b is None else b
    out: dict[str, Any] = {
        "base": a["base"],
        "decisions": {k: dict(d) for k, d in a["decisions"].items()},
    }
    runs = [s["narrowed"] for s in (a, b) if "narrowed" in s]
    if runs:  # deterministic, so the same on every shard but for its budget: the deeper one
        out["narrowed"] = max(runs, key=lambda n: (not n["cut"], len(n["exhausted"]), n["states"]))
    for name, d in b["decisions"].items():
        mine = out["decisions"].setdefault(name, {"why": d["why"], "reached": 0, "otherwise": 0})
        if name in a["decisions"] and bool(mine.get("sc_blind")) != bool(d.get("sc_blind")):
            if mine.get("sc_blind"):  # b ran under tso: its counts replace a's
                out["decisions"][name] = dict(d)
            continue
        if d.get("sc_blind"):
            mine["sc_blind"] = True
        mine["reached"] += d["reached"]
        mine["otherwise"] += d["otherwise"]
        for key in ("reached_by", "alone"):
            if key in d:  # both lists are in the order of the kinds: keep it
                mine[key] = list(dict.fromkeys([*mine.get(key, []), *d[key]]))
        if mine["reached"]:  # a hint for what was never reached
            mine.pop("reached_by", None)
            mine.pop("alone", None)
    return out


def summary_lines(s: Mapping[str, Any]) -> list[str]:
    """What a held claim says about the patch: per changed decision, how often the search
    reached it and answered otherwise than the base. Never reached, or never answered
    otherwise, means the held cells say nothing about that change."""
    decisions: Mapping[str, Mapping[str, Any]] = s["decisions"]
    if not decisions:
        return [f"  changes from {s['base']}: none (the same switches, no method overridden)"]
    out = [f"  changes from {s['base']} (the nearest built-in variant):"]
    for name, d in decisions.items():
        if d.get("sc_blind"):
            said = "A BARRIER: under sc no answer of it changes a step, so the held cells say"
            said += " nothing about it (--memory-model tso)"
        elif not d["reached"]:
            said = "NEVER REACHED: the held cells say nothing about it"
            by, alone = d.get("reached_by"), d.get("alone")
            if alone:
                said += f"; paths that reach it: {', '.join(by or alone)} (--budget {alone[0]}=1)"
            elif by:
                said += f"; paths that reach it next to others: {', '.join(by)} (fuzz without"
                said += " --budget draws them; explore needs a budget with both)"
            elif by is not None:
                said += "; no path reached it in the probe either"
        elif not d["otherwise"]:
            said = f"reached {d['reached']:,} times, NEVER ANSWERED OTHERWISE: the held cells"
            said += " say nothing about it"
        else:
            said = f"reached {d['reached']:,} times, answered otherwise {d['otherwise']:,}"
        out += prose(f"{name}() ({d['why']}): {said}", 72, "    ", "      ")
    if "narrowed" in s:
        out += narrowed_lines(s["narrowed"])
    return out


def narrowed_lines(n: Mapping[str, Any]) -> list[str]:
    """What the narrowed search (``tlbfuzz.fuzz.narrow``) says for a held: how many models
    around the change, how many searched whole, and how deep the others."""
    qs: list[str] = n["questions"]
    whole: list[str] = n["exhausted"]
    broke: dict[str, str] = n.get("found", {})
    if not qs:
        return ["  narrowed search: no question (no kind of path asks the change in this shape)"]
    differed: list[str] | None = n.get("differed")  # None: a record of before the walks
    first = "the paths the fuzzer ran first"
    if differed == []:
        first += f"; in none of the {len(qs)} did a walk see the change answered otherwise"
    elif differed is not None and len(differed) == len(qs):
        first += f"; in each of the {len(qs)} a walk saw the change answered otherwise"
    elif differed:
        first = (
            f"first the {len(differed)} where a walk saw the change answered otherwise,"
            " then the others, the paths the fuzzer ran first in each"
        )
    said = (
        f"narrowed search: {len(qs)} models of 2 CPUs, each a path that asks the change on"
        f" one CPU and nothing or one other path on the other, searched breadth-first, {first}"
        f" ({n['states']:,} states): "
    )
    # a campaign resumed from a record of before per-model depths has one ``depth``
    depths = n.get("depths") or {q: n.get("depth", 0) for q in qs if q not in whole}
    said += how_far(len(qs), len(whole), depths.values())
    two: list[str] = n.get("two_mms", [])
    never = [q for q in two if depths.get(q) == 0]
    if never:  # where the switch_mm_irqs_off() windows between two mms are
        among = f"all {len(two)}" if len(never) == len(two) else f"{len(never)} of the {len(two)}"
        said += f", among them {among} with a context switch between two mms"
    quiet = set(n.get("quiet") or ())  # searched with no step answered otherwise
    searched = [q for q in qs if q in whole or depths.get(q, 0)]
    same = [q for q in whole if q in quiet]
    if searched and all(q in quiet for q in searched):
        said += "; no step of any model searched answered the change otherwise"
        if whole:
            said += (
                f": the {len(whole)} searched whole are the base's models and say nothing of"
                " the patch"
            )
    elif same:
        of = "every one" if len(same) == len(whole) else f"{len(same)} of the {len(whole)}"
        said += (
            f"; in {of} searched whole no step answered the change otherwise: those are the"
            " base's models and say nothing of the patch"
        )
    if differed and len(differed) < len(qs):
        done = [q for q in differed if q in whole]
        said += f"; of the {len(differed)} where a walk saw it, " + how_far(
            len(differed), len(done), [depths.get(q, 0) for q in differed if q not in whole]
        )
    if len(whole) < len(qs) and n["cut"]:
        said += " (the state budget ran out: --narrow-states)"
    said += "; " + (
        "broke " + ", ".join(f"{p} in {q}" for p, q in broke.items()) if broke else "no violation"
    )
    return prose(said, 72, "  ", "    ")


def bases_of(s: Mapping[str, Any]) -> list[str]:
    """The built-in variants a summary's changes are measured against (``Changes.bases``)."""
    return str(s["base"]).split(_OR)


def unreached(s: Mapping[str, Any]) -> list[str]:
    """The changed decisions a summary says the search never reached."""
    return [name for name, d in s["decisions"].items() if not d["reached"]]


def said_nothing_of(s: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """The changed decisions a held says nothing about, as ``summary_lines`` says them: the
    barriers of a run under sc (``sc_blind``, reached or not), then the other decisions
    never reached."""
    decisions: Mapping[str, Mapping[str, Any]] = s["decisions"]
    blind = [name for name, d in decisions.items() if d.get("sc_blind")]
    return blind, [name for name in unreached(s) if name not in blind]


@attrs.frozen
class OnBase:
    """A finding's schedule replayed on one of its variant's bases: ``breaks`` (the base breaks
    the same property, at ``step``: the race is not the variant's own), ``holds`` (every step
    runs and the property survives) or ``refuses`` (the base cannot take ``step``: it runs its
    code otherwise there, e.g. a path of the variant's own). ``older``: where it breaks, the
    bases further back (``BASE_OF``) that break too, in order; ``nearest``: the base is the
    nearest built-in variant to a variant of the user's (``changes_of``), not a declared one."""

    base: str
    verdict: str
    step: int = 0
    older: tuple[str, ...] = ()
    nearest: bool = False

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"verdict": self.verdict, "step": self.step}
        if self.older:
            d["older"] = list(self.older)
        return d


def whose(v: Variant, config: Config, schedule: Sequence[Action], prop: str) -> tuple[OnBase, ...]:
    """``schedule``, which breaks ``prop`` on ``v``, replayed step by step on each base of
    ``v``: for a variant of the user's, the nearest built-in ones (``Changes.bases``); for a
    built-in one, the variant it was made from (``BASE_OF``; none for linux-5.2). Where a
    base breaks too, the replay goes on back through its own bases while they break. A
    reviewer needs this before blaming a patch: a patch on linux-5.2 inherits 5.2's switch
    window, and a run on it may well find that first (``bench/bench_race.py`` counts such
    seeds as the kernel's ``own``). Only this schedule is replayed: a base that holds here
    may still break by another one."""
    changes = changes_of(v)
    if changes is not None:
        bases = changes.bases
    else:
        bases = (BASE_OF[v.name],) if v.name in BASE_OF else ()

    def verdict(name: str) -> Replayed:
        return replayed(World.initial(VARIANTS[name], config), schedule, [prop])

    out = []
    for name in bases:
        r = verdict(name)
        older: list[str] = []
        up = BASE_OF.get(name) if r.verdict == "breaks" else None
        while up is not None and verdict(up).verdict == "breaks":
            older.append(up)
            up = BASE_OF.get(up)
        out.append(OnBase(name, r.verdict, r.step, tuple(older), changes is not None))
    return tuple(out)


def whose_lines(prop: str, found: Sequence[OnBase], schedule: Sequence[Action]) -> list[str]:
    """What a finding's mail says of its bases (``whose``), a paragraph per base."""
    from tlbfuzz.fuzz.mail import step_words

    out = []
    for o in found:
        why = (
            "the built-in variant it differs least from" if o.nearest else "the variant it changes"
        )
        base = f"{o.base} ({why})"
        if o.verdict == "breaks":
            back = f", and on {_and(o.older)}" if o.older else ""
            text = (
                f"Not this variant's own race: the same schedule breaks {prop} on {base} too, "
                f"at step {o.step}{back}."
            )
        elif o.verdict == "holds":
            text = f"This schedule needs the variant's change: on {base} it runs and {prop} holds."
        else:
            text = (
                f"This schedule needs the variant's change: {base} cannot take its step "
                f"{o.step} ({step_words(schedule[o.step - 1])})."
            )
        out.append(text)
    return out


def _and(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
