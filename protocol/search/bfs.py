"""Breadth-first search over the model: the shortest schedule breaking a property, or a proof
that none exists within the bounds (``exhausted``: every reachable state was explored).

Pure and deterministic like the rest of ``protocol/``: the same inputs give the same answers.
"""

from __future__ import annotations

import itertools
from collections import deque
from typing import TYPE_CHECKING, Any

import attrs

from tlbfuzz.protocol.search.symmetry import renamed

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from tlbfuzz.protocol.actions import Action
    from tlbfuzz.protocol.state import Violation
    from tlbfuzz.protocol.world import World


@attrs.frozen
class SearchResult:
    """What a breadth-first search found, and what it cost."""

    schedule: list[Action] | None  # a shortest violating schedule, if any within the bounds
    violation: Violation | None
    depth: int  # the deepest level completely explored
    states: int  # unique states seen
    complete: bool  # False if max_states cut the search short
    exhausted: bool = False  # every reachable state was explored: a proof for this config
    reached: dict[str, int] = attrs.field(factory=dict)
    """With ``windows``: per window of ``tlbfuzz.protocol.windows``, the unique states visited in it
    (0: never reached, so what a held property claims did not include that window)."""


def bfs(
    start: World,
    props: Iterable[str],
    max_depth: int,
    max_states: int = 1_000_000,
    allowed: Callable[[Action], bool] | None = None,
    key: Callable[[World], object] | Collapse | None = None,
    on_level: Callable[[int, int], None] | None = None,
    on_violation: Callable[[list[Action], Violation], bool] | None = None,
    windows: bool = False,
) -> SearchResult:
    """Breadth-first search from ``start`` for a state breaking one of ``props``: the first
    found is at the least depth. ``allowed`` restricts the actions tried; ``key`` maps a world
    to what the visited set stores (default: its snapshot, collapsed: ``Collapse()``;
    ``Collapse(symmetric=True)`` for symmetry reduction);
    ``on_level(depth, states)`` is called as each level is finished (for a progress line).

    With ``on_violation``, the search goes on past a violation: the callback gets the shortest
    schedule of each property the first time one breaks (so every property's own minimum, not
    only the overall one) and returns whether to keep searching. Violating states are expanded
    too, since the shortest way to break one property may pass through breaking another.
    If the callback stops the search, the result carries that last violation; if the search
    ends otherwise, its schedule and violation are None (the callback has had them all).

    With ``windows``, every unique state visited is checked against the reachability windows
    (``tlbfuzz.protocol.windows``) and the result counts the states in each.
    """
    search = Levels(start, props, allowed, key, on_violation, windows)
    while search.depth < max_depth:
        r = search.next_level(max_states)
        if r is not None:
            return r
        if on_level is not None:
            on_level(search.depth, search.states)
    return search.result()


class Levels:
    """A breadth-first search run one level at a time: ``bfs`` runs one to a depth, and
    ``tlbfuzz.fuzz.narrow`` runs several side by side, the smallest level due first (its
    ``frontier``), without searching a level twice. The arguments are ``bfs``'s."""

    def __init__(
        self,
        start: World,
        props: Iterable[str],
        allowed: Callable[[Action], bool] | None = None,
        key: Callable[[World], object] | Collapse | None = None,
        on_violation: Callable[[list[Action], Violation], bool] | None = None,
        windows: bool = False,
    ) -> None:
        from tlbfuzz.protocol.windows import WINDOWS, windows_of

        self.props = tuple(props)
        self.allowed = allowed
        self.on_violation = on_violation
        asked = windows_of(start) if windows else ()
        self.counts = dict.fromkeys(asked, 0)
        self.checks = [(name, WINDOWS[name].reached) for name in asked]
        self.reported: set[str] = set()
        self.keys = key if isinstance(key, Collapse) else Collapse() if key is None else _Whole(key)
        k0, memo0 = self.keys.key(start, None)
        self.memos: list[Memo | None] = [memo0]  # what each world's children start from
        self.seen: set[object] = {k0}
        self._visit(start)
        self.parents: dict[int, tuple[int, Action]] = {}
        self.worlds: list[World | None] = [start]
        self.frontier = deque([0])
        self.depth = 0
        """The level the next ``next_level`` expands: every state up to it has been seen."""

    @property
    def states(self) -> int:
        """Unique states seen so far."""
        return len(self.seen)

    def _visit(self, x: World) -> None:
        for name, inside in self.checks:
            if inside(x):
                self.counts[name] += 1

    def result(self) -> SearchResult:
        """No violation (that stopped the search) up to ``depth``; exhausted if nothing is
        left to expand."""
        return SearchResult(
            None, None, self.depth, len(self.seen), True, not self.frontier, reached=self.counts
        )

    def next_level(self, max_states: int) -> SearchResult | None:
        """Expand every state at ``depth``; None if the next level has states to expand, else
        the search's end: a violation that stops it (none, or the callback said stop),
        ``max_states`` unique states (not complete), or nothing left (exhausted, at the
        depth of the last level that had states)."""
        props, allowed, on_violation = self.props, self.allowed, self.on_violation
        keys, seen, worlds, memos = self.keys, self.seen, self.worlds, self.memos
        parents, frontier, visit = self.parents, self.frontier, self._visit
        depth = self.depth
        level = len(frontier)
        for _ in range(level):
            i = frontier.popleft()
            w = worlds[i]
            assert w is not None
            parent = memos[i]
            for a in w.enabled_actions():
                if allowed is not None and not allowed(a):
                    continue
                x = w.copy()
                x.apply_enabled(a)
                k, memo = keys.key(x, parent)
                if k in seen:
                    continue
                seen.add(k)
                worlds.append(x)
                memos.append(memo)
                index = len(worlds) - 1
                parents[index] = (i, a)
                visit(x)
                found = x.violations(props)
                if found and on_violation is None:
                    path = _path(parents, index)
                    return SearchResult(
                        path, found[0], depth + 1, len(seen), True, reached=self.counts
                    )
                for v in found:
                    if v.prop in self.reported:
                        continue
                    self.reported.add(v.prop)
                    assert on_violation is not None
                    path = _path(parents, index)
                    if not on_violation(path, v):
                        return SearchResult(
                            path, v, depth + 1, len(seen), True, reached=self.counts
                        )
                if len(seen) >= max_states:
                    return SearchResult(None, None, depth, len(seen), False, reached=self.counts)
                frontier.append(index)
            worlds[i] = None  # free the explored level as we go
            memos[i] = None
        if not frontier:
            return self.result()  # exhausted: the deepest level is ``depth``
        self.depth = depth + 1
        return None


Memo = list[list[int]]
"""What ``Collapse`` keeps of a world for its children: per renaming of the CPUs (one without
symmetry), the numbers of the renamed records and of the renamed rest, in snapshot order."""


class Collapse:
    """The visited set's key of a world, collapsed (Spin's COLLAPSE compression, Holzmann,
    "State compression in SPIN", 1997): each CPU's and each mm's snapshot, and the snapshot of
    the rest of the world, is numbered once in a table of the search, and a state is the tuple of
    its numbers. Equal keys are equal snapshots (``World.snapshot()``), so the search visits
    exactly the states it visited with whole snapshots as keys; a state costs a tuple of a few
    ints in the visited set instead of every TLB entry and PTE.

    Copy-on-write makes it incremental: a step takes out of its world's ``Shared`` lists only
    the records it touches (``tlbfuzz.protocol.state.Shared.owned``), so every other CPU and mm
    is its parent's, number and all, and is neither copied nor snapshotted again.

    ``symmetric``: states equal up to renaming CPUs get one key, as with
    ``symmetric_fingerprint``, but exactly: per renaming, the numbers of the renamed records
    (``permuted_snapshot``'s renaming, record by record), and the key is the least of those
    tuples. Numbering is one-to-one, so two states share the key only if one is a renaming of
    the other; ``symmetric_fingerprint`` keeps a hash, at a small risk of a collision."""

    def __init__(self, symmetric: bool = False) -> None:
        self.ids: dict[object, int] = {}
        self.symmetric = symmetric
        self._perms: list[tuple[int, ...]] | None = None

    def _number(self, snap: object) -> int:
        n = self.ids.get(snap)
        if n is None:
            n = self.ids[snap] = len(self.ids)
        return n

    def key(self, w: World, parent: Memo | None) -> tuple[tuple[int, ...], Memo]:
        """``w``'s key, and its memo for its children; ``parent``: the memo of the world ``w``
        was copied from before it took a step (None: number every record)."""
        perms = self._perms
        if perms is None:
            n = len(w.cpus) if self.symmetric else 1
            perms = self._perms = list(itertools.permutations(range(n)))
        memo: Memo = []
        for p, perm in enumerate(perms):
            renaming = p > 0  # the first is the identity
            if parent is not None:
                out = list(parent[p])
            else:
                out = [0] * (sum(len(getattr(w, name)) for name in w.parts) + 1)
            j = 0
            for name in w.parts:
                records = getattr(w, name)
                cpu_order = renaming and name == "cpus"
                owned = records.owned if parent is not None else -1
                if owned == -1:
                    owned = (1 << len(records)) - 1
                while owned:  # the records this step took: numbered again
                    low = owned & -owned
                    i = low.bit_length() - 1
                    owned ^= low
                    r = records.peek(i)
                    snap = r.snapshot()
                    if renaming:
                        snap = renamed(snap, r.perms, perm)
                    out[j + (perm[i] if cpu_order else i)] = self._number(snap)
                j += len(records)
            rest = w.rest()
            if renaming:
                rest = _renamed_rest(w, rest, perm)
            out[j] = self._number(rest)
            memo.append(out)
        key = tuple(memo[0]) if len(memo) == 1 else min(tuple(v) for v in memo)
        return key, memo


class _Whole:
    """A key of whole worlds (``bfs(key=f)``: ``symmetric_fingerprint``, a snapshot) in the
    shape of ``Collapse.key``, with nothing kept for the children."""

    def __init__(self, of: Callable[[World], object]) -> None:
        self.of = of

    def key(self, w: World, parent: Memo | None) -> tuple[object, Memo]:
        return self.of(w), _NO_MEMO


_NO_MEMO: Memo = []


def _renamed_rest(w: World, rest: tuple[Any, ...], perm: tuple[int, ...]) -> tuple[Any, ...]:
    """``w.rest()`` with CPU ``i`` renamed ``perm[i]`` in every field that names CPUs."""
    out = list(rest)
    for at, fn in w.rest_perms:
        out[at] = fn(out[at], perm)
    return tuple(out)


def _path(parents: dict[int, tuple[int, Action]], index: int) -> list[Action]:
    out = []
    while index in parents:
        index, a = parents[index]
        out.append(a)
    out.reverse()
    return out
