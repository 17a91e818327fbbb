"""The nightly gate: what fails a night, and that its expectations and the workflow agree with
the test suite and with .ci/nightly."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.schedules import SHORTEST
from tests.test_fuzz import CLEAN
from tlbfuzz.fuzz.cli import _config
from tlbfuzz.fuzz.gate import judge, main
from tlbfuzz.fuzz.results import Record, judge_changes
from tlbfuzz.protocol import DEFAULT_PROPERTIES, VARIANTS, World
from tlbfuzz.protocol.search import bfs
from tlbfuzz.protocol.windows import WINDOWS

ROOT = Path(__file__).resolve().parent.parent
EXPECT: dict[str, Any] = json.loads((ROOT / ".ci" / "nightly-expect.json").read_text())


def doc(*records: Record) -> dict[str, Any]:
    return {"results": [r.to_dict() for r in records]}


def test_expectations_are_the_test_suites() -> None:
    assert EXPECT["must_hold"] == {v: list(props) for v, props in CLEAN}
    reach = {tuple(k) for k in EXPECT["must_reach"]}
    assert reach == {k for k in SHORTEST if k[1] in DEFAULT_PROPERTIES}


def test_a_violation_of_a_variant_that_must_hold_fails_the_night() -> None:
    bad = Record("linux-current", "no_deadlock", "violates", length=9, schedule_file="x", ok=False)
    v = judge([doc(bad)], EXPECT)
    assert v.broken_must_hold == [bad]
    assert not v.ok


def test_a_known_window_never_reached_fails_only_where_it_was_fuzzed() -> None:
    reached = Record("flush-no-gen-check", "tlb_gen_soundness", "violates", length=6, ok=False)
    missed = Record("rfc-async-posted", "no_lost_write", "holds", examples=10, steps=100)
    v = judge([doc(reached), doc(missed)], EXPECT)
    assert [(r.variant, r.property) for r in v.unreached] == [("rfc-async-posted", "no_lost_write")]
    assert ("rfc-async-pointer-info", "request_integrity") in v.uncovered  # nobody fuzzed it
    assert not v.ok
    assert judge([doc(reached)], EXPECT).ok


def test_gate_collects_new_schedule_files(tmp_path: Path) -> None:
    src = tmp_path / "corpus" / "flush-no-gen-check" / "t.json"
    src.parent.mkdir(parents=True)
    src.write_text("{}")
    rec = Record("flush-no-gen-check", "tlb_gen_soundness", "violates", length=6, ok=False,
                 schedule_file=str(src), new=True)  # fmt: skip
    (tmp_path / "shard.json").write_text(json.dumps(doc(rec)))
    argv = ["--expect", str(ROOT / ".ci" / "nightly-expect.json")]
    argv += ["--collect", str(tmp_path / "new"), str(tmp_path / "shard.json")]
    assert main(argv) == 0
    assert (tmp_path / "new" / "flush-no-gen-check" / "t.json").exists()


def test_the_workflow_runs_the_script_developers_run() -> None:
    workflow = (ROOT / ".github" / "workflows" / "nightly.yml").read_text()
    assert "run: bash .ci/nightly run ${{ matrix.shard }}/4" in workflow
    assert "run: bash .ci/nightly gate" in workflow
    script = (ROOT / ".ci" / "nightly").read_text()
    assert "python -m tlbfuzz.fuzz fuzz --profile nightly --shard" in script


# --- reachability windows ----------------------------------------------------------------------


def reached(variant: str, **counts: int) -> dict[str, int]:
    """Every window reached 5 times, but those listed unreachable for ``variant`` (0), and
    ``counts``."""
    exempt = EXPECT["unreachable_windows"].get(variant, {})
    return {w: 0 if w in exempt else 5 for w in WINDOWS} | counts


def held(variant: str, windows: dict[str, int] | None, steps: int = 100) -> Record:
    return Record(variant, "no_deadlock", "holds", examples=10, steps=steps, windows=windows)


def gate(tmp_path: Path, *shards: dict[str, Any]) -> int:
    """``python -m tlbfuzz.fuzz.gate`` on these shard documents, with the project's expectations."""
    paths = []
    for i, d in enumerate(shards):
        paths.append(tmp_path / f"shard-{i}.json")
        paths[-1].write_text(json.dumps(d))
    return main(["--expect", str(ROOT / ".ci" / "nightly-expect.json"), *map(str, paths)])


def test_a_window_never_reached_fails_the_night_in_one_line_naming_variant_and_window(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missed = reached("linux-current", flush_csd_behind_cross_call=0)
    assert gate(tmp_path, doc(held("linux-current", missed, steps=1234))) == 1
    out = capsys.readouterr().out
    fails = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert fails == [
        "FAIL linux-current: window flush_csd_behind_cross_call never reached in 1234 held steps"
    ]
    assert "gate: failed" in out


def test_a_night_whose_held_runs_reached_every_window_passes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    shards = [doc(held(v, reached(v))) for v in VARIANTS]
    assert gate(tmp_path, *shards) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out
    assert "gate: ok" in out


def test_windows_reached_in_another_shard_count() -> None:
    one = reached("rfc-async-posted", freed_table_still_cached=0)
    other = dict.fromkeys(WINDOWS, 0) | {"freed_table_still_cached": 3}
    v = judge([doc(held("rfc-async-posted", one)), doc(held("rfc-async-posted", other))], EXPECT)
    assert v.windows_never_reached == []
    assert v.ok
    assert not judge([doc(held("rfc-async-posted", one))], EXPECT).ok


def test_a_window_listed_unreachable_does_not_fail_but_reaching_it_does() -> None:
    (variant, exempt), *_ = EXPECT["unreachable_windows"].items()
    window = next(iter(exempt))
    assert judge([doc(held(variant, reached(variant)))], EXPECT).ok
    v = judge([doc(held(variant, reached(variant, **{window: 2})))], EXPECT)
    assert [(m.variant, m.window) for m in v.unreachable_but_reached] == [(variant, window)]
    assert not v.ok


def test_held_runs_without_window_counts_are_noted_not_failed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cut = held("linux-current", None)
    cut.extra = {"cut_by_time_budget": True}
    v = judge([doc(cut)], EXPECT)
    assert (v.windows_unmeasured, v.windows_never_reached, v.ok) == (["linux-current"], [], True)
    assert gate(tmp_path, doc(cut)) == 0
    assert "note linux-current: windows not measured" in capsys.readouterr().out


def test_unreachable_windows_name_real_variants_and_windows_each_with_a_reason() -> None:
    listed = EXPECT["unreachable_windows"]
    assert listed, "nothing listed: then the gate needs no exemptions, drop the key"
    assert set(listed) <= set(VARIANTS)
    for variant, windows in listed.items():
        assert set(windows) <= set(WINDOWS), variant
        assert set(windows) != set(WINDOWS), f"{variant}: a variant reaching no window"
        assert all(isinstance(why, str) and len(why) > 20 for why in windows.values())


# --- a user's variant whose changes the night never reached -------------------------------


def user_held(reached: int | None, **extra: object) -> Record:
    """A held record of a user's variant (``--variants f.py``) with one changed decision,
    reached ``reached`` times (None: not counted), judged as a shard judges it."""
    changes = None
    if reached is not None:
        decision = {"why": "overridden in f.py", "reached": reached, "otherwise": reached}
        changes = {"base": "linux-current", "decisions": {"flush_tlb_func": decision}}
    rec = Record("f.py:V", "no_lost_write", "holds", examples=10, steps=100, changes=changes)
    rec.extra = dict(extra)
    return judge_changes(rec)


def test_a_user_variant_held_without_reaching_its_change_fails_the_night_in_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert gate(tmp_path, doc(user_held(0))) == 1
    out = capsys.readouterr().out
    fails = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert fails == [
        "FAIL f.py:V no_lost_write: held, but the search never reached flush_tlb_func()"
    ]


def test_a_user_variants_change_reached_in_another_shard_passes() -> None:
    assert not judge([doc(user_held(0))], EXPECT).ok
    v = judge([doc(user_held(0)), doc(user_held(3))], EXPECT)
    assert (v.unexercised, v.ok) == ([], True)


def test_a_user_variants_changes_not_counted_fail_the_night(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """``fuzz`` exits 4 when the time budget stopped every run before the changes were
    counted: the held says nothing about the patch, and the night must not pass it."""
    cut = user_held(None, cut_by_time_budget=True, changes_unmeasured=True)
    assert [r.variant for r in judge([doc(cut)], EXPECT).unexercised] == ["f.py:V"]
    assert gate(tmp_path, doc(cut)) == 1
    out = capsys.readouterr().out
    assert "FAIL f.py:V no_lost_write: the time budget stopped it before its changes" in out
    # no counts and no flag: a file that names a built-in variant as it is (no changes),
    # which fuzz passes with exit 0; so does the gate
    assert judge([doc(user_held(None))], EXPECT).unexercised == []


def test_a_violation_of_a_user_variant_fails_the_night_with_its_replay_command(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = Record("f.py:V", "no_lost_write", "violates", length=8, schedule_file="f/x.json",
                 message="a lost write", ok=False)  # fmt: skip
    assert gate(tmp_path, doc(bad)) == 1
    out = capsys.readouterr().out
    assert "FAIL f.py:V must hold no_lost_write, but: a lost write" in out
    # a corpus file never loads code: replaying a user variant's file needs the variant file
    assert "replay: tlbfuzz replay --variants f.py f/x.json" in out
    assert "breaks its base too" not in out


def test_a_user_variants_violation_its_base_has_too_says_so_and_still_fails_the_night(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The patch does not fix it, so the night fails; the reviewer learns whose race it is."""
    on_base = {"linux-5.2": {"verdict": "breaks", "step": 8}}
    bad = Record("f.py:V", "no_lost_write", "violates", length=8, schedule_file="f/x.json",
                 message="a lost write", ok=False, extra={"on_bases": on_base})  # fmt: skip
    assert gate(tmp_path, doc(bad)) == 1
    out = capsys.readouterr().out
    assert "(the same schedule breaks its base too: the race is not the variant's own)" in out


def test_a_user_variant_is_let_off_the_windows_its_base_cannot_reach() -> None:
    """``unreachable_windows`` names built-in variants; a user's variant built on one gets
    its exemptions (and may reach them: the patch may open the window)."""
    base, exempt = next(iter(EXPECT["unreachable_windows"].items()))
    rec = user_held(3)
    rec.changes = {**(rec.changes or {}), "base": base}
    rec.windows = reached(base)
    v = judge([doc(rec)], EXPECT)
    assert (v.windows_never_reached, v.unexercised, v.ok) == ([], [], True)
    rec.windows = dict.fromkeys(WINDOWS, 5)  # the exempt ones reached too
    assert judge([doc(rec)], EXPECT).ok
    closed = {w: 0 for w in WINDOWS if w not in exempt}
    rec.windows = reached(base, **closed)
    assert not judge([doc(rec)], EXPECT).ok
    # windows the patch closes: listed under its own reference, with the reason
    listed = {**EXPECT["unreachable_windows"], "f.py:V": dict.fromkeys(closed, "it closes it")}
    own = {"unreachable_windows": listed}
    assert judge([doc(rec)], EXPECT | own).ok


@pytest.mark.parametrize(("fuzz_exit", "shard_exit"), [(0, 0), (1, 0), (4, 0), (2, 2), (3, 3)])
def test_the_shard_script_hands_fuzz_results_to_the_gate_and_fails_on_the_rest(
    tmp_path: Path, fuzz_exit: int, shard_exit: int
) -> None:
    """``fuzz`` exits 4 on a user's patch held without reaching its changes; ``run`` must
    take that as a result for the gate, as it takes 1 (a violation), not as a failed shard,
    which would fail the job before the gate merged the shards. A stand-in ``python`` on the
    PATH exits as ``fuzz`` would."""
    stub = tmp_path / "bin" / "python"
    stub.parent.mkdir()
    stub.write_text(f"#!/bin/sh\nexit {fuzz_exit}\n")
    stub.chmod(0o755)
    env = {**os.environ, "PATH": f"{stub.parent}:{os.environ['PATH']}"}
    env["NIGHTLY_OUT"] = str(tmp_path / "out")
    r = subprocess.run(
        ["bash", str(ROOT / ".ci" / "nightly"), "run", "1/1"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == shard_exit, r.stderr


EXPLORE_BUDGETS = (
    ["cpu0:madvise=1"],  # a stale entry while the flush runs; the async window, if any
    ["cpu0:switch=1", "cpu1:munmap=1"],  # the switch window; a freed table left cached
    ["cpu1:ipi=1,madvise=1"],  # a flush csd queued behind a cross-call
    ["madvise=1"],  # two gathers of one mm; a madvise that finds nothing to change
)
"""Small budgets that, together, reach every window some variant can reach, each explored to
the end (no NMIs or evictions: they add states, not windows)."""


@pytest.mark.nightly  # whole spaces of every variant: since the mm layer, too big for CI
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_explore_never_reaches_exactly_the_windows_listed_unreachable(variant: str) -> None:
    """The claims of unreachable_windows, checked over whole (small) state spaces; and every
    window not listed is reachable, so the nightly gate does not fail on a window that
    cannot be reached."""
    v = VARIANTS[variant]
    left_out = {"nmi", "tlb_evict", "pwc_evict"}
    reached = dict.fromkeys(WINDOWS, 0)
    for budget in EXPLORE_BUDGETS:
        world = World.initial(v, _config(v, 2, budget))
        res = bfs(world, [], 200, allowed=lambda a: a.op not in left_out, windows=True)
        assert res.exhausted, budget
        reached = {w: n + res.reached[w] for w, n in reached.items()}
    never = {w for w, n in reached.items() if n == 0}
    assert never == set(EXPECT["unreachable_windows"].get(variant, {}))
