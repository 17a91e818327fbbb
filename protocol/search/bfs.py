"""Breadth-first search over the model: the shortest schedule breaking a property, or a proof
that none exists within the bounds (``exhausted``: every reachable state was explored).

Pure and deterministic like the rest of ``protocol/``: the same inputs give the same answers.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

import attrs

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
    key: Callable[[World], object] | None = None,
    on_level: Callable[[int, int], None] | None = None,
    on_violation: Callable[[list[Action], Violation], bool] | None = None,
    windows: bool = False,
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

    With ``windows``, every unique state visited is checked against the reachability windows
    (``tlbfuzz.protocol.windows``) and the result counts the states in each.
    """
    from tlbfuzz.protocol.windows import WINDOWS, windows_of

    props = tuple(props)
    asked = windows_of(start) if windows else ()
    counts = dict.fromkeys(asked, 0)
    checks = [(name, WINDOWS[name].reached) for name in asked]

    def visit(x: World) -> None:
        for name, inside in checks:
            if inside(x):
                counts[name] += 1

    reported: set[str] = set()
    key = key or (lambda w: w.snapshot())
    seen = {key(start)}
    visit(start)
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
            visit(x)
            found = x.violations(props)
            if found and on_violation is None:
                path = _path(parents, index)
                return SearchResult(path, found[0], depth + 1, len(seen), True, reached=counts)
            for v in found:
                if v.prop in reported:
                    continue
                reported.add(v.prop)
                assert on_violation is not None
                path = _path(parents, index)
                if not on_violation(path, v):
                    return SearchResult(path, v, depth + 1, len(seen), True, reached=counts)
            if len(seen) >= max_states:
                return SearchResult(None, None, depth, len(seen), False, reached=counts)
            frontier.append(index)
            next_level_end = index + 1
        worlds[i] = None  # type: ignore[call-overload]  # free the explored level as we go
    exhausted = not frontier and depth < max_depth
    return SearchResult(
        None, None, min(depth, max_depth), len(seen), True, exhausted, reached=counts
    )


def _path(parents: dict[int, tuple[int, Action]], index: int) -> list[Action]:
    out = []
    while index in parents:
        index, a = parents[index]
        out.append(a)
    out.reverse()
    return out
