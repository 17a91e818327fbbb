"""Search over the model: replaying schedules, minimising them, and breadth-first search.

Pure and deterministic like the rest of ``protocol/``: the same inputs give the same answers.
"""

from __future__ import annotations

import itertools
from collections import deque
from typing import TYPE_CHECKING, Any

import attrs

from protocol.state import Cpu, Mm

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from protocol.actions import Action
    from protocol.config import Config
    from protocol.state import Violation
    from protocol.variants import Variant
    from protocol.world import World


def first_violation(
    start: World, schedule: Sequence[Action], props: Iterable[str]
) -> tuple[int, Violation] | None:
    """Replay ``schedule`` from a copy of ``start``; the step (1-based) at which one of
    ``props`` first breaks, or None if every step is enabled and nothing breaks."""
    props = tuple(props)
    w = start.copy()
    for i, a in enumerate(schedule, 1):
        if not w.is_enabled(a):
            return None
        w.apply(a)
        found = w.violations(props)
        if found:
            return i, found[0]
    return None


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


@attrs.frozen
class SearchResult:
    """What a breadth-first search found, and what it cost."""

    schedule: list[Action] | None  # a shortest violating schedule, if any within the bounds
    violation: Violation | None
    depth: int  # the deepest level completely explored
    states: int  # unique states seen
    complete: bool  # False if max_states cut the search short
    exhausted: bool = False  # every reachable state was explored: a proof for this config


def bfs(
    start: World,
    props: Iterable[str],
    max_depth: int,
    max_states: int = 1_000_000,
    allowed: Callable[[Action], bool] | None = None,
    key: Callable[[World], object] | None = None,
    on_level: Callable[[int, int], None] | None = None,
    on_violation: Callable[[list[Action], Violation], bool] | None = None,
) -> SearchResult:
    """Breadth-first search from ``start`` for a state breaking one of ``props``: the first
    found is at the least depth. ``allowed`` restricts the actions tried; ``key`` maps a world
    to what the visited set stores (default: its full snapshot); ``on_level(depth, states)`` is
    called as each level is finished (for a progress line).

    With ``on_violation``, the search goes on past a violation: the callback gets the shortest
    schedule of each property the first time one breaks (so every property's own minimum, not
    only the overall one) and returns whether to keep searching. Violating states are expanded
    too, since the shortest way to break one property may pass through breaking another.
    If the callback stops the search, the result carries that last violation; if the search
    ends otherwise, its schedule and violation are None (the callback has had them all).
    """
    props = tuple(props)
    reported: set[str] = set()
    key = key or (lambda w: w.snapshot())
    seen = {key(start)}
    parents: dict[int, tuple[int, Action]] = {}
    worlds = [start]
    frontier = deque([0])
    depth = 0
    level_end = 1
    next_level_end = 1
    index = 0
    while frontier:
        i = frontier.popleft()
        if i >= level_end:
            depth += 1
            level_end = next_level_end
            if on_level is not None:
                on_level(depth, len(seen))
        if depth >= max_depth:
            break
        w = worlds[i]
        for a in w.enabled_actions():
            if allowed is not None and not allowed(a):
                continue
            x = w.copy()
            x.apply(a)
            k = key(x)
            if k in seen:
                continue
            seen.add(k)
            worlds.append(x)
            index = len(worlds) - 1
            parents[index] = (i, a)
            found = x.violations(props)
            if found and on_violation is None:
                return SearchResult(_path(parents, index), found[0], depth + 1, len(seen), True)
            for v in found:
                if v.prop in reported:
                    continue
                reported.add(v.prop)
                assert on_violation is not None
                path = _path(parents, index)
                if not on_violation(path, v):
                    return SearchResult(path, v, depth + 1, len(seen), True)
            if len(seen) >= max_states:
                return SearchResult(None, None, depth, len(seen), False)
            frontier.append(index)
            next_level_end = index + 1
        worlds[i] = None  # type: ignore[call-overload]  # free the explored level as we go
    exhausted = not frontier and depth < max_depth
    return SearchResult(None, None, min(depth, max_depth), len(seen), True, exhausted)


def _path(parents: dict[int, tuple[int, Action]], index: int) -> list[Action]:
    out = []
    while index in parents:
        index, a = parents[index]
        out.append(a)
    out.reverse()
    return out


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
    from protocol.actions import Action
    from protocol.paths import FLUSH_TLB_MM_RANGE, Inline

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
        if p.from_user and any(isinstance(s, Inline) and s is FLUSH_TLB_MM_RANGE for s in p.steps)
    }
    starts = [s for row in kernel.starts for s in row if s.path.name in swappable]
    first = {s.action for s in starts}
    flushers = {a.cpu for a in reduced if a in first}
    extra += [
        s.action
        for s in starts
        if s.action.cpu in flushers and all(v in vas for k, v in s.action.args if k == "va")
    ]
    alphabet = frozenset(reduced) | frozenset(extra)
    found = bfs(start, props, len(reduced) - 1, max_states, allowed=alphabet.__contains__)
    if found.schedule is not None:
        return found.schedule
    return reduced


def drop_cpu(schedule: Sequence[Action], cpu: int) -> list[Action] | None:
    """The schedule without ``cpu``: its actions removed, higher CPUs renumbered down. None if
    another CPU's action names it (an IPI sent to it)."""
    from protocol.actions import Action

    out = []
    for a in schedule:
        if a.cpu == cpu:
            continue
        args = []
        for k, v in a.args:
            if k == "target" and v == cpu:
                return None
            args.append((k, v - (v > cpu) if k == "target" else v))
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
    from protocol.world import World

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


def permuted_snapshot(w: World, perm: Sequence[int]) -> tuple[object, ...]:
    """The snapshot of ``w`` with CPU ``i`` renamed ``perm[i]`` everywhere a CPU is named: the
    order of CPUs, and every field that its record declares as naming CPUs (``names_cpus`` in
    ``protocol.state``: cpumasks, csd senders and targets, queued csds, IRQ batches, the
    initiating CPU of flush_tlb_info...). Violation messages are left as they are (a search
    stops at the first one)."""
    snap: Any = w.snapshot()
    cpus: list[object] = [None] * len(w.cpus)
    for i, c in enumerate(snap.cpus):
        cpus[perm[i]] = _renamed(c, Cpu.perms, perm)
    mms = tuple(_renamed(m, Mm.perms, perm) for m in snap.mms)
    return _renamed(snap._replace(cpus=tuple(cpus), mms=mms), type(w).perms, perm)  # type: ignore[no-any-return]


def _renamed(snap: Any, perms: Iterable[tuple[str, Any]], perm: Sequence[int]) -> Any:
    return snap._replace(**{name: fn(getattr(snap, name), perm) for name, fn in perms})


def symmetric_fingerprint(w: World) -> int:
    """A visited-set key that is the same for states equal up to renaming CPUs (sound: every
    CPU starts identical and no step treats one CPU differently): the least hash over all
    renamings. A hash, not the state: 8 bytes a state, at a collision risk of about n^2/2^64."""
    n = len(w.cpus)
    return min(hash(permuted_snapshot(w, perm)) for perm in itertools.permutations(range(n)))
