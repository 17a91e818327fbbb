"""What a user's variant changes: found from its class and switches, asked for by the search
(steered to the paths that ask it), and reported next to every held cell."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import jsonschema
import pytest

from tlbfuzz.fuzz.changes import (
    asking_kinds,
    changes_of,
    instrument,
    steered_kinds,
    summary,
    summary_lines,
)
from tlbfuzz.fuzz.check import assert_holds
from tlbfuzz.fuzz.cli import main
from tlbfuzz.fuzz.results import Record, merge, schema
from tlbfuzz.fuzz.runner import Finding, Held, fuzz_variant
from tlbfuzz.fuzz.user import load_user_variant
from tlbfuzz.protocol import VARIANTS, Budget, Config, Variant, World, parse

if TYPE_CHECKING:
    from tlbfuzz.protocol import Site
    from tlbfuzz.protocol.state import FlushTlbInfo

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


@attrs.frozen
class CopyFirst(Variant):
    """Migration copies the page before the batched flush (a broken patch)."""

    def migrate_flush_before_copy(self, path: str) -> bool:
        return False


@attrs.frozen
class SameAnswer(Variant):
    """Overrides should_flush_tlb() without changing a single answer."""

    def should_flush_tlb(self, at: Site, w: World, cpu: int, info: FlushTlbInfo) -> bool:
        return super().should_flush_tlb(at, w, cpu, info)


def _current(cls: type[Variant], name: str) -> Variant:
    return cls(**{**attrs.asdict(VARIANTS["linux-current"], recurse=False), "name": name})


COPY_FIRST = _current(CopyFirst, "copy-first")


def test_a_built_in_variant_has_no_changes() -> None:
    assert all(changes_of(v) is None for v in VARIANTS.values())


def test_an_overridden_method_is_a_change_from_the_variant_it_was_built_from() -> None:
    ch = changes_of(COPY_FIRST)
    assert ch is not None
    assert ch.base == "linux-current"
    assert ch.switches == ()
    assert dict(ch.decisions) == {"migrate_flush_before_copy": "overridden"}


def test_a_switch_set_otherwise_changes_every_decision_that_reads_it() -> None:
    """Which method reads which switch comes from Variant's source: ``batch_ack`` is read by
    ``unlock_async_csds_first()`` alone, ``clear_cpumask_on_switch`` by the switch's steps
    and its cpumask decisions."""
    ch = changes_of(attrs.evolve(VARIANTS["rfc-async"], name="x", batch_ack=True))
    assert ch is not None
    assert ch.base == "rfc-async-batch-ack"  # the nearest: nothing differs from it
    assert dict(ch.decisions) == {}
    ch = changes_of(attrs.evolve(VARIANTS["linux-current"], name="x", batch_ack=True))
    assert ch is not None
    assert (ch.base, ch.switches) == ("linux-current", ("batch_ack",))
    assert dict(ch.decisions) == {"unlock_async_csds_first": "reads batch_ack"}
    ch = changes_of(attrs.evolve(VARIANTS["linux-current"], name="x", clear_cpumask_on_switch=True))
    assert ch is not None
    assert {
        "switch_steps",
        "switch_clears_prev_cpumask",
        "switch_to_init_mm_clears_cpumask",
        "flush_tlb_func_trims_cpumask",
    } <= set(ch.decisions)
    assert all(why == "reads clear_cpumask_on_switch" for why in ch.decisions.values())


def test_a_migration_patch_is_steered_to_migrations_and_a_flush_patch_is_not() -> None:
    ch = changes_of(COPY_FIRST)
    assert ch is not None
    assert steered_kinds(COPY_FIRST, ch) == ("migrate",)
    same = _current(SameAnswer, "same")
    ch = changes_of(same)
    assert ch is not None
    assert "madvise" in asking_kinds(same, ch)["should_flush_tlb"]
    assert steered_kinds(same, ch) == ()  # the drawn paths flush anyway


def test_a_decision_only_a_reclaim_batch_makes_asked_is_steered_to_reclaim() -> None:
    """flush_tlb_batched_pending() is asked only when ``mm->tlb_flush_batched`` is set, which
    only a batched flush (reclaim, mainline migration) sets: no kind asks it alone."""
    v = load_user_variant(EXAMPLES / "before_3ea277194daa.py", "VARIANT").variant
    ch = changes_of(v)
    assert ch is not None
    assert "reclaim" in steered_kinds(v, ch)


def test_the_step_a_decision_moved_counts_each_time_it_runs() -> None:
    """A decision that shapes steps is asked once, when the model is built; what counts is
    the step it moved (migration's copy) running."""
    ch = changes_of(COPY_FIRST)
    assert ch is not None
    v, tally = instrument(COPY_FIRST, ch)
    w = World.initial(v, Config(budget=Budget.only(), cpu_budget=((0, Budget.only(migrate=1)),)))
    assert tally.take() == {"migrate_flush_before_copy": [0, 0]}
    w.apply(parse("cpu0 try_to_migrate_one mm=A va=0x1000"))
    steps = {st.name for st in w.kernel.steps["migrate"]}
    while True:  # cpu0 runs its migration up to the copy, the first step the patch moved
        (a,) = [a for a in w.enabled_actions() if a.cpu == 0 and a.op in steps and not a.args]
        if a.op == "migrate_folio_move__copy":
            break
        w.apply(a)
    assert tally.take() == {"migrate_flush_before_copy": [0, 0]}
    w.apply(a)
    assert tally.take() == {"migrate_flush_before_copy": [1, 1]}


def test_the_ci_profile_finds_a_broken_migration_patch_without_a_budget() -> None:
    """Migration is drawn only when asked (``fuzz_max`` 0); the patch changes it, so the
    fuzzer draws it, and finds the write lost to the copy."""
    (o,) = fuzz_variant(COPY_FIRST, ["no_write_lost_to_copy"], profile="ci")
    assert isinstance(o, Finding), o
    assert any(a.op == "try_to_migrate_one" for a in o.schedule)


def test_a_held_run_says_a_change_it_reached_never_answered_otherwise() -> None:
    same = _current(SameAnswer, "same")
    (o,) = fuzz_variant(same, ["no_use_after_free"], profile="ci", max_examples=50)
    assert isinstance(o, Held)
    assert o.changes is not None
    d = o.changes["decisions"]["should_flush_tlb"]
    assert d["reached"] > 0
    assert d["otherwise"] == 0
    text = " ".join(" ".join(summary_lines(o.changes)).split())
    assert "should_flush_tlb() (overridden): reached" in text
    assert "NEVER ANSWERED OTHERWISE" in text


def test_explore_says_never_reached_for_a_change_its_budget_never_runs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Without a reclaim, mprotect never asks flush_tlb_batched_pending(): the held cells
    say nothing about the patch, and the output says so."""
    ref = f"{EXAMPLES / 'before_3ea277194daa.py'}:VARIANT"
    code = main(["explore", "-v", ref, "--budget", "mprotect=1", "--file-pages", "0"])
    out = capsys.readouterr().out
    assert code == 4  # held, but the patch was never asked: not a pass
    text = " ".join(out.split())
    assert "flush_tlb_batched_pending() (overridden): NEVER REACHED" in text


def test_a_records_changes_add_up_over_runs_and_survive_json() -> None:
    ch = changes_of(COPY_FIRST)
    assert ch is not None
    one = Record("f.py:V", "no_lost_write", "holds", changes=summary(ch, {}))
    two = Record(
        "f.py:V",
        "no_lost_write",
        "holds",
        changes=summary(ch, {"migrate_flush_before_copy": [3, 2]}),
    )
    (merged,) = merge([one, two])
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
    assert "flush_tlb_batched_pending() (overridden): NEVER REACHED" in " ".join(out.split())


def test_assert_holds_fails_when_the_search_never_reached_the_change() -> None:
    """One example cannot get a reclaim batch and a PTL section after it: the patch to
    flush_tlb_batched_pending() is never asked, and that is a failure, not a pass."""
    ref = f"{EXAMPLES / 'before_3ea277194daa.py'}:VARIANT"
    with pytest.raises(AssertionError, match=r"never reached .*flush_tlb_batched_pending\(\)"):
        assert_holds(ref, ["no_use_after_free"], max_examples=1)
