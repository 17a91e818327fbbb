"""What a user's variant changes: found from its class and switches, asked for by the search
(steered to the paths that ask it), and reported next to every held cell."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, cast

import attrs
import jsonschema
import pytest
from hypothesis import given
from hypothesis import settings as hyp_settings

from tests.schedules import (
    ALL_SCHEDULES,
    CONCERNS,
    MECHANISMS,
    SWITCH_WINDOW_5_2,
    TSO_ORDERINGS,
)
from tests.test_mm import _config as _mechanism_config
from tests.test_mm import _key as _mechanism_key
from tlbfuzz.fuzz import runner
from tlbfuzz.fuzz.changes import (
    Otherwise,
    asking_kinds,
    changes_of,
    instrument,
    steered_kinds,
    summary,
    summary_lines,
    toward_kinds,
    whose,
    whose_lines,
)
from tlbfuzz.fuzz.check import assert_holds
from tlbfuzz.fuzz.cli import main
from tlbfuzz.fuzz.machine import Focus, focus, machine_for
from tlbfuzz.fuzz.narrow import Question, search
from tlbfuzz.fuzz.results import Record, judge_changes, merge, schema, unexercised
from tlbfuzz.fuzz.runner import Finding, Held, fuzz_variant
from tlbfuzz.fuzz.user import load_user_variant
from tlbfuzz.protocol import (
    BASE_OF,
    VARIANTS,
    Budget,
    BudgetKind,
    Config,
    Step,
    Variant,
    World,
    parse,
)
from tlbfuzz.protocol import Path as KernelPath
from tlbfuzz.protocol.paths import VA
from tlbfuzz.protocol.search import bfs

if TYPE_CHECKING:
    from collections.abc import Mapping

    from tests.schedules import Concern, Mechanism
    from tlbfuzz.protocol import Site
    from tlbfuzz.protocol.state import FlushTlbInfo, Locals

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


@attrs.frozen
class SameAnswer(Variant):
    """Overrides should_flush_tlb() without changing a single answer."""

    def should_flush_tlb(self, at: Site, w: World, cpu: int, info: FlushTlbInfo) -> bool:
        return super().should_flush_tlb(at, w, cpu, info)


def _current(cls: type[Variant], name: str) -> Variant:
    return cls(**{**attrs.asdict(VARIANTS["linux-current"], recurse=False), "name": name})


COPY_FIRST_REF = f"{EXAMPLES / 'copy_before_flush.py'}:VARIANT"
COPY_FIRST = load_user_variant(EXAMPLES / "copy_before_flush.py", "VARIANT").variant
"""Migration copies the page before the batched flush (a broken patch)."""


def _held(counts: dict[str, list[int]] | None = None, **extra: object) -> Record:
    """A held record of the copy-first variant, with ``counts`` of its change (None: not
    counted), judged as the campaign judges it."""
    ch = changes_of(COPY_FIRST)
    assert ch is not None
    changes = None if counts is None else summary(ch, counts)
    return judge_changes(Record("f.py:V", "no_lost_write", "holds", changes=changes, extra=extra))


def test_a_built_in_variant_has_no_changes() -> None:
    assert all(changes_of(v) is None for v in VARIANTS.values())


def test_an_overridden_method_is_a_change_from_the_variant_it_was_built_from() -> None:
    ch = changes_of(COPY_FIRST)
    assert ch is not None
    assert ch.bases == ("linux-current",)
    assert ch.switches == ()
    assert dict(ch.decisions) == {"migrate_flush_before_copy": ("overridden", "linux-current")}


def test_a_switch_set_otherwise_changes_every_decision_that_reads_it() -> None:
    """Which method reads which switch comes from Variant's source: ``batch_ack`` is read by
    ``unlock_async_csds_first()`` alone, ``clear_cpumask_on_switch`` by five decisions."""
    ch = changes_of(attrs.evolve(VARIANTS["rfc-async"], name="x", batch_ack=True))
    assert ch is not None
    assert ch.bases == ("rfc-async-batch-ack",)  # the nearest: nothing differs from it
    assert dict(ch.decisions) == {}
    ch = changes_of(attrs.evolve(VARIANTS["linux-current"], name="x", batch_ack=True))
    assert ch is not None
    assert (ch.bases, ch.switches) == (("linux-current",), ("batch_ack",))
    assert dict(ch.decisions) == {"unlock_async_csds_first": ("reads batch_ack", "linux-current")}
    ch = changes_of(attrs.evolve(VARIANTS["linux-current"], name="x", clear_cpumask_on_switch=True))
    assert ch is not None
    assert set(ch.decisions) == {
        "switch_steps",
        "switch_clears_prev_cpumask",
        "switch_to_init_mm_clears_cpumask",
        "switch_sets_cpumask_only_if_clear",
        "flush_tlb_func_trims_cpumask",
    }
    assert {why for why, _ in ch.decisions.values()} == {"reads clear_cpumask_on_switch"}


def test_equally_near_bases_each_measure_the_switch_they_set_otherwise() -> None:
    """rfc-async-pointer-info with batch_ack is one switch from rfc-async-pointer-info and
    one from rfc-async-batch-ack: both changes are measured, each against its own base."""
    ch = changes_of(attrs.evolve(VARIANTS["rfc-async-pointer-info"], name="x", batch_ack=True))
    assert ch is not None
    assert set(ch.bases) == {"rfc-async-pointer-info", "rfc-async-batch-ack"}
    assert dict(ch.decisions) == {
        "csd_info_inline": ("reads inline_info", "rfc-async-batch-ack"),
        "unlock_async_csds_first": ("reads batch_ack", "rfc-async-pointer-info"),
    }


def _ptl_never_free(w: World, cpu: int) -> bool:
    return False


@attrs.frozen
class ReclaimNeverTakesThePtl(Variant):
    """Reclaim's first step waits for a PTE lock it never gets: a path that differs from the
    base at its very first step, and only in its guard, so that step never runs."""

    def path_steps(self, path: KernelPath) -> tuple[Step, ...]:
        steps = super().path_steps(path)
        if path.name != "reclaim":
            return steps
        return (attrs.evolve(steps[0], guard=_ptl_never_free), *steps[1:])


def _always(w: World, cpu: int) -> bool:
    return True


@attrs.frozen
class NoIpi(Variant):
    """linux-current's flush with its IPI step always skipped: the first step that differs
    from the base's is one the CPU never runs."""

    def flush_steps(self, path: str) -> tuple[Step, ...]:
        steps = super().flush_steps(path)
        return tuple(attrs.evolve(st, skip=_always) if i == 1 else st for i, st in enumerate(steps))


@attrs.frozen
class NoLazyTlb(Variant):
    """linux-current that never enters lazy TLB mode: its ``paths()`` leaves
    enter_lazy_tlb out, and keeps the switch kind's other paths."""

    def paths(self) -> Mapping[str, KernelPath]:
        return {k: p for k, p in super().paths().items() if k != "enter_lazy_tlb"}


@pytest.mark.parametrize(
    "variant",
    [
        _current(NoLazyTlb, "no-lazy"),
        attrs.evolve(VARIANTS["linux-5.2"], name="5.2-concurrent", concurrent_flush=True),
        attrs.evolve(
            VARIANTS["linux-current"], name="current-5.2-switch", clear_cpumask_on_switch=True
        ),
        COPY_FIRST,
        _current(ReclaimNeverTakesThePtl, "reclaim-waits"),
        _current(NoIpi, "no-ipi"),
    ],
    ids=lambda v: v.name,
)
def test_an_instrumented_variant_walks_exactly_as_the_variant(variant: Variant) -> None:
    """Counting changes nothing: the same choices give the same states, step by step, also
    where the change reorders steps that several paths share (the flush's), where the first
    step that differs waits at its guard (the counting one), where it is skipped (the
    counting skip), and where the patch leaves a path out (the counting start guard)."""
    ch = changes_of(variant)
    assert ch is not None
    counted, tally = instrument(variant, ch)
    every = Config(budget=Budget(rest=1))  # each CPU may start one path of every kind
    for seed in range(6):
        plain, mine = World.initial(variant, every), World.initial(counted, every)
        for i in range(120):
            acts = plain.enabled_actions()
            assert [str(a) for a in acts] == [str(a) for a in mine.enabled_actions()]
            if not acts:
                break
            a = acts[(i * 7919 + seed * 104729) % len(acts)]
            plain.apply(a)
            mine.apply(parse(str(a)))
            assert plain.snapshot() == mine.snapshot()
    assert any(reached for reached, _ in tally.take().values())


def test_a_migration_patch_is_steered_to_migrations_and_a_flush_patch_is_not() -> None:
    ch = changes_of(COPY_FIRST)
    assert ch is not None
    assert steered_kinds(COPY_FIRST, asking_kinds(COPY_FIRST, ch)) == ("migrate",)
    same = _current(SameAnswer, "same")
    ch = changes_of(same)
    assert ch is not None
    reach = asking_kinds(same, ch)
    assert "madvise" in reach["should_flush_tlb"].alone
    assert steered_kinds(same, reach) == ()  # the drawn paths flush anyway


def test_a_decision_only_a_reclaim_batch_makes_asked_is_steered_to_reclaim() -> None:
    """flush_tlb_batched_pending() is asked only when ``mm->tlb_flush_batched`` is set, which
    only a batched flush (reclaim, mainline migration) sets: no kind asks it alone."""
    v = load_user_variant(EXAMPLES / "before_3ea277194daa.py", "VARIANT").variant
    ch = changes_of(v)
    assert ch is not None
    reach = asking_kinds(v, ch)["flush_tlb_batched_pending"]
    assert not reach.alone
    assert "reclaim" in reach.helped
    assert "reclaim" in steered_kinds(v, {"flush_tlb_batched_pending": reach})


def test_a_decision_only_two_quiet_kinds_together_ask_is_steered_to_both() -> None:
    """pte_accessible() is asked only when reclaim (or migration) meets a PTE that NUMA
    hinting made PROT_NONE while its flush is pending: no kind reaches it alone or next to
    the drawn ones, so the probe searches pairs of the quiet kinds."""
    (m,) = [m for m in MECHANISMS if m.key == "pte-accessible-while-flush-pending"]
    ch = changes_of(m.moved)
    assert ch is not None
    reach = asking_kinds(m.moved, ch)["pte_accessible_checks_flush_pending"]
    assert not reach.alone
    assert {"numa", "reclaim", "migrate"} <= reach.helped
    steer = steered_kinds(m.moved, {"pte_accessible_checks_flush_pending": reach})
    assert {"numa", "reclaim"} <= set(steer)


def test_a_khugepaged_patch_is_steered_to_collapse_only_in_a_model_where_it_can_start() -> None:
    """khugepaged retracts only a page table that maps no anonymous page
    (``BudgetKind.shape``): with ``--mms 1 --anon-pages 0`` a collapse can start, so a patch
    to its flush gets collapses; in the default model none could start."""
    v = load_user_variant(EXAMPLES / "before_3ef938c35035.py", "VARIANT").variant
    ch = changes_of(v)
    assert ch is not None
    reach = asking_kinds(v, ch)
    assert "collapse" in reach["flush_tlb_range_frees_tables"].alone
    assert "collapse" not in steered_kinds(v, reach)
    assert "collapse" in steered_kinds(v, reach, {"mms": 1, "anon_pages": 0})


def test_the_focus_is_steered_toward_the_paths_drawn_for_the_patch_alone() -> None:
    reclaim = load_user_variant(EXAMPLES / "before_3ea277194daa.py", "VARIANT").variant
    ch = changes_of(reclaim)
    assert ch is not None
    steer = steered_kinds(reclaim, asking_kinds(reclaim, ch))
    assert "reclaim" in toward_kinds(reclaim, steer)
    same = _current(SameAnswer, "same")
    ch = changes_of(same)
    assert ch is not None
    assert toward_kinds(same, steered_kinds(same, asking_kinds(same, ch))) == frozenset()


def test_a_patch_run_hands_its_steering_to_either_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """``fuzz_variant`` gives the engine the kinds drawn for the patch alone (``steer``, with
    the run's shape) and the focus kinds to steer to (``toward``); the rule machine keeps
    them for its focus draw."""
    asked: dict[str, tuple[tuple[object, ...], dict[str, object]]] = {}

    def engine(name: str) -> object:
        def run(*args: object, **kwargs: object) -> tuple[None, int, int]:
            asked[name] = (args, kwargs)
            return None, 0, 0

        return run

    monkeypatch.setattr(runner, "run_swarm", engine("swarm"))
    monkeypatch.setattr(runner, "run_machine", engine("machine"))
    reclaim = load_user_variant(EXAMPLES / "before_3ea277194daa.py", "VARIANT").variant
    collapse = load_user_variant(EXAMPLES / "before_3ef938c35035.py", "VARIANT").variant
    for name in ("swarm", "machine"):
        props = ["no_write_after_write_protect"]
        fuzz_variant(reclaim, props, "ci", max_examples=1, engine=name, narrow_states=0)
        args, kwargs = asked[name]
        assert "reclaim" in cast("tuple[str, ...]", args[9])
        assert "reclaim" in cast("frozenset[str]", kwargs["toward"])
        shape = {"mms": 1, "anon_pages": 0}
        props = ["no_walk_of_freed_page_table"]
        fuzz_variant(
            collapse, props, "ci", max_examples=1, shape=shape, engine=name, narrow_states=0
        )
        args, kwargs = asked[name]
        assert "collapse" in cast("tuple[str, ...]", args[9])
        assert "collapse" in cast("frozenset[str]", kwargs["toward"])
    toward = frozenset({"reclaim"})
    assert machine_for(reclaim, ("no_write_after_write_protect",), None, toward).toward == toward


def _share_with(variant: Variant, config: Config, kind: str, toward: frozenset[str]) -> float:
    """The share of 400 focus draws (derandomized) in which some CPU may start ``kind``."""
    seen: list[bool] = []

    @hyp_settings(max_examples=400, derandomize=True, database=None, deadline=None)
    @given(focus(variant, config, toward))
    def draw(f: Focus) -> None:
        seen.append(any(kind in k for k in f.kinds))

    draw()
    return sum(seen) / len(seen)


def test_a_patchs_focus_gives_a_cpu_a_path_that_reaches_its_change_in_half_the_draws() -> None:
    """``machine.focus``: the plain draw gives some CPU a reclaim in about a fifth of the
    plans; steered to it, one CPU gets it instead of its own paths in half the draws
    besides."""
    v = load_user_variant(EXAMPLES / "before_3ea277194daa.py", "VARIANT").variant
    config = Config(cpus=2, budget=Budget.only(reclaim=1, mprotect=1, madvise=1, munmap=1))
    plain = _share_with(v, config, "reclaim", frozenset())
    steered = _share_with(v, config, "reclaim", frozenset({"reclaim"}))
    assert plain < 0.3
    assert steered > 0.45
    assert steered - plain > 0.25


def _migrate_once(v: Variant) -> tuple[World, str]:
    """cpu0, the only CPU, starts a migration of 0x1000 and runs it up to its copy (not
    taken): the world, and the copy's op."""
    w = World.initial(v, Config(cpus=1, budget=Budget.only(migrate=1)))  # no IPI to wait for
    w.apply(parse("cpu0 try_to_migrate_one mm=A va=0x1000"))
    steps = {st.name for st in w.kernel.steps["migrate"]}
    while True:
        (a,) = [a for a in w.enabled_actions() if a.cpu == 0 and a.op in steps and not a.args]
        if a.op == "migrate_folio_move__copy":
            return w, a.op
        w.apply(a)


def test_a_moved_step_counts_reached_as_its_path_starts_and_otherwise_as_the_cpu_gets_to_it() -> (
    None
):
    """A decision that shapes steps is asked once, when the model is built; it is reached
    when a path it shaped starts, and answered otherwise when the CPU gets to the step it
    moved (migration's copy, now before the flush): as the step before it ends, where
    ``World._run_step`` decides what runs next, not when the copy runs (a differing step
    that is skipped never runs, and must count too)."""
    ch = changes_of(COPY_FIRST)
    assert ch is not None
    v, tally = instrument(COPY_FIRST, ch)
    w = World.initial(v, Config(cpus=1, budget=Budget.only(migrate=1)))
    w.apply(parse("cpu0 try_to_migrate_one mm=A va=0x1000"))
    steps = {st.name for st in w.kernel.steps["migrate"]}
    counts = [tally.take()["migrate_flush_before_copy"]]
    while True:
        (a,) = [a for a in w.enabled_actions() if a.cpu == 0 and a.op in steps and not a.args]
        if a.op == "migrate_folio_move__copy":
            break
        w.apply(a)
        counts.append(tally.take()["migrate_flush_before_copy"])
    assert counts[0][0] == 1 and sum(n[0] for n in counts) == 1
    assert counts[-1][1] == 1 and sum(n[1] for n in counts) == 1  # the step before the copy
    w.apply(a)
    assert tally.take() == {"migrate_flush_before_copy": [0, 0]}


@attrs.frozen
class SameOrder(Variant):
    """Overrides migrate_flush_before_copy() without changing its answer (a refactor)."""

    def migrate_flush_before_copy(self, path: str) -> bool:
        return True


def test_a_step_shaping_refactor_is_reached_but_never_answers_otherwise() -> None:
    same = _current(SameOrder, "same-order")
    ch = changes_of(same)
    assert ch is not None
    v, tally = instrument(same, ch)
    w, copy = _migrate_once(v)
    w.apply(parse(f"cpu0 {copy}"))
    assert tally.take() == {"migrate_flush_before_copy": [1, 0]}


def test_the_ci_profile_finds_a_broken_migration_patch_without_a_budget() -> None:
    """Migration is drawn only when asked (``fuzz_max`` 0); the patch changes it, so the
    fuzzer draws it, and finds the write lost to the copy."""
    (o,) = fuzz_variant(COPY_FIRST, ["no_write_lost_to_copy"], profile="ci")
    assert isinstance(o, Finding), o
    assert any(a.op == "try_to_migrate_one" for a in o.schedule)


def test_a_held_run_says_a_change_it_reached_never_answered_otherwise() -> None:
    same = _current(SameAnswer, "same")
    (o,) = fuzz_variant(same, ["no_use_after_free"], profile="ci", max_examples=50, narrow_states=0)
    assert isinstance(o, Held)
    assert o.changes is not None
    d = o.changes["decisions"]["should_flush_tlb"]
    assert d["reached"] > 0
    assert d["otherwise"] == 0
    text = " ".join(" ".join(summary_lines(o.changes)).split())
    assert "should_flush_tlb() (overridden): reached" in text
    assert "NEVER ANSWERED OTHERWISE" in text


LAZY_NO_MB_VARIANT = load_user_variant(EXAMPLES / "lazy_no_smp_mb.py", "VARIANT").variant
"""linux-current without the smp_mb() before a lazy CPU reads tlb_gen: a barrier only."""


def test_a_barrier_patch_held_under_sc_says_nothing_of_it_and_is_no_pass() -> None:
    """Under sc a fence changes no step (``TSO_ONLY``), so a barrier patch reached and
    answered otherwise many times still held for nothing: the summary says so and the held
    is judged no pass (exit 4), as a change never reached is. Under tso it is a change."""
    ch = changes_of(LAZY_NO_MB_VARIANT)
    assert ch is not None
    assert set(ch.decisions) == {"smp_mb_before_lazy_tlb_gen_read"}
    counts = {"smp_mb_before_lazy_tlb_gen_read": [10, 10]}
    sc = judge_changes(Record("f.py:V", "p", "holds", changes=summary(ch, counts)))
    assert not sc.ok
    assert sc.message == (
        "held, but under sc smp_mb_before_lazy_tlb_gen_read() changes nothing"
        " (barriers: --memory-model tso)"
    )
    text = " ".join(" ".join(summary_lines(sc.changes or {})).split())
    assert "A BARRIER: under sc no answer of it changes a step" in text
    record = schema()["$defs"]["record"]  # --json keeps the mark (the schema lacked it)
    jsonschema.validate(sc.to_dict(), {**record, "$defs": schema()["$defs"]})
    tso = summary(ch, counts, memory_model="tso")
    assert judge_changes(Record("f.py:V", "p", "holds", changes=tso)).ok
    # merged over shards: a shard under tso counts for the barrier, one under sc does not
    for tso_counts, ok in (({"smp_mb_before_lazy_tlb_gen_read": [3, 3]}, True), ({}, False)):
        other = Record("f.py:V", "p", "holds", changes=summary(ch, tso_counts, memory_model="tso"))
        for shards in ([sc, judge_changes(other)], [judge_changes(other), sc]):
            (merged,) = merge(attrs.evolve(r, changes=dict(r.changes or {})) for r in shards)
            assert merged.changes is not None
            d = merged.changes["decisions"]["smp_mb_before_lazy_tlb_gen_read"]
            assert (d["reached"], "sc_blind" in d, merged.ok) == (len(tso_counts) * 3, False, ok)
    (both,) = merge([sc, attrs.evolve(sc, changes=dict(sc.changes or {}))])
    assert both.changes is not None and not both.ok  # two shards under sc: still blind
    assert both.changes["decisions"]["smp_mb_before_lazy_tlb_gen_read"]["sc_blind"]


def test_fuzz_explore_and_assert_holds_judge_a_barrier_by_the_memory_model_they_ran(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    name = "smp_mb_before_lazy_tlb_gen_read"
    v = LAZY_NO_MB_VARIANT
    runs = {
        model: fuzz_variant(
            v, ["no_deadlock"], profile="ci", max_examples=20, shape=shape, narrow_states=0
        )
        for model, shape in (("sc", None), ("tso", {"memory_model": "tso"}))
    }
    for model, (o,) in runs.items():
        assert isinstance(o, Held) and o.changes is not None
        assert bool(o.changes["decisions"][name].get("sc_blind")) is (model == "sc")
    ref = f"{EXAMPLES / 'lazy_no_smp_mb.py'}:VARIANT"
    explore = ["explore", "-v", ref, "--budget", "cpu1:switch=1", "-p", "no_deadlock"]
    assert main([*explore, "--depth", "3"]) == 4
    assert "A BARRIER: under sc" in capsys.readouterr().out
    main([*explore, "--depth", "3", "--memory-model", "tso"])
    assert "A BARRIER" not in capsys.readouterr().out
    with pytest.raises(AssertionError, match=r"under sc no answer of smp_mb_before_lazy"):
        assert_holds(v, ["no_deadlock"], max_examples=20, corpus=tmp_path)


def test_explore_says_never_reached_for_a_change_its_budget_never_runs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Without a reclaim, mprotect never asks flush_tlb_batched_pending(): the held cells
    say nothing about the patch, and the output says so."""
    ref = f"{EXAMPLES / 'before_3ea277194daa.py'}:VARIANT"
    argv = ["explore", "-v", ref, "--budget", "mprotect=1", "--file-pages", "0"]
    code = main([*argv, "--json", str(tmp_path / "r.json"), "--junit", str(tmp_path / "r.xml")])
    out = capsys.readouterr().out
    assert code == 4  # held, but the patch was never asked: not a pass
    text = " ".join(out.split())
    assert "flush_tlb_batched_pending() (overridden): NEVER REACHED" in text
    # where to look instead: only after a batched flush, so next to other paths
    assert "paths that reach it next to others: reclaim, migrate" in text
    doc = json.loads((tmp_path / "r.json").read_text())
    assert {r["ok"] for r in doc["results"]} == {False}
    assert 'failures="0"' not in (tmp_path / "r.xml").read_text()


def test_a_change_one_path_reaches_alone_is_hinted_with_its_budget(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["explore", "-v", COPY_FIRST_REF, "--budget", "munmap=1"]
    code = main([*argv, "--file-pages", "0", "-p", "no_use_after_free"])
    text = " ".join(capsys.readouterr().out.split())
    assert code == 4
    assert "migrate_flush_before_copy() (overridden): NEVER REACHED" in text
    assert "paths that reach it: migrate (--budget migrate=1)" in text


def test_a_records_changes_add_up_over_runs_and_survive_json() -> None:
    one, two = _held({}), _held({"migrate_flush_before_copy": [3, 2]})
    assert not one.ok  # alone, it never reached the change
    (merged,) = merge([one, two])
    assert merged.ok
    assert merged.changes is not None
    assert merged.changes["decisions"]["migrate_flush_before_copy"] == {
        "why": "overridden",
        "reached": 3,
        "otherwise": 2,
    }
    assert Record.from_dict(merged.to_dict()) == merged
    assert "changes" not in Record("linux-current", "p", "holds").to_dict()
    record = schema()["$defs"]["record"]
    jsonschema.validate(merged.to_dict(), {**record, "$defs": schema()["$defs"]})


def test_fuzz_exits_4_when_a_held_run_never_reached_a_change(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A fixed budget is not steered: with madvise only, the patch to reclaim's batch is
    never asked, so the held cells are no pass (exit 4, not 0)."""
    ref = f"{EXAMPLES / 'before_3ea277194daa.py'}:VARIANT"
    argv = ["fuzz", "-v", ref, "-p", "no_use_after_free", "--profile", "ci"]
    argv += ["--max-examples", "50", "--budget", "madvise=1", "--workers", "1"]
    code = main([*argv, "--corpus", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 4
    text = " ".join(out.split())
    assert "flush_tlb_batched_pending() (overridden): NEVER REACHED" in text
    assert "paths never started (not in --budget): munmap, mprotect, writeback" in text


def _never(w: World, cpu: int, lv: Locals) -> bool:
    return False


def _nothing(w: World, cpu: int) -> None:
    pass


NEVER_STARTS = attrs.evolve(
    VARIANTS["linux-current"],
    name="never-starts",
    extra_paths=(KernelPath("never", BudgetKind("never"), VA, _never, (Step("never", _nothing),)),),
)
"""linux-current with a kernel path of its own that can never start."""


def test_assert_holds_fails_when_the_search_never_reached_the_change() -> None:
    """The variant's only change is a path no CPU can start: every property holds, and
    that is a failure, not a pass."""
    with pytest.raises(AssertionError, match=r"never reached .*paths\(\)"):
        assert_holds(NEVER_STARTS, ["no_use_after_free"], max_examples=20)


def test_a_held_run_names_the_paths_it_never_started(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The ci profile draws reclaim, migration and the like only when asked (or steered to):
    a held cell says so, so a reader knows which races it never looked at."""
    argv = ["fuzz", "-v", "linux-current", "-p", "no_lost_write", "--profile", "ci"]
    code = main([*argv, "--max-examples", "20", "--workers", "1", "--corpus", str(tmp_path)])
    out = " ".join(capsys.readouterr().out.split())
    assert code == 0
    assert "paths never started (drawn only when asked, e.g. --budget gup_fast=1): " in out
    assert "reclaim, numa, migrate, wp_fault, clear_refs, mremap, collapse, uffd_wp" in out
    (o,) = fuzz_variant(
        COPY_FIRST, ["no_lost_write"], profile="ci", max_examples=20, narrow_states=0
    )
    assert isinstance(o, Held)
    assert "migrate" not in o.never_drawn  # steered to
    assert "reclaim" in o.never_drawn


def test_a_user_variant_cut_by_the_time_budget_is_no_pass_until_a_run_counts_it() -> None:
    cut = _held(None, cut_by_time_budget=True, changes_unmeasured=True)
    (alone,) = merge([cut])
    assert not alone.ok
    assert unexercised([alone])  # exit 4
    (both,) = merge([cut, _held({"migrate_flush_before_copy": [2, 1]})])
    assert both.ok
    assert not unexercised([both])


@pytest.mark.parametrize(
    "m",
    [m for m in (*MECHANISMS, *TSO_ORDERINGS) if changes_of(m.moved) is not None],
    ids=_mechanism_key,
)
def test_a_moved_orderings_race_is_said_to_be_the_patchs_as_its_base_refuses_or_survives_it(
    m: Mechanism,
) -> None:
    changes = changes_of(m.moved)
    assert changes is not None
    schedule = [parse(s) for s in m.schedule]
    (found,) = whose(m.moved, _mechanism_config(m), schedule, m.prop)
    assert found.base == m.kernel.name
    if m.blocked_at is None:
        assert (found.verdict, found.step) == ("holds", 0)
    else:
        assert (found.verdict, found.step) == ("refuses", m.blocked_at + 1)
    (line,) = whose_lines(m.prop, [found], schedule)
    assert line.startswith("This schedule needs the variant's change:"), line


def test_the_5_2_switch_window_found_on_a_patch_of_5_2_is_said_to_break_its_base_too() -> None:
    (m,) = [m for m in MECHANISMS if m.key == "gup-fast-walks-with-irqs-off-on-5.2"]
    changes = changes_of(m.moved)
    assert changes is not None and changes.bases == ("linux-5.2",)
    config = World.initial(m.moved, SWITCH_WINDOW_5_2.config).config
    schedule = [parse(s) for s in SWITCH_WINDOW_5_2.schedule]
    (found,) = whose(m.moved, config, schedule, m.prop)
    assert (found.verdict, found.step) == ("breaks", len(schedule))
    (line,) = whose_lines(m.prop, [found], schedule)
    assert line.startswith("Not this variant's own race"), line


def test_a_patch_finding_says_whose_race_it_is_and_its_replay_command_replays_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """examples/new_path.py frees a page in a path of its own, which linux-current cannot
    start; the printed replay command must work as printed (a corpus file never loads code,
    so it names the variant file)."""
    ref = f"{EXAMPLES / 'new_path.py'}:VARIANT"
    corpus, results = tmp_path / "corpus", tmp_path / "r.json"
    args = ["fuzz", "-v", ref, "-p", "no_use_after_free", "--profile", "ci"]
    code = main([*args, "--corpus", str(corpus), "--json", str(results)])
    out = " ".join(capsys.readouterr().out.split())  # the mail's lines unwrapped
    assert code == 1, out
    assert (
        "This schedule needs the variant's change: linux-current (the built-in variant it "
        "differs least from) cannot take its step 2 (CPU1 zap_and_free())" in out
    )
    (record,) = json.loads(results.read_text())["results"]
    assert record["extra"]["on_bases"] == {"linux-current": {"verdict": "refuses", "step": 2}}
    (saved,) = corpus.rglob("*.json")
    printed = f"tlbfuzz replay --variants {EXAMPLES / 'new_path.py'} {saved}"
    assert printed in out.replace("\\ ", ""), out  # the command's continuation lines joined
    assert main(printed.split()[1:]) == 0
    assert "1 passed, 0 failed" in capsys.readouterr().out


def test_every_built_in_variant_but_linux_5_2_changes_a_base_that_leads_back_to_it() -> None:
    assert set(BASE_OF) == set(VARIANTS) - {"linux-5.2"}
    for name, base in BASE_OF.items():
        assert attrs.evolve(VARIANTS[name], name=base, summary="", kernel_ref="") != attrs.evolve(
            VARIANTS[base], summary="", kernel_ref=""
        ), f"{name} sets no switch otherwise than {base}"
        seen = [name]
        while seen[-1] in BASE_OF:
            seen.append(BASE_OF[seen[-1]])
            assert len(seen) <= len(VARIANTS), seen
        assert seen[-1] == "linux-5.2"


@pytest.mark.parametrize("c", CONCERNS, ids=lambda c: c.key)
def test_each_review_concern_is_said_to_need_its_variants_change(c: Concern) -> None:
    v = VARIANTS[c.variant]
    schedule = [parse(s) for s in c.schedule]
    (found,) = whose(v, World.initial(v, c.config).config, schedule, c.prop)
    assert found.base == BASE_OF[c.variant]
    assert found.verdict != "breaks"
    (line,) = whose_lines(c.prop, [found], schedule)
    named = (f"{found.base} (the variant it changes)", f"on {found.base} (the variant it changes)")
    assert line.startswith(tuple(f"This schedule needs the variant's change: {n}" for n in named))


def test_the_switch_window_found_on_an_rfc_variant_is_traced_back_to_where_it_began() -> None:
    """The 2019 switch window, as rfc-async-no-nmi-check runs it (IPIs first): the same
    schedule breaks every variant back to linux-concurrent, which is where this order of the
    flush began (linux-5.2 flushes locally first, so it cannot take it)."""
    (c,) = [c for c in ALL_SCHEDULES if c.key.startswith("finding-rfc-async-no-nmi-check-nmi")]
    v = VARIANTS[c.variant]
    schedule = [parse(s) for s in c.schedule]
    (found,) = whose(v, World.initial(v, c.config).config, schedule, c.prop)
    assert (found.base, found.verdict, found.step) == ("rfc-async", "breaks", len(schedule))
    assert found.older == ("rfc-async-posted", "linux-concurrent")
    assert whose_lines(c.prop, [found], schedule) == [
        "Not this variant's own race: the same schedule breaks nmi_uaccess_safety on rfc-async "
        "(the variant it changes) too, at step 10, and on rfc-async-posted and linux-concurrent."
    ]
    assert whose(VARIANTS["linux-5.2"], World.initial(v, c.config).config, schedule, c.prop) == ()


def test_a_first_step_that_waits_where_the_base_runs_answers_otherwise_though_it_never_runs() -> (
    None
):
    """The patch's reclaim waits at its first step, where the base's takes it: that wait is
    the difference, counted each time the guard is asked while the CPU is there, though the
    step never runs (counted only when a differing step ran, this patch never answered
    otherwise, and a narrowed model of it searched whole would have been the base's)."""
    v = _current(ReclaimNeverTakesThePtl, "reclaim-waits")
    ch = changes_of(v)
    assert ch is not None and "path_steps" in ch.decisions
    probe, tally = instrument(v, ch)
    w = World.initial(probe, Config(cpus=1, budget=Budget.only(reclaim=1)))
    start = next(a for a in w.enabled_actions() if a.op == "try_to_unmap_one" and a.args)
    w.apply(start)
    assert w.cpus.peek(0).path == "reclaim" and w.cpus.peek(0).pc == 0  # waiting there
    reached, otherwise = tally.take()["path_steps"]
    assert reached > 0 and otherwise > 0
    assert not any(a.cpu == 0 and a.op == "try_to_unmap_one" for a in w.enabled_actions())


def test_a_patch_that_leaves_a_path_out_answers_otherwise_where_the_base_could_start_it() -> None:
    """Without enter_lazy_tlb, CPU0's switch budget in one mm starts nothing (a switch to
    another mm's task needs two mms, leaving lazy mode needs it entered), so the patch's
    model has the states of the madvise alone. The base's CPU0 could enter lazy mode there:
    every state counts ``paths()`` answered otherwise, and the model is not the base's.
    Without a switch budget nothing counts. (Before, ``paths()`` was NEVER REACHED in both,
    and a narrowed model of it searched whole was called the base's.)"""
    v = _current(NoLazyTlb, "no-lazy")
    ch = changes_of(v)
    assert ch is not None and ch.decisions["paths"][0] == "overridden"
    counted, tally = instrument(v, ch)

    def model(**cpu0: int) -> Config:
        per_cpu = ((0, Budget.only(**cpu0)), (1, Budget.only(madvise=1)))
        return Config(budget=Budget.only(), cpu_budget=per_cpu, reuse=False, mms=1, file_pages=0)

    with_switch = bfs(World.initial(counted, model(switch=2)), (), 40)
    reached, otherwise = tally.take()["paths"]
    assert with_switch.exhausted and reached > 0 and otherwise == reached
    alone = bfs(World.initial(counted, model()), (), 40)
    assert tally.take()["paths"] == [0, 0]
    assert with_switch.states == alone.states
    base = bfs(World.initial(VARIANTS["linux-current"], model(switch=2)), (), 40)
    assert base.states > with_switch.states
    q = Question("madvise", "switch", model(switch=2))
    n = search(v, [q], ["no_use_after_free"], 10**5, otherwise=Otherwise.of(v, ch))
    assert n.exhausted == (0,) and n.quiet == ()
