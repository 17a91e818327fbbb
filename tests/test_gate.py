"""The nightly gate: what fails a night, and that its expectations and the workflow agree with
the test suite and with .ci/nightly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fuzz.gate import judge, main
from fuzz.results import Record
from protocol import DEFAULT_PROPERTIES
from tests.schedules import SHORTEST
from tests.test_fuzz import CLEAN

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
    assert "python -m fuzz fuzz --profile nightly --shard" in script
