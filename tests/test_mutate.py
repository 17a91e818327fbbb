"""bench/mutate.py: the mutants are the same run after run, the harness kills a mutant that
removes a TLB flush, and it lets the unmutated model (the identity "mutant") live."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import pytest

from bench.mutants import (
    MODULES,
    REPO,
    Mutant,
    check_applies,
    enumerate_mutants,
    enumerate_source,
    identity,
    sample,
)
from bench.mutate import (
    EQUIVALENCE_KINDS,
    EQUIVALENT_FILE,
    LITERALS,
    STAGES,
    Result,
    Run,
    Workspace,
    _line,
    breaks_unmutated,
    load_equivalent,
    load_run,
    merge,
    reached,
    run_mutant,
)
from tlbfuzz.protocol import DEFAULT_PROPERTIES, VARIANTS, Budget, Config, World
from tlbfuzz.protocol.search import bfs

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

# linux-current, one madvise per CPU, one page: 433 states, a fraction of a second
QUICK = [s for s in STAGES if s["name"] == "explore linux-current madvise=1 file_pages=0"]
LIMITS = {s["name"]: 300.0 for s in QUICK}


@pytest.fixture(scope="module")
def workspace() -> Iterator[Workspace]:
    ws = Workspace()
    yield ws
    ws.close()


def find(file: str, function: str, operator: str, original: str) -> Mutant:
    hits = [
        m
        for m in enumerate_mutants()
        if (m.file, m.function, m.operator, m.original) == (file, function, operator, original)
    ]
    assert len(hits) == 1, hits
    return hits[0]


def test_quick_stage_exists() -> None:
    assert len(QUICK) == 1


def test_enumeration_and_sample_are_deterministic() -> None:
    a, b = enumerate_mutants(), enumerate_mutants()
    assert a == b
    assert len({m.id for m in a}) == len(a)
    assert len(a) >= 120
    assert sample(a, 120, 0) == sample(b, 120, 0)
    assert sample(a, 120, 0) != sample(a, 120, 1)
    assert {m.file for m in a} == set(MODULES)


def test_ids_do_not_depend_on_line_numbers() -> None:
    source = (REPO / "protocol/tlb.py").read_bytes()
    before = enumerate_source("protocol/tlb.py", source)
    after = enumerate_source("protocol/tlb.py", b"# a new first line\n\n" + source)
    assert [m.id for m in before] == [m.id for m in after]
    assert [m.line + 2 for m in before] == [m.line for m in after]


def test_every_mutant_parses_and_changes_the_code() -> None:
    sources = {f: (REPO / f).read_bytes() for f in MODULES}
    for m in enumerate_mutants():
        check_applies(m, sources[m.file])


SYNTHETIC = b'''
def step(w, cpu):
    """A docstring."""
    c = w.cpus[cpu]
    c.a = 1
    c.b = 2
    w.report("x", f"{c.a if c.b else 0}")
    assert c.a < 3
    if c.a:
        hw.flush(c)
'''


def test_operators_on_a_small_function() -> None:
    ms = enumerate_source("protocol/x.py", SYNTHETIC)
    ops = sorted((m.operator, m.original.replace("\n", "; "), m.mutated) for m in ms)
    swaps = [(o, m) for op, o, m in ops if op == "swap_stmts"]
    # c.a = 1; c.b = 2 commute (no call, nothing shared but c): not a mutant
    assert ("c.a = 1; c.b = 2", "c.b = 2\nc.a = 1") not in swaps
    assert ("c = w.cpus[cpu]; c.a = 1", "c.a = 1\nc = w.cpus[cpu]") in swaps
    assert any(o.startswith("c.b = 2; w.report") for o, _ in swaps)
    assert sum(op == "del_stmt" for op, _, _ in ops) == 5  # 3 assignments, 2 calls
    assert ("negate_cond", "c.a", "not c.a") in ops
    # nothing inside the f-string, nothing of the assert
    assert not [o for op, o, _ in ops if op == "negate_cond" and o == "c.b"]
    assert not [o for op, o, _ in ops if op == "swap_cmp"]
    assert ("int_plus_one", "1", "2") in ops
    assert ("int_minus_one", "2", "1") in ops


def test_known_bad_mutant_is_killed(workspace: Workspace) -> None:
    """Without the INVLPG of flush_tlb_func()'s partial flush, the remote CPU keeps its
    entry after madvise() freed the page."""
    m = find("protocol/tlb.py", "flush_tlb_func", "del_stmt", "hw.flush_tlb_one_user(c, va)")
    r = run_mutant(workspace, m, QUICK, LIMITS)
    assert r.status == "explore", r
    assert r.prop in DEFAULT_PROPERTIES


def test_identity_is_not_killed(workspace: Workspace) -> None:
    r = run_mutant(workspace, identity("protocol/tlb.py"), QUICK, LIMITS)
    assert r.status == "survived", r
    assert r.stages.keys() == {QUICK[0]["name"]}


TSO_SWITCH = [s for s in STAGES if s.get("no") and s["variant"] == "linux-current"]


def test_a_stage_that_leaves_out_noise_kills_the_mutant_without_83b0177a(
    workspace: Workspace,
) -> None:
    """Without ``else smp_mb();`` in switch_mm_irqs_off() (83b0177a6c48), the 20-step TSO
    race of tests/test_tso.py is in the stage that leaves NMIs, evictions and lazy switches
    out; the unmutated model holds it."""
    assert len(TSO_SWITCH) == 1
    limits = {TSO_SWITCH[0]["name"]: 300.0}
    (m,) = [m for m in enumerate_mutants() if m.id == "cbd8bfbe2cad"]  # the "else smp_mb();"
    assert m.function == "switch_mm_irqs_off__cpumask_set_cpu"
    assert m.operator == "del_stmt"
    r = run_mutant(workspace, m, TSO_SWITCH, limits)
    assert r.status == "explore", r
    assert r.detail == "20 steps"
    assert run_mutant(workspace, identity("protocol/tlb.py"), TSO_SWITCH, limits).status == (
        "survived"
    )


def test_a_stage_cut_at_its_state_cap_leaves_the_survivor_undecided(
    workspace: Workspace,
) -> None:
    """A stage that stops at its ``max_states`` has not shown the mutant holds: the result
    says which stage was cut, and the report calls the survivor undecided."""
    small = [{**QUICK[0], "max_states": 50}]
    r = run_mutant(workspace, identity("protocol/tlb.py"), small, LIMITS)
    assert r.status == "survived", r
    assert r.cut == [QUICK[0]["name"]]
    assert "UNDECIDED" in _line(r, {"protocol/tlb.py": b""})
    whole = run_mutant(workspace, identity("protocol/tlb.py"), QUICK, LIMITS)
    assert whole.cut == []


def test_a_mutant_that_raises_is_crash_killed(workspace: Workspace) -> None:
    m = find("protocol/tlb.py", "flush_tlb_func", "del_stmt", "c = w.cpus[cpu]")
    r = run_mutant(workspace, m, QUICK, LIMITS)
    assert r.status == "crash", r
    assert "NameError" in r.detail
    assert " at protocol/tlb.py:" in r.detail  # the mutant's file, not its tlbfuzz/ path


def test_a_violation_is_replayed_on_the_unmutated_model() -> None:
    """linux-5.2 with a context switch breaks no_use_after_free unmutated (the 2019 switch
    window): that violation is the model's, not a mutant's. A schedule the real model cannot
    run, or one that breaks nothing there, would be the mutant's."""
    config = Config(
        budget=Budget.only(madvise=1),
        cpu_budget=((1, Budget.only(switch=1)),),
        reuse=False,
        file_pages=0,
    )
    r = bfs(World.initial(VARIANTS["linux-5.2"], config), DEFAULT_PROPERTIES, 20)
    assert r.schedule is not None and r.violation is not None
    event: dict[str, Any] = {
        "variant": "linux-5.2",
        "prop": r.violation.prop,
        "config": config.to_dict(),
        "schedule": [str(a) for a in r.schedule],
    }
    assert breaks_unmutated(event)
    assert not breaks_unmutated({**event, "schedule": event["schedule"][:-1]})
    assert not breaks_unmutated({**event, "schedule": ["cpu0 no_such_step"]})
    assert not breaks_unmutated({**event, "variant": "linux-current"})


def test_the_equivalent_list_is_well_formed() -> None:
    raw = json.loads(EQUIVALENT_FILE.read_text())
    for key, entry in raw.items():
        assert re.fullmatch(r"[0-9a-f]{12}", key)
        assert entry["reason"].strip()
        assert entry["kind"] in EQUIVALENCE_KINDS
    assert load_equivalent().keys() == raw.keys()


def test_score_leaves_out_equivalent_survivors() -> None:
    ms = enumerate_mutants()[:4]
    results = [
        Result(ms[0], "explore"),
        Result(ms[1], "crash"),
        Result(ms[2], "survived"),
        Result(ms[3], "survived"),
    ]
    run = Run(785, 4, 0, 1, {}, [], Result(identity(MODULES[0]), "survived"), results, {}, 1.0)
    assert run.score() == 0.5
    run.equivalent = {ms[2].id: {"kind": "equivalent", "reason": "same behaviour"}}
    assert run.score() == pytest.approx(2 / 3)
    assert run.summary().startswith("mutation score 66.7%: 2 killed of 3 (4 sampled")
    assert "1 survivors left out: 1 equivalent, 0 unreached, 0 correct; 1 survivors not" in (
        run.summary()
    )
    assert [r.mutant for r in run.unexplained()] == [ms[3]]


def test_a_mutant_whose_lines_never_ran_is_unreached() -> None:
    ms = enumerate_mutants()
    m = next(x for x in ms if x.operator == "del_stmt" and x.end_line > x.line)
    assert not reached(m, {})
    assert reached(m, {m.file: [m.end_line]})
    assert not reached(m, {m.file: [m.line - 1, m.end_line + 1]})
    assert not reached(m, {"protocol/other.py": [m.line]})
    literal = next(x for x in ms if x.operator == "int_plus_one")
    assert reached(literal, {})  # a literal changes the ci stream even where it never runs


def test_the_baseline_records_the_lines_it_ran(workspace: Workspace) -> None:
    r = run_mutant(workspace, identity("protocol/tlb.py"), QUICK, LIMITS, coverage=MODULES)
    assert r.status == "survived"
    m = find("protocol/tlb.py", "flush_tlb_func", "del_stmt", "hw.flush_tlb_one_user(c, va)")
    lines = r.coverage[QUICK[0]["name"]]
    assert reached(m, lines)
    unlock = [x for x in enumerate_mutants() if x.function == "csd_unlock"]
    assert unlock
    assert not any(reached(x, lines) for x in unlock if x.operator not in LITERALS)


def test_a_saved_run_loads_back(tmp_path: Path) -> None:
    ms = enumerate_mutants()[:3]
    results = [Result(ms[0], "ci", "ci linux-current", "no_use_after_free", "9 steps")]
    results += [Result(ms[1], "unreached"), Result(ms[2], "survived", now="pass")]
    run = Run(785, 3, 0, 1, {}, [], Result(identity(MODULES[0]), "survived"), results, {}, 2.0)
    path = tmp_path / "run.json"
    path.write_text(json.dumps(run.to_dict()))
    back = load_run(path)
    assert back.results == run.results
    assert back.summary() == run.summary()


CORPUS_STAGE = [s for s in STAGES if s["kind"] == "corpus"]


def test_the_corpus_replays_unmutated(workspace: Workspace) -> None:
    r = run_mutant(workspace, identity("protocol/hw.py"), CORPUS_STAGE, {"corpus": 300.0})
    assert r.status == "survived", r


def test_a_model_without_speculative_fills_fails_the_corpus(workspace: Workspace) -> None:
    """No property of a correct kernel can notice that the processor stopped speculating
    (it only removes behaviour), but the shipped findings that start with a speculative fill
    no longer replay."""
    m = find("protocol/hw.py", "tlb_fill_enabled", "negate_cond", "mm.pgtable_pfn == NO_PFN")
    r = run_mutant(workspace, m, CORPUS_STAGE, {"corpus": 300.0})
    assert r.status == "corpus", r
    assert "tlb_fill" in r.detail


def test_a_stopped_run_says_it_is_partial() -> None:
    ms = enumerate_mutants()[:2]
    base = Result(identity(MODULES[0]), "survived")
    run = Run(785, 3, 0, 1, {}, [], base, [Result(m, "explore") for m in ms], {}, 1.0)
    assert run.summary().startswith("PARTIAL, 2 of 3 run: mutation score 100.0%")


def test_a_left_out_survivor_is_no_corpus_kill() -> None:
    ms = enumerate_mutants()[:3]
    base = Result(identity(MODULES[0]), "survived")
    results = [Result(ms[0], "explore"), Result(ms[1], "corpus"), Result(ms[2], "corpus")]
    run = Run(785, 3, 0, 1, {}, [], base, results, {}, 1.0)
    assert run.score() == pytest.approx(1 / 3)
    assert run.score(corpus=True) == 1.0
    run.equivalent = {ms[2].id: {"kind": "unreached", "reason": "RFC-only"}}
    assert run.score() == 0.5
    assert run.score(corpus=True) == 1.0
    assert "of which the corpus replay kills 1: 100.0% with it" in run.summary()


def test_a_merged_rerun_counts_only_what_it_killed() -> None:
    """--merge: a rerun under a stronger plan replaces a result only where it kills (or only
    the corpus kills) a mutant the first run let live; a rerun that kills less changes
    nothing, and the plan lists both runs' stages."""
    ms = enumerate_mutants()[:4]
    base = Result(identity(MODULES[0]), "survived")
    first = [Result(ms[0], "crash"), Result(ms[1], "survived"), Result(ms[2], "survived")]
    first.append(Result(ms[3], "survived"))
    run = Run(785, 4, 0, 1, {"a": 1.0}, [{"name": "a"}], base, first, {}, 10.0)
    again = [Result(ms[0], "survived"), Result(ms[1], "explore", "b", "rmap_matches_ptes")]
    again.append(Result(ms[3], "corpus", "corpus"))
    rerun = Run(785, 3, 0, 1, {"b": 2.0}, [{"name": "a"}, {"name": "b"}], base, again, {}, 5.0)
    merged = merge(run, rerun)
    assert [r.status for r in merged.results] == ["crash", "explore", "survived", "corpus"]
    assert merged.results[1].prop == "rmap_matches_ptes"
    assert [s["name"] for s in merged.plan] == ["a", "b"]
    assert merged.limits == {"a": 1.0, "b": 2.0}
    assert merged.seconds == 15.0
    assert merged.score() == pytest.approx(2 / 4)
    assert merged.score(corpus=True) == pytest.approx(3 / 4)
