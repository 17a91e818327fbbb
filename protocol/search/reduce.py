"""Making a violating schedule small: replay it, delta-debug it (ddmin over named actions),
search for the shortest schedule over the actions it uses, and drop the CPUs it does not need.

Pure and deterministic like the rest of ``protocol/``: the same inputs give the same answers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from tlbfuzz.protocol.paths import CPU_ARGS
from tlbfuzz.protocol.search.bfs import bfs

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from tlbfuzz.protocol.actions import Action
    from tlbfuzz.protocol.config import Config
    from tlbfuzz.protocol.state import Violation
    from tlbfuzz.protocol.variants import Variant
    from tlbfuzz.protocol.world import World


@attrs.frozen
class Replayed:
    """``schedule`` replayed from a start: ``breaks`` (``violation``, the first property to
    break, at ``step``), ``holds`` (every step ran and nothing broke; ``step`` 0) or
    ``refuses`` (``step`` was not enabled there: on another variant, say)."""

    verdict: str
    step: int = 0
    violation: Violation | None = None


def replayed(start: World, schedule: Sequence[Action], props: Iterable[str]) -> Replayed:
    """Replay ``schedule`` from a copy of ``start`` until one of ``props`` breaks or a step
    is not enabled."""
    props = tuple(props)
    w = start.copy()
    for i, a in enumerate(schedule, 1):
        if not w.is_enabled(a):
            return Replayed("refuses", i)
        w.apply(a)
        found = w.violations(props)
        if found:
            return Replayed("breaks", i, found[0])
    return Replayed("holds")


def first_violation(
    start: World, schedule: Sequence[Action], props: Iterable[str]
) -> tuple[int, Violation] | None:
    """Replay ``schedule`` from a copy of ``start``; the step (1-based) at which one of
    ``props`` first breaks, or None if every step is enabled and nothing breaks
    (``replayed`` tells those two apart)."""
    r = replayed(start, schedule, props)
    return None if r.violation is None else (r.step, r.violation)


def ddmin(start: World, schedule: Sequence[Action], props: Iterable[str]) -> list[Action]:
    """Delta debugging over named actions: drop chunks, then single steps, while the schedule
    still breaks one of ``props``. The result is 1-minimal: no single step can be removed."""
    props = tuple(props)
    hit = first_violation(start, schedule, props)
    if hit is None:
        raise ValueError("ddmin() needs a schedule that breaks a property")
    cur = list(schedule[: hit[0]])
    chunk = max(1, len(cur) // 2)
    while True:
        i = 0
        removed = False
        while i < len(cur):
            cand = cur[:i] + cur[i + chunk :]
            hit = first_violation(start, cand, props) if cand else None
            if hit is not None:
                cur = cand[: hit[0]]
                removed = True
            else:
                i += chunk
        if chunk == 1 and not removed:
            return cur
        if not removed:
            chunk = max(1, chunk // 2)


def minimise(
    start: World,
    schedule: Sequence[Action],
    props: Iterable[str],
    max_states: int = 200_000,
) -> list[Action]:
    """ddmin, then the shortest schedule over the actions the ddmin result uses plus, for the
    addresses it touches, a speculative fill and a user read on every CPU (the cheapest ways
    to create and use a translation): breadth-first, so nothing shorter exists in that
    alphabet. Falls back to the ddmin result if the search would exceed ``max_states``."""
    from tlbfuzz.protocol.actions import Action
    from tlbfuzz.protocol.paths import FLUSH_TLB_MM_RANGE, Inline

    props = tuple(props)
    reduced = ddmin(start, schedule, props)
    vas = sorted({v for a in reduced for k, v in a.args if k == "va"})
    extra = [
        Action(cpu, op, (("va", va),))
        for cpu in range(len(start.cpus))
        for op in ("tlb_fill", "user_read")
        for va in vas
    ]
    # A CPU that starts one user-mapping change may start another instead: mprotect's flush
    # has no tlb_finish_mmu step, so swapping a madvise for it can shorten a schedule that
    # only needs a flush (the pointer-info race). The swappable paths: syscalls that flush.
    kernel = start.kernel
    swappable = {
        name
        for name, p in kernel.paths.items()
        if p.from_user
        and any(isinstance(s, Inline) and s.expand is FLUSH_TLB_MM_RANGE.expand for s in p.steps)
    }
    starts = [s for row in kernel.starts for s in row if s.path.name in swappable]
    first = {s.action for s in starts}
    flushers = {a.cpu for a in reduced if a in first}
    for s in starts:
        cpu = s.action.cpu
        if cpu in flushers and all(v in vas for k, v in s.action.args if k == "va"):
            # the start, and the path's later steps (the PTE change after tlb_gather_mmu())
            extra.append(s.action)
            extra += [kernel.step[cpu][st.name] for st in kernel.steps[s.path.name][1:]]
    alphabet = frozenset(reduced) | frozenset(extra)
    found = bfs(start, props, len(reduced) - 1, max_states, allowed=alphabet.__contains__)
    if found.schedule is not None:
        return found.schedule
    return reduced


def drop_cpu(schedule: Sequence[Action], cpu: int) -> list[Action] | None:
    """The schedule without ``cpu``: its actions removed, higher CPUs renumbered down. None if
    another CPU's action names it (an IPI sent to it)."""
    from tlbfuzz.protocol.actions import Action

    out = []
    for a in schedule:
        if a.cpu == cpu:
            continue
        args = []
        for k, v in a.args:
            if k in CPU_ARGS and v == cpu:
                return None
            args.append((k, v - (v > cpu) if k in CPU_ARGS else v))
        out.append(Action(a.cpu - (a.cpu > cpu), a.op, tuple(args)))
    return out


def _enabled_subsequence(start: World, schedule: Sequence[Action]) -> list[Action]:
    """The steps of ``schedule`` that are enabled when their turn comes (others skipped)."""
    w = start.copy()
    out = []
    for a in schedule:
        if w.is_enabled(a):
            w.apply(a)
            out.append(a)
    return out


def fewer_cpus(
    variant: Variant, config: Config, schedule: Sequence[Action], props: Iterable[str]
) -> tuple[Config, list[Action]]:
    """Drop CPUs the violation does not need (fewest CPUs first, for the reader), then
    minimise in the smaller configuration."""
    from tlbfuzz.protocol.world import World

    props = tuple(props)
    best = (config, minimise(World.initial(variant, config), schedule, props))
    changed = True
    while changed and best[0].cpus > 1:
        changed = False
        for cpu in range(best[0].cpus):
            cand = drop_cpu(best[1], cpu)
            if cand is None:
                continue
            smaller = attrs.evolve(best[0], cpus=best[0].cpus - 1)
            start = World.initial(variant, smaller)
            cand = _enabled_subsequence(start, cand)
            if first_violation(start, cand, props) is not None:
                best = (smaller, minimise(start, cand, props))
                changed = True
                break
    return best
