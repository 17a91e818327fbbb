"""Every ``held`` that ``fuzz`` and ``explore`` report comes with its reachability windows: the
ones reached, with counts, and the ones never reached, on screen (72 columns), in ``--json``
and in ``--junit``; the counts survive a campaign's workers, database and merge.

The variant that cannot reach a window is made here: the RFC as posted with its initiator
waiting for the csd unlock again (``wait_for_csd_unlock``), so that no flush csd can still be
pending after the initiator returned. The posted RFC itself, under the same budget, reaches that
window: the same measurement that says "never reached" for one says "reached" for the other.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from xml.etree import ElementTree as ET

import jsonschema
import pytest
from hypothesis.database import DirectoryBasedExampleDatabase

from tests import procs
from tlbfuzz.fuzz.campaign import Campaign, Item, Plan
from tlbfuzz.fuzz.cli import main
from tlbfuzz.fuzz.results import (
    Record,
    held_windows_lines,
    merge,
    schema,
    windows_lines,
    write_junit,
)
from tlbfuzz.protocol.windows import WINDOWS

if TYPE_CHECKING:
    from pathlib import Path

ASYNC_WINDOW = "flush_ipi_pending_after_return"
WAITS = "posted-but-waits"
VARIANT_FILE = f'''
import attrs

from tlbfuzz.protocol import VARIANTS

WAITS = attrs.evolve(
    VARIANTS["rfc-async-posted"],
    name="{WAITS}",
    summary="rfc-async-posted whose initiator waits for every csd unlock",
    wait_for_csd_unlock=True,
)
'''

GENERAL = {name for name, win in WINDOWS.items() if not win.kinds and not win.memory_model}
"""The windows every search is asked about (the others belong to path kinds or to x86-TSO)."""


@pytest.fixture
def waits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """``waits.py:WAITS``, as typed in ``tmp_path`` (the working directory)."""
    (tmp_path / "waits.py").write_text(VARIANT_FILE)
    monkeypatch.chdir(tmp_path)
    return "waits.py:WAITS"


def validated(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text())
    jsonschema.validate(doc, schema(), format_checker=jsonschema.FormatChecker())
    return doc


def block(out: str, head: str) -> list[str]:
    """The indented lines under the line ``head`` of ``out``."""
    lines = out.splitlines()
    start = lines.index(head) + 1
    end = start
    while end < len(lines) and lines[end].startswith("  "):
        end += 1
    return lines[start:end]


def never_reached(lines: list[str]) -> list[str]:
    """The window names of the "never reached:" line (and its continuation lines)."""
    text = " ".join(line.strip() for line in lines)
    _, sep, rest = text.partition("never reached: ")
    return rest.split(", ") if sep else []


COUNTS = dict.fromkeys(WINDOWS, 0) | {"stale_entry_during_flush": 1234}


# --- the formatter both commands use ----------------------------------------------------------


def test_windows_lines_count_the_reached_and_name_the_never_reached() -> None:
    lines = windows_lines(COUNTS, "steps")
    assert lines[0] == "  windows reached: stale_entry_during_flush (1,234 steps)"
    assert never_reached(lines) == [w for w in WINDOWS if w != "stale_entry_during_flush"]
    assert all(len(line) <= 72 for line in lines)


def test_windows_lines_say_none_when_nothing_was_reached() -> None:
    lines = windows_lines(dict.fromkeys(WINDOWS, 0), "states")
    assert lines[0] == "  windows reached: none"
    assert never_reached(lines) == list(WINDOWS)


def test_held_cells_get_one_block_per_variant_below_the_table() -> None:
    recs = [
        Record("v", "p", "holds", examples=1, steps=9, windows=COUNTS),
        Record("v", "q", "holds", examples=1, steps=9, windows=COUNTS),
        Record("v", "r", "violates", length=7, ok=False),
        Record("w", "p", "holds", examples=1, steps=9, extra={"cut_by_time_budget": True}),
    ]
    out = "\n".join(held_windows_lines(recs))
    assert block(out, "v:") == windows_lines(COUNTS, "steps")
    assert block(out, "w:") == ["  windows: not measured (the time budget stopped every run of it)"]
    heads = [line for line in out.splitlines()[2:] if line and not line.startswith(" ")]
    assert heads == ["v:", "w:"]  # a violation has no windows block


def test_held_cells_of_one_variant_with_different_counts_get_a_block_each() -> None:
    other = COUNTS | {ASYNC_WINDOW: 5}
    recs = [
        Record("v", "p", "holds", windows=COUNTS),
        Record("v", "q", "holds", windows=other),
    ]
    out = "\n".join(held_windows_lines(recs))
    assert block(out, "v (p):") == windows_lines(COUNTS, "steps")
    assert block(out, "v (q):") == windows_lines(other, "steps")


# --- fuzz and explore, on a variant that cannot reach the window -----------------------------


@pytest.mark.slow
def test_fuzz_reports_never_reached_for_a_variant_that_cannot_reach_it(
    waits: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["fuzz", "-v", waits, "-v", "rfc-async-posted", "-p", "no_deadlock"]
    argv += ["--budget", "madvise=1", "--max-examples", "200", "--seed", "1", "--workers", "1"]
    argv += ["--corpus", "c", "--json", "f.json", "--junit", "f.xml"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "windows of the held cells (model steps that ended in each):" in out
    assert ASYNC_WINDOW in never_reached(block(out, f"{waits}:"))
    assert ASYNC_WINDOW not in never_reached(block(out, "rfc-async-posted:"))
    assert f"{ASYNC_WINDOW} (" in " ".join(block(out, "rfc-async-posted:"))
    assert all(len(line) <= 72 for line in out.splitlines() if "reached" in line)

    recs = {r["variant"]: r for r in validated(tmp_path / "f.json")["results"]}
    assert set(recs[waits]["windows"]) == GENERAL
    assert recs[waits]["windows"][ASYNC_WINDOW] == 0
    assert recs[waits]["windows"]["stale_entry_during_flush"] > 0
    assert recs["rfc-async-posted"]["windows"][ASYNC_WINDOW] > 0

    suite = ET.parse(tmp_path / "f.xml").getroot().find("testsuite")
    assert suite is not None
    outs = {c.get("classname"): c.findtext("system-out") or "" for c in suite.iter("testcase")}
    assert f"never reached: {ASYNC_WINDOW}" in outs[waits]
    assert "windows reached: stale_entry_during_flush (" in outs[waits]


@pytest.mark.slow
def test_explore_reports_never_reached_for_a_variant_that_cannot_reach_it(
    waits: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exhausted: no state of the whole space (a madvise on CPU 0, no NMIs or evictions) is
    in the window."""
    argv = ["explore", "-v", waits, "-p", "no_deadlock", "--budget", "cpu0:madvise=1"]
    argv += ["--no", "nmi,tlb_evict,pwc_evict", "--depth", "200"]
    assert main([*argv, "--json", "w.json"]) == 0
    out = capsys.readouterr().out
    assert f"{WAITS}: no violation in any reachable state (all explored" in out
    lines = [line for line in out.splitlines() if line.startswith("  ")]
    assert ASYNC_WINDOW in never_reached(lines)
    (rec,) = validated(tmp_path / "w.json")["results"]
    assert rec["windows"][ASYNC_WINDOW] == 0
    assert rec["windows"]["stale_entry_during_flush"] > 0
    assert rec["extra"]["exhausted"] is True

    posted = ["explore", "-v", "rfc-async-posted", "-p", "no_deadlock"]
    posted += ["--budget", "cpu0:madvise=1", "--no", "nmi,tlb_evict,pwc_evict"]
    assert main([*posted, "--depth", "200", "--json", "p.json"]) == 0
    out = capsys.readouterr().out
    assert ASYNC_WINDOW not in never_reached(out.splitlines())
    (rec,) = validated(tmp_path / "p.json")["results"]
    assert rec["windows"][ASYNC_WINDOW] > 0


# --- JSON, JUnit -----------------------------------------------------------------------------


def test_the_schema_allows_windows_on_held_records_only() -> None:
    rec = Record("v", "p", "holds", examples=1, steps=9, windows=COUNTS).to_dict()
    doc = {"schema": 1, "command": "fuzz", "finished": "2025-01-01T00:00:00+00:00"}
    doc |= {"seconds": 1.0, "results": [rec]}
    jsonschema.validate(doc, schema())
    for bad in ({**rec, "verdict": "violates"}, {**rec, "windows": {"w": -1}}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**doc, "results": [bad]}, schema())
    assert "windows" not in Record("v", "p", "holds").to_dict()  # not measured: absent


def test_junit_puts_the_windows_lines_in_the_held_cases_system_out(tmp_path: Path) -> None:
    recs = [
        Record("v", "p", "holds", examples=1, steps=9, windows=COUNTS),
        Record("v", "q", "violates", length=7, ok=False, message="broke"),
    ]
    write_junit(tmp_path / "j.xml", "explore", recs, 1.0)
    cases = {c.get("name"): c for c in ET.parse(tmp_path / "j.xml").iter("testcase")}
    text = cases["p"].findtext("system-out") or ""
    assert text.splitlines()[1:] == windows_lines(COUNTS, "states")
    assert cases["q"].find("system-out") is None


# --- campaigns: merge, resume, workers ---------------------------------------------------------


def test_merge_adds_up_window_counts_of_held_runs_and_keeps_unmeasured_out() -> None:
    a = Record("v", "p", "holds", examples=1, steps=10, windows={"x": 1, "y": 0})
    b = Record("v", "p", "holds", examples=1, steps=10, windows={"x": 2, "y": 3})
    cut = Record("v", "p", "holds", examples=1, steps=5, extra={"cut_by_time_budget": True})
    (m,) = merge([cut, a, b])
    assert m.windows == {"x": 3, "y": 3}
    (only_cut,) = merge([cut])
    assert only_cut.windows is None
    (broke,) = merge([a, Record("v", "p", "violates", length=7, ok=False)])
    assert broke.windows is None


def test_a_resumed_campaign_keeps_the_window_counts_of_items_done_before(tmp_path: Path) -> None:
    db = str(tmp_path / "db")
    plan = Plan(("linux-5.2",), ("no_deadlock",), database=db, seed=1)
    first = Campaign(plan, time_budget=60.0)
    first._db = DirectoryBasedExampleDatabase(db)
    for round_ in (0, 1):
        rec = Record("linux-5.2", "no_deadlock", "holds", examples=1, steps=10, windows=COUNTS)
        first._done(Item(round_, "linux-5.2", ("no_deadlock",), 1 + round_, round_), [rec])
    again = Campaign(plan, time_budget=60.0)
    again._db = DirectoryBasedExampleDatabase(db)
    again._resume()
    assert again.resumed == 2
    (rec,) = again.result()
    assert rec.windows == {k: 2 * n for k, n in COUNTS.items()}


@pytest.mark.slow
def test_window_counts_come_back_from_the_worker_processes(tmp_path: Path) -> None:
    out = tmp_path / "w.json"
    argv = ["fuzz", "-v", "linux-5.2", "-v", "rfc-async-posted", "-p", "no_deadlock"]
    # 400 examples: since the mm layer, 100 with this seed never had a stale entry in flight
    argv += ["--budget", "madvise=1", "--max-examples", "400", "--seed", "1", "--workers", "2"]
    r = procs.run(*argv, "--corpus", str(tmp_path / "c"), "--json", str(out))
    assert r.returncode == 0, r.stderr
    recs = {r["variant"]: r for r in validated(out)["results"]}
    assert validated(out)["workers"] == 2
    for variant in ("linux-5.2", "rfc-async-posted"):
        assert set(recs[variant]["windows"]) == GENERAL
        assert recs[variant]["windows"]["stale_entry_during_flush"] > 0
    assert recs["linux-5.2"]["windows"][ASYNC_WINDOW] == 0
    assert recs["rfc-async-posted"]["windows"][ASYNC_WINDOW] > 0
    assert "never reached: " in r.stdout
