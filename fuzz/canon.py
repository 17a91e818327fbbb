"""One race, one name: the canonical form of a finding before it is printed and saved.

Runs of the fuzzer find the same race in many spellings: with the CPUs numbered the other way
round, with the translation cached by a user read where another run used a speculative fill,
with two independent steps of different CPUs in the other order, or under a larger budget
than the schedule uses. The corpus names a file by a digest of its contents, so each spelling
was a new file. ``canonical`` maps every spelling to one:

1. the budget: each kind lowered to what the schedule still needs;
2. equivalent hardware steps: an access that caches or uses a translation becomes the first
   of ``tlb_fill``, ``user_read``, ``user_write``, ``nmi`` with which the schedule still
   breaks the property at its last step;
3. CPU names and order: for every renaming of the CPUs (the model's CPUs are symmetric:
   each starts identical, as ``tlbfuzz.protocol.search.symmetric_fingerprint`` uses),
   adjacent steps of different CPUs are swapped into a fixed order while swapping them leaves
   the state the same; the least result over all renamings wins.

Every candidate is replayed: a rewrite is kept only if the schedule still breaks the property
at its last step and nowhere before (so a user variant that is not symmetric keeps its
numbering). Pure and deterministic, like ``protocol/``.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Final

import attrs

from tlbfuzz.protocol import Action, Budget, World, budget_kinds
from tlbfuzz.protocol.search import rename_cpus

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tlbfuzz.protocol import Config, Variant

ACCESSES: Final = ("tlb_fill", "user_read", "user_write", "nmi")
"""Ways a CPU comes to cache or use a translation, in the order the canonical form prefers
them: a speculative fill, a user access, an NMI's ``copy_from_user_nmi()``. Two runs of the
main job found one use-after-free on ``rfc-async-posted`` with an NMI and with a fill as the
step that caches the stale entry."""


def _breaks_at_end(start: World, schedule: Sequence[Action], prop: str) -> bool:
    w = start.copy()
    for i, a in enumerate(schedule, 1):
        if not w.is_enabled(a):
            return False
        w.apply(a)
        if w.violations([prop]):
            return i == len(schedule)
    return False


def smallest_budget(
    variant: Variant, config: Config, schedule: Sequence[Action], prop: str
) -> Config:
    """``config`` with each budget kind (of the variant's paths) as low as the schedule
    allows, for every CPU alike (per-CPU budgets are kept as they are)."""
    best = World.initial(variant, config).config  # every kind named
    for kind in budget_kinds(variant.paths()):
        while (n := best.budget.count(kind)) > 0:
            budget = Budget.only(**{**best.budget.named(), kind.name: n - 1})
            cand = attrs.evolve(best, budget=budget)
            if not _breaks_at_end(World.initial(variant, cand), schedule, prop):
                break
            best = cand
    return best


def plain_accesses(start: World, schedule: Sequence[Action], prop: str) -> list[Action]:
    """Each access replaced by the first of ``ACCESSES`` that keeps the violation, pass after
    pass until none changes (a later step's change can free an earlier one: a fill need not
    be a write once the access that uses it is a read). Each change lowers a step in
    ``ACCESSES``, so it ends."""
    out = list(schedule)
    changed = True
    while changed:
        changed = False
        for i, a in enumerate(out):
            if a.op not in ACCESSES:
                continue
            for op in ACCESSES[: ACCESSES.index(a.op)]:
                cand = [*out[:i], Action(a.cpu, op, a.args), *out[i + 1 :]]
                if _breaks_at_end(start, cand, prop):
                    out = cand
                    changed = True
                    break
    return out


rename = rename_cpus
"""CPU ``i`` renamed ``perm[i]`` (``tlbfuzz.protocol.search.rename_cpus``)."""


def _key(a: Action) -> tuple[int, str]:
    return (a.cpu if a.cpu >= 0 else 1 << 30, str(a))


def ordered(start: World, schedule: Sequence[Action], prop: str) -> list[Action]:
    """Adjacent steps of different CPUs swapped into ``_key`` order wherever the swap leaves
    the state after both the same and breaks nothing earlier (bubble sort, so it ends)."""
    out = list(schedule)
    changed = True
    while changed:
        changed = False
        w = start.copy()
        for i in range(len(out) - 1):
            a, b = out[i], out[i + 1]
            if a.cpu != b.cpu and _key(b) < _key(a) and _commute(w, a, b, prop, i + 2 < len(out)):
                out[i], out[i + 1] = b, a
                changed = True
                a = b
            w.apply(a)
    return out


def _commute(w: World, a: Action, b: Action, prop: str, intermediate: bool) -> bool:
    ab = w.copy()
    ab.apply(a)
    ab.apply(b)
    ba = w.copy()
    if not ba.is_enabled(b):
        return False
    ba.apply(b)
    if ba.violations([prop]):
        return False  # the swap would break the property one step early
    if not ba.is_enabled(a):
        return False
    ba.apply(a)
    if intermediate and ba.violations([prop]):
        return False
    return ab.snapshot() == ba.snapshot()


def canonical(
    variant: Variant, config: Config, schedule: Sequence[Action], prop: str
) -> tuple[Config, list[Action]]:
    """The canonical (config, schedule) of a schedule that breaks ``prop`` at its last step.
    A schedule that does not is returned unchanged."""
    schedule = list(schedule)
    if not _breaks_at_end(World.initial(variant, config), schedule, prop):
        return config, schedule
    config = smallest_budget(variant, config, schedule, prop)
    start = World.initial(variant, config)
    schedule = plain_accesses(start, schedule, prop)
    best: list[Action] | None = None
    best_key: list[tuple[int, str]] = []
    for perm in itertools.permutations(range(config.cpus)):
        renamed = rename(schedule, perm)
        if not _breaks_at_end(start, renamed, prop):
            continue  # per-CPU budgets (--budget cpu0:migrate=1): not every CPU may start it
        cand = ordered(start, renamed, prop)
        key = [_key(a) for a in cand]
        if (best is None or key < best_key) and _breaks_at_end(start, cand, prop):
            best, best_key = cand, key
    return config, schedule if best is None else best
