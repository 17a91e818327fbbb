"""--json and --junit: documents that validate against the shipped schema, for fuzz, explore
and replay; the merge of several runs' records; the JUnit counts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import jsonschema
import pytest

from tests.clirun import run_cli
from tlbfuzz.fuzz.cli import main
from tlbfuzz.fuzz.results import Record, merge, schema, table_lines
from tlbfuzz.protocol.windows import WINDOWS

GENERAL = {name for name, win in WINDOWS.items() if not win.kinds and not win.memory_model}
"""The windows every search is asked about (the others are scoped to path kinds or x86-TSO)."""

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = sorted((ROOT / "corpus" / "rfc-async-posted").glob("no_use_after_free-9-*.json"))[0]


def validated(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text())
    jsonschema.validate(doc, schema(), format_checker=jsonschema.FormatChecker())
    return doc


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(schema())


def test_replay_json_and_junit(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    shutil.copy(SAMPLE, tmp_path / "good.json")
    d = json.loads(SAMPLE.read_text())
    d["expect"] = "holds"
    (tmp_path / "wrong.json").write_text(json.dumps(d))
    (tmp_path / "zz-corrupt.json").write_text("{")
    out_json, out_xml = tmp_path / "out" / "r.json", tmp_path / "out" / "r.xml"
    code = main(["replay", str(tmp_path), "--json", str(out_json), "--junit", str(out_xml)])
    capsys.readouterr()
    assert code == 2
    doc = validated(out_json)
    assert doc["command"] == "replay"
    by_file = {Path(r["schedule_file"]).name: r for r in doc["results"]}
    assert by_file["good.json"]["verdict"] == "violates"
    assert by_file["good.json"]["ok"] is True
    assert by_file["good.json"]["length"] == 9
    assert by_file["wrong.json"]["verdict"] == "violates"
    assert by_file["wrong.json"]["ok"] is False
    assert by_file["zz-corrupt.json"]["verdict"] == "error"
    suite = ET.parse(out_xml).getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("3", "1", "1")


def test_explore_json_has_one_record_per_property(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "e.json"
    argv = ["explore", "-v", "rfc-async-posted", "--budget", "madvise=1", "--depth", "9"]
    argv += ["-p", "no_use_after_free", "-p", "no_deadlock", "--json", str(out), "--save"]
    code = main([*argv, "--corpus", str(tmp_path / "c")])
    capsys.readouterr()
    assert code == 1
    doc = validated(out)
    (broke, held) = doc["results"]
    assert (broke["property"], broke["verdict"], broke["length"]) == (
        "no_use_after_free",
        "violates",
        9,
    )
    assert broke["schedule_file"] and Path(broke["schedule_file"]).exists()
    assert (held["property"], held["verdict"]) == ("no_deadlock", "holds")
    assert held["steps"] > 0  # states visited
    assert set(held["windows"]) == GENERAL  # states per window; a violation has none
    assert "windows" not in broke


@pytest.mark.slow
def test_fuzz_json_validates_and_names_the_saved_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out, xml = tmp_path / "f.json", tmp_path / "f.xml"
    # the ci stream depends on the modules loaded (tests/clirun.py): in a process of its own
    code = run_cli(
        *[
            "fuzz",
            "-v",
            "lazy-skip-freed-tables",
            "-p",
            "no_walk_of_freed_page_table",
            "-p",
            "no_deadlock",
            "--profile",
            "ci",
            "--max-examples",
            "300",
            "--corpus",
            str(tmp_path / "c"),
            "--json",
            str(out),
            "--junit",
            str(xml),
        ]
    ).returncode
    capsys.readouterr()
    assert code == 1
    doc = validated(out)
    assert (doc["command"], doc["profile"], doc["complete"], doc["exit_status"]) == (
        "fuzz",
        "ci",
        True,
        1,
    )
    recs = {r["property"]: r for r in doc["results"]}
    broke = recs["no_walk_of_freed_page_table"]
    assert broke["verdict"] == "violates"
    assert broke["new"] is True
    assert Path(broke["schedule_file"]).exists()
    assert broke["examples"] > 0
    assert recs["no_deadlock"]["verdict"] == "holds"
    assert set(recs["no_deadlock"]["windows"]) == GENERAL
    assert recs["no_deadlock"]["windows"]["stale_entry_during_flush"] > 0
    suite = ET.parse(xml).getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures")) == ("2", "1")


def test_merge_keeps_the_shortest_violation_and_adds_up_held_runs() -> None:
    recs = [
        Record("v", "p", "holds", examples=10, steps=100, seconds=1.0),
        Record("v", "p", "violates", length=9, schedule_file="a", ok=False),
        Record("v", "p", "violates", length=7, schedule_file="b", ok=False),
        Record("v", "q", "holds", examples=10, steps=100, seconds=1.0),
        Record("v", "q", "holds", examples=5, steps=50, seconds=0.5),
    ]
    p, q = merge(recs)
    assert (p.verdict, p.length, p.schedule_file) == ("violates", 7, "b")
    assert (q.verdict, q.examples, q.steps, q.seconds) == ("holds", 15, 150, 1.5)
    lines = table_lines([p, q], ["p", "q"])
    assert lines[2].split()[:3] == ["v", "7", "held"]


def test_a_patch_finding_that_its_base_breaks_too_is_marked_base_in_the_table() -> None:
    holds = {"linux-5.2": {"verdict": "holds", "step": 0}}
    breaks = {"linux-5.2": {"verdict": "breaks", "step": 9}}
    ours = Record("f.py:V", "p", "violates", length=7, ok=False, extra={"on_bases": holds})
    theirs = Record("f.py:V", "q", "violates", length=9, ok=False, extra={"on_bases": breaks})
    lines = table_lines([ours, theirs], ["p", "q"])
    assert lines[2].split() == ["f.py:V", "7", "9", "(base)", "-"]
    assert "(base): the same schedule breaks the variant's base too" in lines[3]
    assert "(base)" not in " ".join(table_lines([ours], ["p"]))
