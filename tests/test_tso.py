"""x86-TSO in the kernel model (issue 11): the store buffer of ``is_lazy``, the fences of locked
and serialising instructions, and the one barrier tlb.c documents for the lazy-TLB handshake.

The barrier: switch_mm_irqs_off(), a lazy CPU back on the mm it kept, stores ``is_lazy =
false`` and then, after ``smp_mb()``, reads ``mm->context.tlb_gen`` ("The barrier synchronizes
with the tlb_gen increment in the TLB shootdown code"). The flusher increments tlb_gen (a locked
RMW) and then reads the CPU's ``is_lazy`` to decide whether to IPI it. That is the store-buffer
pattern: without the barrier, x86 lets both reads see the old values.
"""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import pytest

from tests.schedules import (
    LAZY_NO_MB,
    PLAIN_INC,
    SWITCH_NO_MB,
    Before83b0177a,
    NoSmpMb,
    PlainIncMmTlbGen,
)
from tlbfuzz.fuzz.changes import changes_of, instrument
from tlbfuzz.fuzz.cli import main
from tlbfuzz.protocol import (
    DEFAULT_PROPERTIES,
    TSO_ONLY,
    VARIANTS,
    Action,
    Budget,
    Config,
    Site,
    Variant,
    Violation,
    World,
    parse,
)
from tlbfuzz.protocol.search import bfs, first_violation

ROOT = Path(__file__).resolve().parent.parent


def _no_mb(base: str) -> Variant:
    return NoSmpMb(**{**attrs.asdict(VARIANTS[base], recurse=False), "name": base + "-no-mb"})


def _config(model: str, switch: int = 2, mms: int = 1) -> Config:
    """cpu0 runs one madvise; cpu1 may switch twice (to a kernel thread, lazily, and back),
    one mm with one anonymous page: the smallest space the handshake lives in."""
    return Config(
        mms=mms,
        file_pages=0,
        budget=Budget.only(),
        cpu_budget=((0, Budget.only(madvise=1)), (1, Budget.only(switch=switch))),
        reuse=False,
        memory_model=model,
    )


def test_without_the_smp_mb_the_lazy_cpu_keeps_a_freed_page_under_tso() -> None:
    start = World.initial(_no_mb("linux-current"), _config("tso"))
    hit = first_violation(start, [parse(s) for s in LAZY_NO_MB], ["no_use_after_free"])
    assert hit is not None
    assert hit[0] == len(LAZY_NO_MB)


def _buffer(w: World, cpu: int) -> list[tuple[object, int]]:
    return [(s.loc, s.value) for s in w.cpus[cpu].store_buffer]


def test_with_the_smp_mb_the_flusher_sees_the_cpu_and_waits_for_it() -> None:
    """The kernel's own order on the same schedule: the barrier drains ``is_lazy = false``
    before the read, so the flusher IPIs cpu1 and cannot free the page until cpu1 has
    flushed (step 12, ``tlb_finish_mmu``, is not enabled: cpu0 waits in csd_lock_wait)."""
    w = World.initial(VARIANTS["linux-current"], _config("tso"))
    for line in LAZY_NO_MB[:7]:
        w.apply(parse(line))
    assert _buffer(w, 1) == [("is_lazy", 0)]  # switch_mm_irqs_off's plain store waits
    w.apply(parse(LAZY_NO_MB[7]))
    assert _buffer(w, 1) == []  # smp_mb() drained it
    assert not w.cpus[1].is_lazy
    for line in LAZY_NO_MB[8:11]:
        w.apply(parse(line))
    assert w.cpus[1].ipi_pending
    assert w.is_blocked(0)  # csd_lock_wait(): until cpu1 has flushed
    assert not w.is_enabled(parse(LAZY_NO_MB[11]))


def test_the_schedule_needs_the_store_buffer() -> None:
    """Under SC there is no drain to take: the same steps cannot even be replayed."""
    w = World.initial(_no_mb("linux-current"), _config("sc"))
    for line in LAZY_NO_MB[:5]:
        w.apply(parse(line))
    assert w.cpus[1].is_lazy  # stored at once
    assert not w.is_enabled(parse("cpu1 store_buffer_drain"))


# (states of the moved kernel under SC, of the kernel under TSO): the README's table
@pytest.mark.parametrize(
    ("base", "sc_states", "tso_states"),
    [("linux-5.2", 1472, 2282), ("linux-current", 2060, 3062)],
)
def test_the_barrier_is_needed_under_tso_and_only_there(
    base: str, sc_states: int, tso_states: int
) -> None:
    """For each kernel, in the whole space of the handshake: with the barrier removed, TSO
    breaks no_use_after_free in 14 steps at the least (BFS), SC holds every default property;
    the kernel itself holds under TSO. The state counts are the README's."""
    moved = _no_mb(base)
    tso = bfs(World.initial(moved, _config("tso")), ["no_use_after_free"], 40)
    assert tso.schedule is not None
    assert len(tso.schedule) == len(LAZY_NO_MB)
    sc = bfs(World.initial(moved, _config("sc")), DEFAULT_PROPERTIES, 80)
    assert sc.violation is None
    assert sc.exhausted
    assert sc.states == sc_states
    kernel = bfs(World.initial(VARIANTS[base], _config("tso")), DEFAULT_PROPERTIES, 80)
    assert kernel.violation is None
    assert kernel.exhausted
    assert kernel.states == tso_states


def _broken(variant: Variant, config: Config) -> set[str]:
    """Every default property broken anywhere in the whole reachable space."""
    found: set[str] = set()

    def keep(_schedule: list[Action], v: Violation) -> bool:
        found.add(v.prop)
        return True

    r = bfs(World.initial(variant, config), DEFAULT_PROPERTIES, 80, on_violation=keep)
    assert r.exhausted
    return found


# linux-5.2's 2019 switch window, which SC has already (README: the switch window)
SWITCH_WINDOW_5_2 = {"nmi_uaccess_safety", "no_stale_access_after_return", "no_use_after_free"}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("base", "broken"), [("linux-5.2", SWITCH_WINDOW_5_2), ("linux-current", set())]
)
def test_tso_breaks_nothing_sc_does_not_with_a_switch_to_another_mm(
    base: str, broken: set[str]
) -> None:
    """A context switch to the other mm racing a flush (cpu1 switch=1, two mms): in the whole
    space the same properties break under TSO as under SC: none on linux-current, and on
    linux-5.2 those of the 2019 switch window."""
    tso = _config("tso", switch=1, mms=2)
    assert _broken(VARIANTS[base], tso) == broken
    if not broken:  # the README's figure
        assert bfs(World.initial(VARIANTS[base], tso), DEFAULT_PROPERTIES, 80).states == 11878
    assert _broken(VARIANTS[base], attrs.evolve(tso, memory_model="sc")) == broken


def test_explore_saves_a_tso_schedule_that_replays_under_tso(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--memory-model tso`` reaches the model, the corpus file records it, and replay uses
    it (the same steps under SC could not even be taken: there is nothing to drain)."""
    example = str(ROOT / "examples" / "lazy_no_smp_mb.py")
    argv = ["explore", "-v", f"{example}:VARIANT", "--memory-model", "tso", "--mms", "1"]
    argv += ["--file-pages", "0", "--budget", "cpu0:madvise=1", "--budget", "cpu1:switch=2"]
    argv += ["-p", "no_use_after_free", "--save", "--corpus", str(tmp_path)]
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert "14 steps" in out
    assert "x86-TSO" in out
    assert "store buffer: is_lazy = false" in out
    (saved,) = tmp_path.rglob("*.json")
    data = json.loads(saved.read_text())
    assert data["config"]["memory_model"] == "tso"
    assert main(["replay", str(saved), "--variants", example]) == 0
    data["config"]["memory_model"] = "sc"
    saved.write_text(json.dumps(data))
    assert main(["replay", str(saved), "--variants", example]) != 0


HARDWARE_NOISE = frozenset({"nmi", "tlb_evict", "pwc_evict", "enter_lazy_tlb"})


def _switching(model: str) -> Config:
    """cpu0 runs one madvise; cpu1 switches to mm B and back to A (two mms, one page each)."""
    return _config(model, switch=2, mms=2)


def test_without_83b0177a_the_switching_cpu_keeps_a_freed_page_under_tso_only() -> None:
    """83b0177a6c48 ("x86/mm: Fix SMP ordering in switch_mm_irqs_off()", 2025): with the
    mm_cpumask bit already set (lazily kept since 209954cbc7d0), no locked cpumask_set_cpu()
    orders ``loaded_mm = LOADED_MM_SWITCHING`` before the ``tlb_gen`` read, so the fix added
    ``else smp_mb();``. Without it, under TSO, the flusher reads the old loaded_mm and skips the
    CPU, which read the old tlb_gen: a use-after-free in 20 steps at the least (BFS, NMIs,
    evictions and kernel threads left out). Under SC it holds; with the fix it holds under TSO."""
    moved = Before83b0177a(
        **{**attrs.asdict(VARIANTS["linux-current"], recurse=False), "name": "before-83b0177a"}
    )

    def allowed(a: Action) -> bool:
        return a.op not in HARDWARE_NOISE

    tso = bfs(World.initial(moved, _switching("tso")), ["no_use_after_free"], 40, allowed=allowed)
    assert tso.schedule is not None
    assert len(tso.schedule) == len(SWITCH_NO_MB) == 20
    sc = bfs(World.initial(moved, _switching("sc")), DEFAULT_PROPERTIES, 80, allowed=allowed)
    assert sc.violation is None
    assert sc.exhausted
    fixed = World.initial(VARIANTS["linux-current"], _switching("tso"))
    kernel = bfs(fixed, DEFAULT_PROPERTIES, 80, allowed=allowed)
    assert kernel.violation is None
    assert kernel.exhausted


def test_inc_mm_tlb_gen_must_be_locked_under_tso_and_only_there() -> None:
    """inc_mm_tlb_gen() "also serves as a full barrier that synchronizes with switch_mm()":
    made a plain increment, TSO breaks the lazy handshake from the flusher's side, in 14 steps
    at the least (BFS); SC holds the whole space, where the increment is one atomic step."""
    moved = PlainIncMmTlbGen(
        **{**attrs.asdict(VARIANTS["linux-current"], recurse=False), "name": "plain-inc"}
    )
    start = World.initial(moved, _config("tso"))
    hit = first_violation(start, [parse(s) for s in PLAIN_INC], ["no_use_after_free"])
    assert hit is not None and hit[0] == len(PLAIN_INC)
    assert (
        World.initial(VARIANTS["linux-current"], _config("tso"))
        .run(PLAIN_INC[:5])
        .cpus[0]
        .store_buffer
        == ()
    )  # the kernel's lock xadd leaves nothing buffered
    shortest = bfs(start, ["no_use_after_free"], 40)
    assert shortest.schedule is not None and len(shortest.schedule) == len(PLAIN_INC)
    sc = bfs(World.initial(moved, _config("sc")), DEFAULT_PROPERTIES, 80)
    assert sc.violation is None and sc.exhausted


def test_csd_unlock_waits_in_the_receivers_store_buffer_until_a_drain_or_iret() -> None:
    """csd_unlock() is smp_store_release(), a plain MOV on x86: until cpu1's buffer drains it,
    cpu0 still sees its csd locked (csd_lock() of the next call would spin); the handler's
    IRET drains it at the latest."""
    config = attrs.evolve(_config("tso"), cpu_budget=((0, Budget.only(ipi=1)),))
    w = World.initial(VARIANTS["linux-current"], config)
    w.run(
        [
            "cpu1 user_read va=0x1000",
            "cpu0 smp_call_function_single target=cpu1 va=0x1000",
            "cpu1 flush_smp_call_function_queue",
            "cpu1 csd_unlock",  # an asynchronous csd: unlocked before its func runs
        ]
    )
    ((loc, value),) = w.cpus[1].store_buffer
    assert isinstance(loc, tuple) and loc[0] == "csd" and value == 0
    assert w.csds[loc[1]].locked  # memory, as cpu0 reads it
    drained = w.copy().run(["cpu1 store_buffer_drain"])
    assert not drained.csds[loc[1]].locked
    w.run(["cpu1 read_user_func"])  # the last item: IRET
    assert w.cpus[1].store_buffer == ()
    assert not w.csds[loc[1]].locked


@attrs.frozen
class FencedCsdUnlock(Variant):
    def csd_unlock_fences(self, at: Site) -> bool:
        return True


@attrs.frozen
class SetsCpumaskAlways(Variant):
    def switch_sets_cpumask_only_if_clear(self, at: Site) -> bool:
        return False


OTHERWISE: dict[str, type[Variant]] = {
    "switch_sets_cpumask_only_if_clear": SetsCpumaskAlways,
    "smp_mb_if_cpumask_already_set": Before83b0177a,
    "smp_mb_before_lazy_tlb_gen_read": NoSmpMb,
    "inc_mm_tlb_gen_is_locked": PlainIncMmTlbGen,
    "csd_unlock_fences": FencedCsdUnlock,
}


def test_every_decision_listed_as_tso_only_is_answered_otherwise_here() -> None:
    assert set(OTHERWISE) == TSO_ONLY


@pytest.mark.parametrize("name", sorted(TSO_ONLY))
def test_a_tso_only_decision_answered_otherwise_under_sc_leaves_the_search_as_it_was(
    name: str,
) -> None:
    """What ``TSO_ONLY`` claims, on the handshake's two spaces under sc (one madvise against
    two switches: to a kernel thread and back, lazily; and to the other mm and back, NMIs and
    evictions left out): the moved kernel answers the decision otherwise, and its search
    still visits as many states as the kernel's, with the same count in every reachability
    window, breaking nothing. (That three of them matter under tso, the tests above show:
    each has its race.)"""
    kernel = VARIANTS["linux-current"]
    moved = OTHERWISE[name](**{**attrs.asdict(kernel, recurse=False), "name": "moved"})
    changes = changes_of(moved)
    assert changes is not None and set(changes.decisions) == {name}
    probe, tally = instrument(moved, changes)
    answered = 0
    for shape, allowed in ((_config, None), (_switching, _quiet)):
        args = (DEFAULT_PROPERTIES, 80)
        theirs = bfs(World.initial(kernel, shape("sc")), *args, allowed=allowed, windows=True)
        tally.take()
        mine = bfs(World.initial(probe, shape("sc")), *args, allowed=allowed, windows=True)
        _, otherwise = tally.take().get(name, [0, 0])
        assert mine.exhausted and theirs.exhausted
        assert (mine.violation, theirs.violation) == (None, None)
        assert (mine.states, mine.reached) == (theirs.states, theirs.reached)
        answered += otherwise
    assert answered > 0  # the spaces ask it, and the moved kernel answers otherwise


def _quiet(a: Action) -> bool:
    return a.op not in HARDWARE_NOISE
