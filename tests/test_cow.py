"""Copy-on-write worlds and the explorer's collapsed key (``protocol.state.Shared``,
``protocol.search.bfs.Collapse``): a step of a copy never changes the world it was copied from,
the key built from the parent's numbers equals the key built from scratch, and a search with
collapsed keys visits exactly the states a search with whole snapshots visits."""

from __future__ import annotations

import random

import attrs
import pytest

from tests.test_explore import config
from tlbfuzz.protocol import DEFAULT_PROPERTIES, VARIANTS, Budget, Config, World
from tlbfuzz.protocol.paths import budget_kinds
from tlbfuzz.protocol.search import bfs, symmetric_fingerprint
from tlbfuzz.protocol.search.bfs import Collapse


def every_kind(variant: str, cpus: int, memory_model: str) -> Config:
    """A budget of one start of every kernel path of ``variant`` on every CPU."""
    kinds = budget_kinds(VARIANTS[variant].paths())
    return Config(
        cpus=cpus, budget=Budget.only(**{k.name: 1 for k in kinds}), memory_model=memory_model
    )


CASES = [
    (variant, cpus, model)
    for variant in sorted(VARIANTS)
    for cpus, model in ((2, "sc"), (3, "sc"), (2, "tso"))
]


@pytest.mark.parametrize(("variant", "cpus", "model"), CASES)
def test_a_step_of_a_copy_leaves_its_original_and_the_collapsed_key_is_exact(
    variant: str, cpus: int, model: str
) -> None:
    """Random walks over every kernel path: at each step the world is copied, the copy takes
    the step, and the original's snapshot must be what it was (every record a step changes was
    taken out of the ``Shared`` lists first). The copy's key from its parent's numbers must be
    the key numbered from scratch, and keys are equal exactly when snapshots are."""
    rng = random.Random(f"{variant}/{cpus}/{model}")
    start = World.initial(VARIANTS[variant], every_kind(variant, cpus, model))
    collapse, symmetric = Collapse(), Collapse(symmetric=True)
    by_key: dict[tuple[int, ...], object] = {}
    for _ in range(5):
        w = start.copy()
        _, memo = collapse.key(w, None)
        _, sym_memo = symmetric.key(w, None)
        for _ in range(30):
            acts = w.enabled_actions()
            if not acts:
                break
            before = w.snapshot()
            x = w.copy()
            x.apply_enabled(acts[rng.randrange(len(acts))])
            assert w.snapshot() == before
            key, memo = collapse.key(x, memo)
            assert key == collapse.key(x, None)[0]
            sym_key, sym_memo = symmetric.key(x, sym_memo)
            assert sym_key == symmetric.key(x, None)[0]
            snap = x.snapshot()
            assert by_key.setdefault(key, snap) == snap
            w = x
    assert len(set(by_key.values())) == len(by_key)


def test_a_record_taken_from_a_copy_is_its_own() -> None:
    """The hand-written case: changing a CPU and an mm taken out of a copy (indexing, or
    iterating) leaves the original; peeking does not take ownership."""
    w = World.initial(VARIANTS["linux-5.2"], config(madvise=1))
    x = w.copy()
    assert x.cpus.peek(0) is w.cpus.peek(0)
    x.cpus[0].is_lazy = True
    x.mms[1].tlb_gen = 7
    for c in x.cpus:
        c.tlb[(0, 0x1000)] = None  # type: ignore[assignment]
    assert not w.cpus[0].is_lazy
    assert w.mms[1].tlb_gen == 0
    assert all(not c.tlb for c in w.cpus)
    assert x.cpus.owned == -1
    assert x.mms.owned == 1 << 1


@pytest.mark.parametrize(
    ("variant", "budget"),
    [
        ("linux-5.2", {"madvise": 1}),
        ("rfc-async", {"munmap": 1}),
        ("linux-current", {"mprotect": 1}),
    ],
)
def test_collapsed_keys_visit_the_states_whole_snapshots_visit(
    variant: str, budget: dict[str, int]
) -> None:
    start = World.initial(VARIANTS[variant], config(**budget))
    collapsed = bfs(start, DEFAULT_PROPERTIES, 8, on_violation=lambda _s, _v: True)
    whole = bfs(
        start, DEFAULT_PROPERTIES, 8, key=lambda w: w.snapshot(), on_violation=lambda _s, _v: True
    )
    assert (collapsed.states, collapsed.depth) == (whole.states, whole.depth)


@pytest.mark.parametrize(("variant", "budget"), [("linux-5.2", {"madvise": 1, "switch": 1})])
def test_the_exact_symmetric_key_visits_the_states_the_hashed_one_visits(
    variant: str, budget: dict[str, int]
) -> None:
    """``Collapse(symmetric=True)`` against ``symmetric_fingerprint`` (a hash of the least
    renamed snapshot): the same states, up to renaming CPUs, on 2 and 3 CPUs."""
    for cpus, depth in ((2, 5), (3, 3)):
        start = World.initial(VARIANTS[variant], attrs.evolve(config(**budget), cpus=cpus))
        exact = bfs(start, DEFAULT_PROPERTIES, depth, key=Collapse(symmetric=True))
        hashed = bfs(start, DEFAULT_PROPERTIES, depth, key=symmetric_fingerprint)
        assert (exact.states, exact.depth) == (hashed.states, hashed.depth)
        assert exact.states < bfs(start, DEFAULT_PROPERTIES, depth).states
