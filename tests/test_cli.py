"""The tlbfuzz command: exit statuses, one-line errors, and the outputs a reviewer pastes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.clirun import run_cli
from tlbfuzz.fuzz import cli
from tlbfuzz.fuzz.cli import main
from tlbfuzz.fuzz.user import UserVariantError

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = sorted((ROOT / "corpus" / "rfc-async-posted").glob("no_use_after_free-9-*.json"))[0]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def fuzz_ci(
    capsys: pytest.CaptureFixture[str], ref: str, prop: str, corpus: Path, *extra: str
) -> tuple[int, str, str]:
    return run(
        capsys, "fuzz", "-v", ref, "-p", prop, "--profile", "ci", "--corpus", str(corpus), *extra
    )


def test_variants_and_properties_list_everything(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "variants")
    assert code == 0
    assert "rfc-async-posted" in out
    assert "models: " in out
    code, out, _ = run(capsys, "properties")
    assert code == 0
    assert "no_stale_entry_at_free" in out
    assert "strict" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["fuzz", "-v", "linux-9.9"], "unknown variant 'linux-9.9'"),
        (["fuzz", "-p", "no_bugs"], "unknown property 'no_bugs'"),
        (["fuzz", "-v", "missing.py:X"], "variant file missing.py: No such file or directory"),
        (["replay", "/nonexistent/corpus"], "no such file or folder"),
        (["explore", "-v", "nope"], "unknown variant"),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert message in err
    assert err.count("\n") == 1
    assert "Traceback" not in err + out


def test_argparse_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fuzz", "--profile", "weekly"]) == 2
    assert main([]) == 2
    capsys.readouterr()


def test_replay_ok_drift_and_corrupt(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run(capsys, "replay", str(SAMPLE))
    assert code == 0
    assert "1 passed, 0 failed" in out
    d = json.loads(SAMPLE.read_text())
    d["schedule"][-1] = "cpu0 tlb_finish_mmu"
    (tmp_path / "drift.json").write_text(json.dumps(d))
    code, out, _ = run(capsys, "replay", str(tmp_path / "drift.json"))
    assert code == 1
    assert "drift at step 9" in out
    shutil.copy(SAMPLE, tmp_path / "good.json")
    (tmp_path / "zz-corrupt.json").write_text("{")
    code, out, err = run(capsys, "replay", str(tmp_path))
    assert code == 2  # unreadable input wins, but the other files were still replayed
    assert "zz-corrupt.json: not valid JSON" in err
    assert "good.json: ok" in out


def test_show_prints_lanes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "show", "--format", "wide", str(SAMPLE))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("rfc-async-posted: no_use_after_free breaks in 9 steps")
    assert "cpu0" in lines[2]
    assert "cpu1" in lines[2]
    assert "!! no_use_after_free" in out
    assert "replay: tlbfuzz replay" in out


@pytest.mark.slow
def test_fuzz_finds_saves_and_exits_1(tmp_path: Path) -> None:
    """With the ci profile, so in its own process (tests/clirun.py says why)."""
    argv = [
        "fuzz",
        "-v",
        "lazy-skip-freed-tables",
        "-p",
        "no_walk_of_freed_page_table",
        "--profile",
        "ci",
        "--format",
        "wide",  # the replay line on one line (mail wraps it as a shell continuation)
        "--corpus",
        str(tmp_path),
    ]
    r = run_cli(*argv)
    assert r.returncode == 1, r.stderr
    assert "no_walk_of_freed_page_table breaks in" in r.stdout
    files = list(tmp_path.rglob("*.json"))
    assert len(files) == 1
    assert f"replay: tlbfuzz replay {files[0]}" in r.stdout
    r = run_cli(*argv)  # the same finding again: not saved twice
    assert "already in the corpus" in r.stdout
    assert list(tmp_path.rglob("*.json")) == files
    assert main(["replay", str(files[0])]) == 0


@pytest.mark.slow
def test_fuzz_clean_variant_exits_0(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = fuzz_ci(
        capsys, "linux-current", "request_integrity", tmp_path, "--max-examples", "100"
    )
    assert code == 0
    assert re.search(r"linux-current\s+held\s+\d+ examples, \d+ steps", out), out
    assert not list(tmp_path.rglob("*.json"))


@pytest.mark.slow
def test_user_variant_file_can_be_fuzzed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ref = str(ROOT / "examples" / "my_variant.py") + ":CAUGHT_UP_5_2"
    code, out, _ = fuzz_ci(
        capsys, ref, "tlb_gen_soundness", tmp_path, "--max-examples", "100", "--narrow-states", "0"
    )
    # today's caught-up check added to 5.2 is sound: it must hold, under the file's name
    assert code == 0, out
    assert re.search(re.escape(ref) + r"\s+held", out), out


def test_explore_finds_a_shortest_schedule(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "explore",
        "-v",
        "lazy-skip-freed-tables",
        "-p",
        "no_walk_of_freed_page_table",
        "--depth",
        "3",
    )
    assert code == 0
    assert "no violation up to depth 3" in out


def test_python_dash_m_fuzz_works() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "tlbfuzz.fuzz", "variants"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert r.returncode == 0
    assert "linux-5.2" in r.stdout


def test_explore_reports_each_broken_property_and_what_held(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(
        capsys,
        "explore",
        "-v",
        "rfc-async-posted",
        "--budget",
        "madvise=1",
        "-p",
        "no_use_after_free",
        "-p",
        "no_deadlock",
        "--depth",
        "9",
    )
    assert code == 1
    assert "shortest schedule breaking no_use_after_free: 9 steps" in out
    assert "no violation up to depth 9 (no_deadlock)" in out
    assert "broken: no_use_after_free" in out


def test_replay_on_another_variant_tells_the_races_it_keeps_from_those_it_closes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The author's intended RFC (rfc-async) against the posted one's corpus: waiting for
    csd unlock closes the posted use-after-free (the freeing step cannot run), and the 2019
    switch window stays (exit 1)."""
    results = tmp_path / "r.json"
    folder = ROOT / "corpus" / "rfc-async-posted"
    code, out, _ = run(capsys, "replay", "--on", "rfc-async", str(folder), "--json", str(results))
    assert code == 1, out
    posted = sorted(folder.glob("no_use_after_free-9-*.json"))[0]
    assert f"{posted}: rfc-async cannot take step 8 (CPU0 tlb_finish_mmu())" in out
    window = [line for line in out.splitlines() if line.startswith("BREAKS ")]
    assert window and all("no_use_after_free breaks on rfc-async too" in w for w in window), out
    records = json.loads(results.read_text())["results"]
    assert {r["variant"] for r in records} == {"rfc-async"}
    assert sum(r["verdict"] == "violates" for r in records) == len(window)
    assert out.splitlines()[-1].startswith(f"on rfc-async: {len(window)} break, ")


def test_replay_on_a_files_own_variant_breaks_it_as_the_file_says(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "replay", "--on", "rfc-async-posted", str(SAMPLE))
    assert code == 1
    assert out.startswith(f"BREAKS {SAMPLE}: no_use_after_free breaks on rfc-async-posted too")


def test_replay_on_an_unknown_variant_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, "replay", "--on", "nosuch", str(SAMPLE))
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and "nosuch" in err


def test_replay_on_says_a_file_expected_to_hold_breaks_there_without_saying_too(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (held,) = (ROOT / "corpus" / "rfc-async").glob("nmi_uaccess_safety-12-*.json")
    results = tmp_path / "r.json"
    code, out, _ = run(
        capsys, "replay", "--on", "rfc-async-no-nmi-check", str(held), "--json", str(results)
    )
    assert code == 1
    assert out.startswith(
        f"BREAKS {held}: nmi_uaccess_safety breaks on rfc-async-no-nmi-check at step 12 "
        "(on rfc-async it holds, as the file expects)"
    )
    (record,) = json.loads(results.read_text())["results"]
    assert (record["verdict"], record["expect"], record["steps"]) == ("violates", "holds", 12)


def test_replay_on_a_variant_file_lets_its_own_corpus_files_name_it_and_says_how_to_replay(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """--on FILE.py:NAME registers the file, as --variants would: a corpus of that variant
    replays without naming the file twice, and the JUnit case says the command in full."""
    ref = f"{ROOT / 'examples' / 'new_path.py'}:VARIANT"
    corpus, junit = tmp_path / "corpus", tmp_path / "r.xml"
    code, _, _ = fuzz_ci(capsys, ref, "no_use_after_free", corpus)
    assert code == 1
    (saved,) = corpus.rglob("*.json")
    code, out, _ = run(capsys, "replay", "--on", ref, str(saved), "--junit", str(junit))
    assert code == 1, out
    assert out.startswith(f"BREAKS {saved}: no_use_after_free breaks on {ref} too, at step 3")
    example = ROOT / "examples" / "new_path.py"
    assert f"tlbfuzz replay --variants {example} --on {ref} {saved}" in junit.read_text()


def test_replay_on_a_variant_whose_code_fails_names_the_corpus_file_and_exits_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def fails(*_: object) -> None:
        raise UserVariantError("mine.py:3: should_flush_tlb() raised RuntimeError")

    monkeypatch.setattr(cli, "replayed", fails)
    code, out, err = run(capsys, "replay", "--on", "rfc-async", str(SAMPLE))
    assert code == 2
    assert f"{SAMPLE}: replayed on rfc-async: mine.py:3: should_flush_tlb()" in err
    summary = "on rfc-async: 0 break, 0 hold, 0 cannot run, 1 failed in rfc-async's code"
    assert out.splitlines()[-1] == summary
