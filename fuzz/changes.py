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
  the asks and the answers that differed. ``tlbfuzz fuzz`` and ``explore`` print it below
  their held cells, ``never asked`` and ``never answered otherwise`` included.
- ``steered_kinds`` is the steering: the kinds of kernel path the fuzzer draws only when
  asked (``BudgetKind.fuzz_max == 0``: reclaim, migration, NUMA hinting...) whose steps ask a
  changed decision, found by a short deterministic probe. ``fuzz_variant`` draws them too,
  so a patch to migration's flush gets migrations without a ``--budget``.

Built-in variants are not instrumented: their differences are the subject of the corpus and
the race table, and their streams are what the tests assert.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from functools import cache
from typing import TYPE_CHECKING, Any, Final

import attrs

from tlbfuzz.protocol import VARIANTS, Budget, BudgetKind, Config, Path, Step, Variant, World
from tlbfuzz.protocol.paths import budget_kinds

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

NOT_SWITCHES: Final = frozenset({"name", "summary", "kernel_ref"})
"""Fields of a variant that describe it and decide nothing."""
PROBE_WALKS: Final = 16
PROBE_STEPS: Final = 60


@attrs.frozen
class Changes:
    """How a variant differs from its base: ``decisions`` maps each decision method it may
    answer otherwise to why (``overridden``, or ``reads <switch>``)."""

    base: str
    switches: tuple[str, ...]
    decisions: Mapping[str, str]


def decision_methods() -> tuple[str, ...]:
    """The public methods of ``Variant``, in the order of its source."""
    return _readers()[0]


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
    base = min(VARIANTS, key=lambda name: len(differing[name]))  # the first of a tie
    switches = differing[base]
    names, reads = _readers()
    decisions: dict[str, str] = {}
    for name in names:
        if getattr(type(v), name) is not getattr(Variant, name):
            decisions[name] = "overridden"
        elif reads[name] & set(switches):
            decisions[name] = "reads " + ", ".join(s for s in switches if s in reads[name])
    return Changes(base, switches, decisions)


@attrs.define
class Tally:
    """Per changed decision: [times reached, times answered otherwise than the base]. A
    decision asked at run time is reached when asked. One that shapes a path's steps
    (``path_steps``, ``flush_steps``, an ``Inline`` run such as migration's copy and flush) is
    asked once, when the model is built; it is reached each time the first step it moved
    runs, and every such run counts as answered otherwise."""

    counts: dict[str, list[int]]
    shaping: set[str] | None = None
    """While a path's steps are built: the decisions that answered otherwise."""
    shaped: dict[str, set[str]] = attrs.field(factory=dict)
    """Per decision that shapes steps: the paths whose steps it changed."""

    def asked(self, name: str, differed: bool) -> None:
        if self.shaping is not None:
            if differed:
                self.shaping.add(name)
            return
        n = self.counts[name]
        n[0] += 1
        n[1] += differed

    def ran(self, names: tuple[str, ...]) -> None:
        for name in names:
            n = self.counts[name]
            n[0] += 1
            n[1] += 1

    def take(self) -> dict[str, list[int]]:
        """The counts so far, and zero them (a run's, not the minimiser's after it)."""
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


def _counted(step: Step, names: tuple[str, ...], tally: Tally) -> Step:
    run = step.run

    def counted(w: World, cpu: int) -> None:
        tally.ran(names)
        run(w, cpu)

    return attrs.evolve(step, run=counted)


def instrument(v: Variant, changes: Changes) -> tuple[Variant, Tally]:
    """A copy of ``v`` whose changed decisions are counted into the returned tally."""
    tally = Tally({name: [0, 0] for name in changes.decisions})
    base = VARIANTS[changes.base]
    cls = type(v)
    wrappers: dict[str, object] = {"__slots__": ()}
    for name in changes.decisions:
        if name != "path_steps":
            wrappers[name] = _wrap(name, getattr(cls, name), base, tally)
    mine = cls.path_steps
    moved: dict[str, Step] = {}  # one counted copy per step name (paths share steps)

    def path_steps(self: Variant, path: Path) -> tuple[Step, ...]:
        tally.shaping = set()
        try:
            steps = mine(self, path)
        finally:
            shaping, tally.shaping = tally.shaping, None
        theirs = base.path_steps(path)
        if [s.name for s in steps] == [s.name for s in theirs]:
            return steps
        if "path_steps" in changes.decisions:
            shaping.add("path_steps")
        names = tuple(n for n in changes.decisions if n in shaping)
        for n in names:
            tally.shaped.setdefault(n, set()).add(path.name)
        i = next(
            (i for i, (a, b) in enumerate(zip(steps, theirs, strict=False)) if a.name != b.name),
            min(len(steps) - 1, len(theirs)),  # one is the other cut short
        )
        first = moved.setdefault(steps[i].name, _counted(steps[i], names, tally))
        return (*steps[:i], first, *steps[i + 1 :])

    wrappers["path_steps"] = path_steps
    sub = type(cls.__name__, (cls,), wrappers)
    new: Variant = object.__new__(sub)
    for f in attrs.fields(cls):
        object.__setattr__(new, f.name, getattr(v, f.name))
    for k, value in getattr(v, "__dict__", {}).items():
        object.__setattr__(new, k, value)
    return new, tally


def _config(cpus: int, budget: Budget, kind: BudgetKind) -> Config:
    """A probe's model: ``budget``, in the shape ``kind``'s paths need to start."""
    shape: dict[str, Any] = dict(kind.shape)
    return attrs.evolve(Config(cpus=cpus, budget=budget, reuse=False), **shape)


def _walks(probe: Variant, tally: Tally, config: Config) -> set[str]:
    """The decisions asked in a few deterministic walks of ``config``."""
    w0 = World.initial(probe, config)
    tally.take()
    for walk in range(PROBE_WALKS):
        w = w0.copy()
        for i in range(PROBE_STEPS):
            acts = w.enabled_actions()
            if not acts:
                break
            w.apply(acts[(i * 7919 + walk * 104729 + i * i * walk) % len(acts)])
    return {name for name, (asked, _) in tally.take().items() if asked}


def asking_kinds(v: Variant, changes: Changes, cpus: int = 2) -> dict[str, frozenset[str]]:
    """Per changed decision, the kinds of kernel path whose runs ask it. For each kind, a
    model where each CPU may start one path of that kind and nothing else, walked a few
    times (deterministically) with hardware events around: asks from another CPU's flush
    handler count for the kind, since its flush is why they come. A decision no kind asks
    alone (``flush_tlb_batched_pending()`` is asked only after reclaim batched a flush) is
    then looked for with each kind the fuzzer draws only when asked, next to all the others:
    that kind is the one it needs."""
    probe, tally = instrument(v, changes)
    kinds = budget_kinds(v.paths())
    out: dict[str, set[str]] = {name: set() for name in changes.decisions}
    for k in kinds:
        for name in _walks(probe, tally, _config(cpus, Budget.only(**{k.name: 1}), k)):
            out[name].add(k.name)
    paths = v.paths()
    for name, shaped in tally.shaped.items():
        out[name] |= {paths[p].budget.name for p in shaped}
    unasked = {name for name, askers in out.items() if not askers}
    if unasked:
        drawn = {k.name: 1 for k in kinds if k.fuzz_max}
        for k in kinds:
            if k.fuzz_max:
                continue
            both = Budget.only(**drawn, **{k.name: 1})
            for name in _walks(probe, tally, _config(cpus, both, k)) & unasked:
                out[name].add(k.name)
    return {name: frozenset(kinds) for name, kinds in out.items()}


def steered_kinds(v: Variant, changes: Changes, cpus: int = 2) -> tuple[str, ...]:
    """The kinds the fuzzer draws only when asked (``fuzz_max == 0``) that it should draw
    for this variant: those that ask a changed decision no drawn kind asks (a patch to
    migration's flush needs migrations; a patch to should_flush_tlb() gets flushes anyway)."""
    kinds = budget_kinds(v.paths())
    drawn = {k.name for k in kinds if k.fuzz_max}
    steer: set[str] = set()
    for askers in asking_kinds(v, changes, cpus).values():
        if not askers & drawn:
            steer |= askers
    return tuple(k.name for k in kinds if k.name in steer)


def summary(changes: Changes, counts: Mapping[str, list[int]]) -> dict[str, Any]:
    """What a result record keeps (``Record.changes``): the base, and per changed decision
    why it is one, how often the search reached it and how often it answered otherwise."""
    return {
        "base": changes.base,
        "decisions": {
            name: {
                "why": why,
                "reached": counts.get(name, [0, 0])[0],
                "otherwise": counts.get(name, [0, 0])[1],
            }
            for name, why in changes.decisions.items()
        },
    }


def add_summaries(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any] | None:
    """Two runs' summaries added up (None: not measured, adds nothing)."""
    if a is None or b is None:
        return a if b is None else b
    out = {"base": a["base"], "decisions": {k: dict(d) for k, d in a["decisions"].items()}}
    for name, d in b["decisions"].items():
        mine = out["decisions"].setdefault(name, {"why": d["why"], "reached": 0, "otherwise": 0})
        mine["reached"] += d["reached"]
        mine["otherwise"] += d["otherwise"]
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
        if not d["reached"]:
            said = "NEVER REACHED: the held cells say nothing about it"
        elif not d["otherwise"]:
            said = f"reached {d['reached']:,} times, NEVER ANSWERED OTHERWISE: the held cells"
            said += " say nothing about it"
        else:
            said = f"reached {d['reached']:,} times, answered otherwise {d['otherwise']:,}"
        out += textwrap.wrap(
            f"{name}() ({d['why']}): {said}", 72, initial_indent="    ", subsequent_indent="      "
        )
    return out


def unreached(s: Mapping[str, Any]) -> list[str]:
    """The changed decisions a summary says the search never reached."""
    return [name for name, d in s["decisions"].items() if not d["reached"]]
