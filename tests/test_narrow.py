"""The narrowed search (``fuzz/narrow.py``): the small models around a patch's change,
searched breadth-first after the fuzzer holds."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import jsonschema
import pytest

from tlbfuzz.fuzz.changes import (
    Otherwise,
    asking_kinds,
    changes_of,
    instrument,
    narrowed_lines,
)
from tlbfuzz.fuzz.cli import main
from tlbfuzz.fuzz.narrow import (
    NARROW_STATES,
    Question,
    base_in_model,
    how_far,
    questions,
    ran_kinds,
    search,
    search_shapes,
    shapes,
    switching_kinds,
)
from tlbfuzz.fuzz.results import schema
from tlbfuzz.fuzz.user import load_user_variant
from tlbfuzz.protocol import (
    DEFAULT_PROPERTIES,
    VARIANTS,
    Budget,
    Config,
    Step,
    Variant,
    World,
    parse,
)
from tlbfuzz.protocol.search import Levels, bfs, replayed
from tlbfuzz.protocol.variants import FLUSH_STEPS_CONCURRENT

ROOT = Path(__file__).resolve().parent.parent
LAZY_REF = f"{ROOT / 'examples' / 'lazy_no_smp_mb.py'}:VARIANT"
LAZY = load_user_variant(ROOT / "examples" / "lazy_no_smp_mb.py", "VARIANT").variant
SMALL = {"mms": 1, "file_pages": 0}
"""The handshake's model (``TSO_ORDERINGS``' shape): one mm, one anonymous page."""


def _questions(shape: dict[str, object]) -> list[str]:
    changes = changes_of(LAZY)
    assert changes is not None
    return [str(q) for q in questions(LAZY, asking_kinds(LAZY, changes), shape)]


def test_each_asker_is_asked_alone_then_against_each_partner_once() -> None:
    """The lazy barrier is asked on a switch back from lazy mode: switch on CPU 1, then each
    kind the fuzzer draws on CPU 0, switch against switch once; no quiet kind (none asks)."""
    qs = _questions({**SMALL, "memory_model": "tso"})
    tail = " (--mms 1 --file-pages 0 --memory-model tso)"
    assert qs[0] == "cpu1:switch=2" + tail
    assert "cpu0:madvise=1 cpu1:switch=2" + tail in qs
    assert "cpu0:switch=2 cpu1:switch=2" + tail in qs
    assert len(qs) == len(set(qs))
    assert not any("migrate" in q or "gup_fast" in q for q in qs)


def test_levels_reach_the_states_bfs_reaches_at_each_depth() -> None:
    start = World.initial(VARIANTS["linux-5.2"], Config(budget=Budget.only(munmap=1)))
    search_ = Levels(start, ())
    for depth in range(1, 6):
        assert search_.next_level(10**6) is None
        assert search_.states == bfs(start, (), depth).states


def test_the_base_holds_in_every_state_of_every_narrowed_model() -> None:
    """Under sc the barrier changes no step, so the patch is linux-current: every default
    property holds in every reachable state of each of its narrowed models (a proof for
    them), and the claim says so."""
    changes = changes_of(LAZY)
    assert changes is not None
    qs = questions(LAZY, asking_kinds(LAZY, changes), SMALL)
    assert "cpu0:madvise=1 cpu1:switch=2 (--mms 1 --file-pages 0)" in map(str, qs)  # tso's race
    n = search(LAZY, qs, DEFAULT_PROPERTIES, 200_000)
    assert n.found == {}
    assert n.exhausted == tuple(range(len(qs)))
    assert not n.cut


@pytest.mark.slow
def test_fuzz_finds_the_barrier_race_the_swarm_misses_by_the_narrowed_search(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Without the lazy smp_mb(), 50 examples of the swarm miss the 14-step race (0 of 20
    seeds at 30,000 steps in the README's TSO table); the narrowed search finds it at its
    minimal length in the model a reviewer would write, and the held property's claim says
    every narrowed model was searched whole."""
    argv = ["fuzz", "-v", LAZY_REF, "--memory-model", "tso", "--mms", "1", "--file-pages", "0"]
    argv += ["-p", "no_use_after_free", "-p", "no_deadlock", "--profile", "ci"]
    argv += ["--max-examples", "50", "--workers", "1", "--corpus", str(tmp_path / "c")]
    code = main([*argv, "--json", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert code == 1
    assert "no_use_after_free breaks in 14 steps" in out
    model = "cpu0:madvise=1 cpu1:switch=2 (--mms 1 --file-pages 0 --memory-model tso)"
    assert f"found by the narrowed search in the model {model}" in out
    text = " ".join(out.split())
    assert "every reachable state of every one" in text
    doc = json.loads((tmp_path / "r.json").read_text())
    jsonschema.validate(doc, schema())
    (held,) = [r for r in doc["results"] if r["property"] == "no_deadlock"]
    narrowed = held["changes"]["narrowed"]
    assert narrowed["found"] == {"no_use_after_free": model}
    assert narrowed["exhausted"] == narrowed["questions"]
    (broken,) = [r for r in doc["results"] if r["property"] == "no_use_after_free"]
    assert broken["extra"]["narrowed"] == model
    assert broken["length"] == 14
    # the base in the same model: a proof that the race is the patch's own there
    assert broken["extra"]["narrowed_base"]["verdict"] == "holds"
    assert (
        f"In the narrowed model {model}, linux-current holds no_use_after_free in every"
        " reachable state" in text
    )


def test_the_small_shapes_come_first_and_a_run_s_own_fields_stay() -> None:
    """One mm with one anonymous page, then one with one file page, then the same pages in
    two mms (only for the questions with a kind that switches mm: True), then the run's
    shape; a field the run sets is kept in every shape, a shape asked already is not again
    (for every question, if either asked every one), and one that maps no page not at all."""
    assert shapes({}) == [
        ({"mms": 1, "anon_pages": 1, "file_pages": 0}, False),
        ({"mms": 1, "anon_pages": 0, "file_pages": 1}, False),
        ({"mms": 2, "anon_pages": 1, "file_pages": 0}, True),
        ({"mms": 2, "anon_pages": 0, "file_pages": 1}, True),
        ({}, False),
    ]
    tso = {"memory_model": "tso", "mms": 1, "file_pages": 0}
    assert shapes(tso) == [
        ({"mms": 1, "anon_pages": 1, "file_pages": 0, "memory_model": "tso"}, False)
    ]
    # the run's own shape is the first two-mm one: asked as the run's, with every question,
    # where the two-mm one would have been
    assert shapes({"file_pages": 0}) == [
        ({"mms": 1, "anon_pages": 1, "file_pages": 0}, False),
        ({"file_pages": 0}, False),
    ]


def test_the_base_in_a_narrowed_model_breaks_holds_to_a_depth_or_holds() -> None:
    """``base_in_model``'s three answers: rfc-async-posted's own 9-step use-after-free in one
    madvise; linux-current, cut by a small budget, holds every schedule of up to the depth
    it searched; with one munmap, the whole space holds."""
    one = {"madvise": Budget.only(madvise=1), "munmap": Budget.only(munmap=1)}

    def said(lines: list[str]) -> str:
        return " ".join(" ".join(lines).split())

    def q(kind: str) -> Question:
        config = Config(cpus=2, budget=Budget.only(), cpu_budget=((1, one[kind]),), reuse=False)
        return Question(kind, None, config)

    uaf = "no_use_after_free"
    posted = base_in_model(VARIANTS["rfc-async-posted"], q("madvise"), [uaf], 10**5)[uaf]
    assert (posted.verdict, posted.length) == ("breaks", 9)
    assert "breaks no_use_after_free too, in 9 steps" in said(posted.lines())
    cut = base_in_model(VARIANTS["linux-current"], q("madvise"), [uaf], 500)[uaf]
    assert (cut.verdict, cut.states) == ("cut", 500)
    assert f"of up to {cut.depth} steps" in said(cut.lines())
    whole = base_in_model(VARIANTS["linux-current"], q("munmap"), [uaf], 10**5)[uaf]
    assert whole.verdict == "holds"
    assert "in every reachable state" in said(whole.lines())


SKIP = load_user_variant(ROOT / "examples" / "my_variant.py", "SKIP_SWITCHING_CPUS").variant


def test_the_paths_the_fuzzer_ran_are_asked_first_in_every_shape() -> None:
    """should_flush_tlb() is asked by every flush, migration's and khugepaged's too: the
    questions of the kinds the fuzzer runs come first, all shapes, then the others; with a
    budget the first group spends, the others are not searched, and the claim says so."""
    changes = changes_of(SKIP)
    assert changes is not None
    reach = asking_kinds(SKIP, changes)
    ran = ran_kinds(SKIP)
    n = search_shapes(SKIP, reach, {}, ["no_use_after_free"], 2_000, ran)
    inside = [q.asker in ran and (q.partner is None or q.partner in ran) for q in n.questions]
    first_other = inside.index(False)
    assert all(inside[:first_other]) and not any(inside[first_other:])
    assert {q.asker for q in n.questions[first_other:]} >= {"migrate", "collapse"}
    assert all(d == 0 for d in n.depths[first_other:])
    assert n.cut
    said = how_far(len(n.questions), len(n.exhausted), n.unfinished)
    assert said.endswith(f"{n.depths.count(0)} not searched")
    assert n.depths[0] > 0


def test_how_far_names_each_depth_and_what_was_not_searched() -> None:
    assert how_far(3, 3, []) == "every reachable state of every one"
    assert how_far(362, 35, [6] * 75 + [5] * 2 + [0] * 250) == (
        "35 in every reachable state, 75 to 6 steps, 2 to 5 steps, 250 not searched"
    )
    assert how_far(4, 0, [3, 3, 3, 3]) == "4 to 3 steps"


def test_a_model_two_shapes_make_alike_is_asked_once_and_every_model_has_a_depth() -> None:
    """With ``--mms 1`` the run's shape is one mm with a page of each kind, and khugepaged's
    ``anon_pages=0`` makes its models there those of the file-page shape: each is asked
    once, and the claim counts every model once, searched whole or to a depth."""
    changes = changes_of(SKIP)
    assert changes is not None
    n = search_shapes(SKIP, asking_kinds(SKIP, changes), {"mms": 1}, ["no_use_after_free"], 500)
    configs = [q.config for q in n.questions]
    assert len(configs) == len(set(configs))
    assert any(q.asker == "collapse" for q in n.questions)
    d = n.to_dict()
    assert len(d["depths"]) + len(d["exhausted"]) == len(d["questions"])


def test_a_held_record_of_before_per_model_depths_still_reads() -> None:
    """A campaign resumed from a record with one ``depth`` for every unfinished model."""
    old = {"questions": ["a", "b", "c"], "depth": 4, "exhausted": ["a"], "states": 9}
    old |= {"cut": True, "found": {}}
    said = " ".join(" ".join(narrowed_lines(old)).split())
    assert "1 in every reachable state, 2 to 4 steps (the state budget ran out" in said


SWITCHING_WINDOW = (
    "cpu0 tlb_fill va=0x1000",
    "cpu0 switch_mm_irqs_off__loaded_mm_switching next=B",
    "cpu0 switch_mm_irqs_off__cpumask_set_cpu",
    "cpu0 switch_mm_irqs_off__choose_new_asid",
    "cpu0 switch_mm_irqs_off__load_new_mm_cr3",
    "cpu0 finish_task_switch",
    "cpu0 switch_mm_irqs_off__loaded_mm_switching next=A",
    "cpu0 switch_mm_irqs_off__cpumask_set_cpu",
    "cpu0 switch_mm_irqs_off__choose_new_asid",
    "cpu1 madvise_dontneed va=0x1000",
    "cpu1 zap_pte_range",
    "cpu1 tlb_finish_mmu__mm_tlb_flush_nested",
    "cpu1 flush_tlb_mm_range__inc_mm_tlb_gen",
    "cpu1 native_flush_tlb_multi__send_ipis",
    "cpu0 switch_mm_irqs_off__load_new_mm_cr3",
    "cpu0 finish_task_switch",
    "cpu1 flush_tlb_mm_range__flush_tlb_func_local",
    "cpu1 tlb_finish_mmu",
    "cpu0 user_read va=0x1000",
)
"""fea4e317f9e7's window ("x86/mm: Eliminate window where TLB flushes may be inadvertently
skipped", 2025): CPU0 switches to mm B and back to A, and reads A's tlb_gen in
choose_new_asid() before CPU1's madvise bumps it; CPU1's should_flush_tlb() then sees
``loaded_mm == LOADED_MM_SWITCHING``, not A, and sends CPU0 no IPI; CPU0 loads A's CR3
without a flush and reads the page CPU1 freed."""


def _two_mms(partner: str, asker: str) -> Config:
    per_cpu = ((0, Budget.only(**{partner: 2})), (1, Budget.only(**{asker: 1})))
    return Config(cpus=2, budget=Budget.only(), cpu_budget=per_cpu, reuse=False, file_pages=0)


def test_without_the_switching_case_a_cpu_that_chose_its_asid_first_reads_a_freed_page() -> None:
    """The hand-written race of SKIP_SWITCHING_CPUS (fea4e317f9e7 reverted) breaks
    no_use_after_free at its last step; linux-current IPIs the switching CPU, whose IRQs are
    off until finish_task_switch(), so CPU1 cannot free the page first (step 18 refused)."""
    schedule = [parse(s) for s in SWITCHING_WINDOW]
    config = _two_mms("switch", "madvise")
    skip = replayed(World.initial(SKIP, config), schedule, ["no_use_after_free"])
    assert skip.violation is not None
    assert skip.step == len(SWITCHING_WINDOW)
    current = replayed(World.initial(VARIANTS["linux-current"], config), schedule, [])
    assert current.violation is None
    assert current.step == 18  # cpu1 tlb_finish_mmu: still waiting for cpu0's flush


def test_the_small_two_mm_shapes_ask_only_the_questions_with_a_switch_of_mm() -> None:
    """A context switch is the kind that switches mm (its ``next``), and the small two-mm
    shapes ask only the questions with one (the others there would be the one-mm models
    again, larger); the run's own shape, two mms with a page of each kind, asks them all."""
    assert switching_kinds(SKIP) == {"switch"}
    changes = changes_of(SKIP)
    assert changes is not None
    n = search_shapes(SKIP, asking_kinds(SKIP, changes), {}, ["no_use_after_free"], 500)
    # two mms with one anonymous page: no kind's own shape makes it (khugepaged's has none)
    two = [q for q in n.questions if (q.config.mms, q.config.file_pages) == (2, 0)]
    assert {q.asker for q in two} >= {"madvise", "munmap", "mprotect"}
    assert all("switch" in (q.asker, q.partner) for q in two)
    # two mms with one file page: khugepaged's own shape (anon_pages=0) makes its models so
    file_only = [
        q
        for q in n.questions
        if (q.config.mms, q.config.anon_pages) == (2, 0) and "collapse" not in (q.asker, q.partner)
    ]
    assert {q.asker for q in file_only} >= {"writeback", "truncate"}
    assert all("switch" in (q.asker, q.partner) for q in file_only)
    default = Config()
    run = [q for q in n.questions if (q.config.anon_pages, q.config.file_pages) == (1, 1)]
    assert any("switch" not in (q.asker, q.partner) for q in run)
    assert all(q.config.mms == default.mms for q in run)


@pytest.mark.slow
def test_the_narrowed_search_asks_the_two_mm_model_and_finds_the_switching_window_there() -> None:
    """The model a reviewer of SKIP_SWITCHING_CPUS would write is one of the narrowed
    search's, and searched as it searches its models its shortest use-after-free is 19
    steps, as the hand-written one (the whole narrowed search: the next test)."""
    q = Question("madvise", "switch", _two_mms("switch", "madvise"))
    changes = changes_of(SKIP)
    assert changes is not None
    asked = search_shapes(SKIP, asking_kinds(SKIP, changes), {}, ["no_use_after_free"], 100)
    assert q in asked.questions
    n = search(SKIP, [q], ["no_use_after_free"], 60_000)
    assert n.found["no_use_after_free"].question == q
    assert len(n.found["no_use_after_free"].schedule) == len(SWITCHING_WINDOW)


@pytest.mark.slow
def test_at_the_ci_budget_the_narrowed_search_finds_the_switching_window() -> None:
    """What ``fuzz --profile ci`` runs once the fuzzer holds on SKIP_SWITCHING_CPUS: the
    two-mm models of a switch first (a walk sees the change answered otherwise only there),
    60,000 states. The race is 19 steps deep in the madvise model, and the mprotect model
    beside it grows faster: searched a level at a time in turn, the two spent the budget
    short of it. The smallest level first reaches it, in a model the walks put first, and
    linux-current refuses a step of what it finds."""
    changes = changes_of(SKIP)
    assert changes is not None
    n = search_shapes(
        SKIP,
        asking_kinds(SKIP, changes),
        {},
        ["no_use_after_free"],
        NARROW_STATES["ci"],
        ran_kinds(SKIP),
        Otherwise.of(SKIP, changes),
    )
    found = n.found["no_use_after_free"]
    assert found.question == Question("madvise", "switch", _two_mms("switch", "madvise"))
    assert n.differed is not None and n.questions.index(found.question) in n.differed
    assert len(found.schedule) == len(SWITCHING_WINDOW)
    current = replayed(
        World.initial(VARIANTS["linux-current"], found.question.config), found.schedule, []
    )
    assert current.verdict == "refuses"  # the patch's own race: the fix refuses a step of it


def test_one_search_of_the_base_answers_each_property_as_a_search_of_it_alone() -> None:
    """A patch often breaks two properties in one model (a write after mprotect returned
    breaks two): the base is searched once for them all, and each answer is the one a search
    of that property alone gives (a broken one with the states and depth where it broke),
    whether the search goes on past a break (no_deadlock holds) or stops once every property
    has broken (the use-after-free and the stale access, both at step 9)."""
    one = ((1, Budget.only(madvise=1)),)
    config = Config(cpus=2, budget=Budget.only(), cpu_budget=one, reuse=False, mms=1, file_pages=0)
    q = Question("madvise", None, config)
    posted = VARIANTS["rfc-async-posted"]
    uaf, stale = "no_use_after_free", "no_stale_access_after_return"
    alone = {p: base_in_model(posted, q, [p], 10**5)[p] for p in (uaf, stale, "no_deadlock")}
    assert (alone[uaf].verdict, alone[uaf].length) == ("breaks", 9)
    assert alone["no_deadlock"].verdict == "holds"
    assert base_in_model(posted, q, [uaf, "no_deadlock"], 10**5) == {
        p: alone[p] for p in (uaf, "no_deadlock")
    }
    assert base_in_model(posted, q, [uaf, stale], 10**5) == {p: alone[p] for p in (uaf, stale)}


def test_a_held_names_the_two_mm_models_of_a_switch_the_budget_never_reached() -> None:
    """The switch_mm_irqs_off() windows between two mms (fea4e317f9e7's among them) are in
    the two-mm models of a context switch; a held whose budget never reached them says so,
    all of them or how many, and the record lists them."""
    changes = changes_of(SKIP)
    assert changes is not None
    n = search_shapes(SKIP, asking_kinds(SKIP, changes), {}, ["no_use_after_free"], 500)
    d = n.to_dict()
    two = d["two_mms"]
    assert two
    assert all("switch=" in q for q in two)
    assert all(n.questions[i].config.mms == 2 for i in n.two_mms)
    narrowed = schema()["$defs"]["record"]["properties"]["changes"]["properties"]["narrowed"]
    jsonschema.validate(d, narrowed)
    said = " ".join(" ".join(narrowed_lines(d)).split())
    assert f"among them all {len(two)} with a context switch between two mms" in said
    some = {**d, "depths": {**d["depths"], two[0]: 5}}
    said = " ".join(" ".join(narrowed_lines(some)).split())
    assert f"among them {len(two) - 1} of the {len(two)} with a context switch" in said
    reached = {**d, "depths": {**d["depths"], **dict.fromkeys(two, 5)}}
    assert "context switch" not in " ".join(" ".join(narrowed_lines(reached)).split())


def test_a_property_broken_in_a_small_shape_leaves_no_two_mm_model_unlisted_or_misnamed() -> None:
    """Once every property is broken (here before_99baac21's 8-step stale access, in the
    smallest shape), the shapes after it are not asked: their two-mm models are neither
    questions nor listed as two-mm ones, and the record says so consistently."""
    v = load_user_variant(ROOT / "examples" / "before_99baac21.py", "VARIANT").variant
    changes = changes_of(v)
    assert changes is not None
    prop = "no_stale_access_after_return"
    n = search_shapes(v, asking_kinds(v, changes), {}, [prop], 60_000, ran_kinds(v))
    assert prop in n.found
    assert all(i < len(n.questions) for i in n.two_mms)
    assert all(q.config.mms == 1 for q in n.questions)
    assert n.to_dict()["two_mms"] == []


def _one_mm(partner: str, asker: str) -> Config:
    return attrs.evolve(_two_mms(partner, asker), mms=1)


def test_should_flush_tlb_is_answered_otherwise_only_against_a_switch_between_two_mms() -> None:
    """SKIP_SWITCHING_CPUS answers should_flush_tlb() otherwise only for a CPU in
    LOADED_MM_SWITCHING, which a switch sets only on its way to another mm: in one mm no
    reachable step of a switch against an mprotect answers it otherwise (every transition
    of the model taken, breadth-first), and the walks agree; in two mms the walks see it, and
    the hand-written race takes such a step."""
    changes = changes_of(SKIP)
    assert changes is not None
    probe, tally = instrument(SKIP, changes)
    tally.take()
    whole = bfs(World.initial(probe, _one_mm("switch", "mprotect")), (), 60, 10**5)
    assert whole.exhausted
    counts = tally.take()["should_flush_tlb"]
    assert counts[0] > 0 and counts[1] == 0
    differs = Otherwise.of(SKIP, changes).differs
    assert not differs(_one_mm("switch", "mprotect"))
    assert differs(_two_mms("switch", "madvise"))
    assert differs(_two_mms("switch", "mprotect"))
    schedule = [parse(s) for s in SWITCHING_WINDOW]
    replayed(World.initial(probe, _two_mms("switch", "madvise")), schedule, [])
    assert tally.take()["should_flush_tlb"][1] > 0


def test_the_models_where_a_walk_saw_the_change_answered_otherwise_are_searched_first() -> None:
    """With ``differs`` the models where the change made a difference in a walk come first,
    in every shape, before the paths the fuzzer ran: SKIP's are two-mm models of a switch
    against a flush, so the one-mm models, where it never differs, wait; the record lists
    them, and its schema takes the list."""
    changes = changes_of(SKIP)
    assert changes is not None
    reach = asking_kinds(SKIP, changes)
    otherwise = Otherwise.of(SKIP, changes)
    differs = otherwise.differs
    n = search_shapes(SKIP, reach, {}, ["no_use_after_free"], 2_000, ran_kinds(SKIP), otherwise)
    assert n.differed is not None
    k = len(n.differed)
    assert n.differed == tuple(range(k)) and 0 < k < len(n.questions)
    assert all(differs(q.config) for q in n.questions[:k])
    assert not any(differs(q.config) for q in n.questions[k:])
    assert all(q.config.mms == 2 and "switch" in (q.asker, q.partner) for q in n.questions[:k])
    assert n.depths[0] > 0 and all(d == 0 for d in n.depths[k:])
    d = n.to_dict()
    assert d["differed"] == [str(q) for q in n.questions[:k]]
    narrowed = schema()["$defs"]["record"]["properties"]["changes"]["properties"]["narrowed"]
    jsonschema.validate(d, narrowed)


def test_a_held_says_where_the_change_was_answered_otherwise_and_how_far_those_went() -> None:
    """The held's narrowed line names the models a walk saw the change answered otherwise
    in, and how far they were searched apart from the others; a record where no walk saw it
    says so, and a record of before the walks reads as it did."""
    rec = {
        "questions": ["a", "b", "c", "d"],
        "depths": {"a": 15, "b": 14, "d": 0},
        "exhausted": ["c"],
        "states": 60_000,
        "cut": True,
        "found": {},
        "differed": ["a", "b"],
    }
    said = " ".join(" ".join(narrowed_lines(rec)).split())
    assert "first the 2 where a walk saw the change answered otherwise, then the others" in said
    of_them = "; of the 2 where a walk saw it, 1 to 15 steps, 1 to 14 steps"
    assert of_them in said
    none = " ".join(" ".join(narrowed_lines({**rec, "differed": []})).split())
    assert "ran first; in none of the 4 did a walk see the change answered otherwise (60" in none
    every = " ".join(" ".join(narrowed_lines({**rec, "differed": rec["questions"]})).split())
    assert "ran first; in each of the 4 a walk saw the change answered otherwise (60" in every
    assert "of the 4 where" not in every
    before = {k: x for k, x in rec.items() if k != "differed"}
    old = " ".join(" ".join(narrowed_lines(before)).split())
    assert "the paths the fuzzer ran first (60,000 states)" in old
    assert "answered otherwise" not in old


def test_a_model_searched_whole_where_no_step_answered_the_change_otherwise_is_the_bases() -> None:
    """Searched with SKIP instrumented, the one-mm model of a switch against an mprotect is
    searched whole and no step answers should_flush_tlb() otherwise: it is quiet, it has
    exactly the base's states, and the held says those models say nothing of the patch. In
    two mms the same pair, searched to depth 6, answers it otherwise and is not quiet.
    Without the instrumented copy nobody counted."""
    changes = changes_of(SKIP)
    assert changes is not None
    otherwise = Otherwise.of(SKIP, changes)
    one = Question("mprotect", "switch", _one_mm("switch", "mprotect"))
    two = Question("mprotect", "switch", _two_mms("switch", "mprotect"))
    props = ["no_write_after_write_protect"]
    n = search(SKIP, [one, two], props, 3_000, otherwise=otherwise)
    assert n.depths[1] >= 6 and n.quiet == (0,) and n.exhausted == ()
    n = search(SKIP, [one], props, 10**5, otherwise=otherwise)
    assert n.exhausted == (0,) and n.quiet == (0,)
    assert n.states == search(VARIANTS["linux-current"], [one], props, 10**5).states
    said = " ".join(" ".join(narrowed_lines(n.to_dict())).split())
    assert "no step of any model searched answered the change otherwise: the 1 searched" in said
    assert "whole are the base's models and say nothing of the patch" in said
    rec: dict[str, object] = {"questions": ["a", "b", "c"], "depths": {"c": 9}}
    rec |= {"exhausted": ["a", "b"], "states": 9, "cut": True, "found": {}, "quiet": ["a"]}
    said = " ".join(" ".join(narrowed_lines(rec)).split())
    assert "; in 1 of the 2 searched whole no step answered the change otherwise: those" in said
    assert search(SKIP, [one], props, 10**5).quiet is None
    assert "quiet" not in search(SKIP, [one], props, 10**5).to_dict()


def _always(w: World, cpu: int) -> bool:
    return True


NO_IPI_STEPS = tuple(
    attrs.evolve(st, skip=_always) if i == 1 else st for i, st in enumerate(FLUSH_STEPS_CONCURRENT)
)
"""linux-current's flush with its IPI step always skipped: the first step that differs from
the base's is one the CPU never runs."""


@attrs.frozen
class _NoIpi(Variant):
    def flush_steps(self, path: str) -> tuple[Step, ...]:
        return NO_IPI_STEPS


def test_a_patch_whose_differing_step_is_skipped_answers_otherwise_when_the_cpu_gets_there() -> (
    None
):
    """A flush whose IPI step is always skipped differs from the base at a step it never
    runs. It is answered otherwise when the CPU gets past that step, so the walks see it
    and the model, where it breaks no_use_after_free in 8 steps while the base holds, is not
    quiet. (Counted only when the differing step ran, no walk saw it and the model was
    quiet though the patch broke no_use_after_free there; a review found it.)"""
    v = _NoIpi(**{**attrs.asdict(VARIANTS["linux-current"], recurse=False), "name": "no-ipi"})
    changes = changes_of(v)
    assert changes is not None
    otherwise = Otherwise.of(v, changes)
    config = Config(
        cpus=2, budget=Budget.only(), cpu_budget=((1, Budget.only(madvise=1)),), reuse=False
    )
    q = Question("madvise", None, attrs.evolve(config, mms=1, file_pages=0))
    assert otherwise.differs(q.config)
    n = search(v, [q], ["no_use_after_free"], 10**5, otherwise=otherwise)
    assert len(n.found["no_use_after_free"].schedule) == 8
    assert n.quiet == ()
    base = search(VARIANTS["linux-current"], [q], ["no_use_after_free"], 10**5)
    assert base.exhausted == (0,) and not base.found
