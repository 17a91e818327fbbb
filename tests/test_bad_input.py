"""Safe on any input: every bad input is one line on stderr naming the file (and step), exit
status 2, no traceback, and nothing saved changes; a corpus file never runs code; nothing
found is ever lost.

Most cases run ``tlbfuzz.fuzz.cli.main`` in this process, from a fresh working directory, and
compare every file under it and under the shipped ``corpus/`` before and after.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tlbfuzz.fuzz.cli import main
from tlbfuzz.fuzz.corpus import MAX_FILE_BYTES, CorpusError, load
from tlbfuzz.fuzz.runner import Finding, Held
from tlbfuzz.protocol import VARIANTS, Config, World, parse
from tlbfuzz.protocol.search import first_violation

if TYPE_CHECKING:
    from collections.abc import Callable

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "corpus"
GOOD = sorted((CORPUS / "rfc-async-posted").glob("no_use_after_free-9-*.json"))[0]


def good() -> dict[str, Any]:
    return json.loads(GOOD.read_text())  # type: ignore[no-any-return]


def tree(*roots: Path) -> dict[str, tuple[int, int, int]]:
    """Every file and folder under ``roots``: (mode, size, mtime) by path."""
    out = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in [*dirnames, *filenames]:
                p = os.path.join(dirpath, name)
                st = os.lstat(p)
                out[p] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working directory: default outputs (findings/) would appear here."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def one_line_error(
    capsys: pytest.CaptureFixture[str], here: Path, argv: list[str], code: int = 2
) -> tuple[str, str]:
    """Run the command; assert the exit status, exactly one line on stderr, no traceback,
    and that nothing under the working directory or the shipped corpus changed."""
    capsys.readouterr()
    before = tree(here, CORPUS)
    got = main(argv)
    out, err = capsys.readouterr()
    assert got == code, (out, err)
    assert err.count("\n") == 1, err
    assert err.endswith("\n")
    assert "Traceback" not in out + err
    assert tree(here, CORPUS) == before
    return out, err


def write_json(path: Path, d: object) -> Path:
    path.write_text(json.dumps(d))
    return path


# --- command-line options ---------------------------------------------------------------------

OPTIONS: list[tuple[list[str], str]] = [
    (["fuzz", "--max-examples", "0"], "0 is out of range 1-1,000,000"),
    (["fuzz", "--max-examples", "-5"], "-5 is out of range"),
    (["fuzz", "--max-examples", "1e3"], "'1e3' is not a whole number"),
    (["fuzz", "--max-examples", "9" * 5000], "is not a whole number"),
    (["fuzz", "--seconds", "-1"], "is not a number of seconds"),
    (["fuzz", "--seconds", "nan"], "is not a number of seconds"),
    (["fuzz", "--seconds", "inf"], "is not a number of seconds"),
    (["fuzz", "--seconds", "0"], "is not a number of seconds"),
    (["fuzz", "--seconds", "soon"], "'soon' is not a number"),
    (["fuzz", "--seed", "-1"], "-1 is out of range"),
    (["fuzz", "--seed", "1" * 5000], "is not a whole number"),
    (["fuzz", "--cpus", "0"], "0 is out of range 1-4"),
    (["fuzz", "--cpus", "5"], "5 is out of range 1-4"),
    (["fuzz", "--cpus", "2.5"], "'2.5' is not a whole number"),
    (["fuzz", "--profile", "weekly"], "invalid choice: 'weekly'"),
    (["fuzz", "-v", "linux-9.9"], "unknown variant 'linux-9.9'"),
    (["fuzz", "-v", "file.py:"], "unknown variant 'file.py:'"),
    (["fuzz", "-p", "no_bugs"], "unknown property 'no_bugs'"),
    (["fuzz", "-v", "missing.py:X"], "variant file missing.py: No such file or directory"),
    (["fuzz", "--bogus"], "unrecognized arguments: --bogus"),
    (["explore", "-v", "linux-5.2", "--cpus", "0"], "0 is out of range 1-4"),
    (["explore", "-v", "linux-5.2", "--cpus", "-1"], "-1 is out of range 1-4"),
    (["explore", "-v", "linux-5.2", "--cpus", "7"], "7 is out of range 1-4"),
    (["explore", "-v", "linux-5.2", "--depth", "-1"], "-1 is out of range 1-200"),
    (["explore", "-v", "linux-5.2", "--depth", "0"], "0 is out of range 1-200"),
    (["explore", "-v", "linux-5.2", "--max-states", "0"], "0 is out of range 1-20,000,000"),
    (["explore", "-v", "linux-5.2", "--budget", "madvise=\u00b2"], "bad --budget 'madvise=²'"),
    (["explore", "-v", "linux-5.2", "--budget", "madvise=-1"], "N must be a whole number 0-8"),
    (["explore", "-v", "linux-5.2", "--budget", "madvise=9"], "N must be a whole number 0-8"),
    (["explore", "-v", "linux-5.2", "--budget", "nope=1"], "bad --budget 'nope=1'"),
    (["explore", "-v", "linux-5.2", "--budget", "madvise=1,madvise=2"], "madvise given twice"),
    (["explore", "-v", "linux-5.2", "--budget", "madvise=1,"], "bad --budget ''"),
    (["explore", "-v", "nope"], "unknown variant 'nope'"),
    (["explore"], "the following arguments are required: -v/--variant"),
    ([], "the following arguments are required: cmd"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["replay", "/nonexistent/corpus"], "/nonexistent/corpus: no such file or folder"),
    (["show", "/nonexistent.json"], "/nonexistent.json: cannot read: No such file"),
    (["show", "/dev/zero"], "/dev/zero: not a regular file"),
    (["replay", "--variants", "/nonexistent.py", str(GOOD)], "No such file or directory"),
]


@pytest.mark.parametrize(("argv", "message"), OPTIONS, ids=lambda x: " ".join(x)[:40])
def test_bad_option_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], here: Path, argv: list[str], message: str
) -> None:
    _, err = one_line_error(capsys, here, argv)
    assert message in err


# --- corpus files -----------------------------------------------------------------------------


def _with(**changes: object) -> Callable[[dict[str, Any]], object]:
    return lambda d: {**d, **changes}


def _config(**changes: object) -> Callable[[dict[str, Any]], object]:
    return lambda d: {**d, "config": {**d["config"], **changes}}


def _budget(**changes: object) -> Callable[[dict[str, Any]], object]:
    return lambda d: {
        **d,
        "config": {**d["config"], "budget": {**d["config"]["budget"], **changes}},
    }


def _without(key: str) -> Callable[[dict[str, Any]], object]:
    return lambda d: {k: v for k, v in d.items() if k != key}


def _schedule(steps: list[object]) -> Callable[[dict[str, Any]], object]:
    return lambda d: {**d, "schedule": steps, "length": len(steps)}


CONTENTS: list[tuple[str, Callable[[dict[str, Any]], object], str]] = [
    ("array", lambda d: [1, 2], "expected a JSON object"),
    ("format-99", _with(format=99), "unknown format 99"),
    ("format-missing", _without("format"), "unknown format None"),
    ("unknown-field", _with(extra=1), "unknown field 'extra'"),
    ("variant-missing", _without("variant"), "missing field 'variant'"),
    ("variant-number", _with(variant=3), "field 'variant' must be str"),
    ("variant-unknown", _with(variant="linux-9.9"), "unknown variant 'linux-9.9'"),
    ("variant-long", _with(variant="x" * 500), "longer than 200 characters"),
    ("variant-user", _with(variant="helper.py:V"), "pass its file with --variants helper.py"),
    ("property", _with(property="no_bugs"), "unknown property 'no_bugs'"),
    ("expect", _with(expect="maybe"), "expect must be 'violates' or 'holds'"),
    ("config-array", _with(config=[2]), "field 'config' must be an object"),
    ("cpus-1e30", _config(cpus=10**30), "an integer of 31 digits"),
    ("cpus-2.5", _config(cpus=2.5), "config: cpus must be a whole number, not 2.5"),
    ("cpus-true", _config(cpus=True), "config: cpus must be a whole number, not True"),
    ("cpus-100000", _config(cpus=100000), "config: cpus 100000 is out of range 1-4"),
    ("cpus-0", _config(cpus=0), "config: cpus 0 is out of range 1-4"),
    ("cpus-string", _config(cpus="2"), "config: cpus must be a whole number, not '2'"),
    ("anon-10M", _config(anon_pages=10_000_000), "anon_pages 10000000 is out of range 0-8"),
    ("pages-sum", _config(anon_pages=5, file_pages=5), "10 pages (anon_pages + file_pages)"),
    ("no-page", _config(anon_pages=0, file_pages=0), "anon_pages + file_pages is 0"),
    ("mms-0", _config(mms=0), "config: mms 0 is out of range 1-4"),
    ("mms-100", _config(mms=100), "config: mms 100 is out of range 1-4"),
    ("asids-100", _config(asids=100), "config: asids 100 is out of range 1-6"),
    ("ceiling-neg", _config(tlb_single_page_flush_ceiling=-3), "out of range 1-512"),
    ("reuse-yes", _config(reuse="yes"), "config: reuse must be true or false"),
    ("config-unknown", _config(nodes=2), "config: unknown field 'nodes'"),
    ("budget-negative", _budget(madvise=-1), "budget madvise -1 is out of range 0-8"),
    ("budget-huge", _budget(switch=10**9), "budget switch 1000000000 is out of range 0-8"),
    ("budget-kind", _budget(fork=1), "unknown budget kind 'fork'"),
    ("budget-array", _config(budget=[1]), "config: budget must be an object"),
    ("schedule-string", _with(schedule="cpu0 munmap"), "'schedule' must be a list of actions"),
    ("step-number", _schedule(["cpu0 munmap", 7]), "step 2: not a string"),
    ("step-garbage", _schedule(["cpu0 user_read va=zz"]), "step 1: bad value 'zz' for va"),
    ("step-empty", _schedule([""]), "step 1: empty action"),
    ("step-long", _schedule(["cpu0 " + "x" * 10_000]), "step 1: longer than 200 characters"),
    ("steps-1001", _schedule(["cpu0 munmap"] * 1001), "1001 steps is over 1000"),
    ("length-99", _with(length=99), "says length 99 but holds 9 steps"),
    ("length-true", _with(length=True), "says length True"),
    ("found-array", _with(found=[1]), "field 'found' must be an object"),
    ("note-number", _with(note=5), "field 'note' must be a string"),
]


@pytest.mark.parametrize(("name", "mutate", "message"), CONTENTS, ids=[c[0] for c in CONTENTS])
def test_bad_corpus_file_is_one_line_naming_it(
    capsys: pytest.CaptureFixture[str],
    here: Path,
    name: str,
    mutate: Callable[[dict[str, Any]], object],
    message: str,
) -> None:
    p = write_json(here / f"{name}.json", mutate(good()))
    for command in ("replay", "show"):
        _, err = one_line_error(capsys, here, [command, str(p)])
        assert f"{p}: " in err
        assert message in err


RAW: list[tuple[str, bytes, str]] = [
    ("not-json", b"{", "not valid JSON (line 1"),
    ("empty", b"", "not valid JSON"),
    ("binary", b'{"format": 1, \xff\xfe\x00}', "not UTF-8 text (byte 0xff at offset 14)"),
    ("digits", b'{"format": 1' + b"0" * 5000 + b"}", "an integer of 5001 digits"),
    ("deep", b"[" * 100_000 + b"]" * 100_000, "not valid JSON (nested too deeply)"),
    ("nan", b'{"format": NaN}', "NaN is not a JSON number"),
]


@pytest.mark.parametrize(("name", "data", "message"), RAW, ids=[c[0] for c in RAW])
def test_unreadable_corpus_bytes_are_one_line(
    capsys: pytest.CaptureFixture[str], here: Path, name: str, data: bytes, message: str
) -> None:
    p = here / f"{name}.json"
    p.write_bytes(data)
    _, err = one_line_error(capsys, here, ["show", str(p)])
    assert f"{p}: " in err
    assert message in err


def test_a_huge_file_is_refused_unread(capsys: pytest.CaptureFixture[str], here: Path) -> None:
    p = here / "huge.json"
    with p.open("wb") as f:
        f.truncate(4 << 30)  # 4 GiB, sparse: read, it would take seconds and the memory
    _, err = one_line_error(capsys, here, ["show", str(p)])
    assert f"{p}: larger than 1 MiB" in err
    q = write_json(here / "padded.json", {**good(), "note": " " * MAX_FILE_BYTES})
    _, err = one_line_error(capsys, here, ["replay", str(q)])
    assert "larger than 1 MiB" in err


def test_special_files_are_refused_without_blocking(
    capsys: pytest.CaptureFixture[str], here: Path
) -> None:
    fifo = here / "fifo.json"
    os.mkfifo(fifo)  # opening it for reading would block until a writer came
    _, err = one_line_error(capsys, here, ["show", str(fifo)])
    assert f"{fifo}: not a regular file" in err
    _, err = one_line_error(capsys, here, ["show", str(here)])
    assert "is a folder, not a corpus file" in err


def test_a_symlink_loop_is_named_as_such(capsys: pytest.CaptureFixture[str], here: Path) -> None:
    loop = here / "loop.json"
    loop.symlink_to(loop)
    _, err = one_line_error(capsys, here, ["replay", str(loop)])
    assert "Too many levels of symbolic links" in err
    assert "no such file" not in err


# --- user variant files -----------------------------------------------------------------------

HEAD = """import attrs
from tlbfuzz.protocol import VARIANTS, Variant

"""
BASE = 'V = {cls}(**{{**attrs.asdict(VARIANTS["linux-5.2"], recurse=False), "name": "mine"}})\n'


def method(name: str, signature: str, body: str) -> str:
    return (
        HEAD
        + f"@attrs.frozen\nclass Mine(Variant):\n    def {name}(self, {signature}):\n"
        + f"        {body}\n\n\n"
        + BASE.format(cls="Mine")
    )


VARIANT_FILES: list[tuple[str, str, str]] = [
    ("import-raises", "import os\nraise RuntimeError('boom')\n", "x.py:2: raised RuntimeError"),
    ("import-exit-0", "import sys\nsys.exit(0)\n", "x.py:2: raised SystemExit: 0 on import"),
    ("import-ctrl-c", "\nraise KeyboardInterrupt\n", "x.py:2: raised KeyboardInterrupt on"),
    ("syntax", "V = (\n", "x.py:1: syntax error"),
    ("not-a-variant", "V = 3\n", "x.py:1: V is not a tlbfuzz.protocol.Variant"),
    ("missing-name", "W = 3\n", "variant file x.py has no 'V'"),
    (
        "switch-type",
        HEAD + 'V = attrs.evolve(VARIANTS["linux-5.2"], async_flush="yes")\n',
        "x.py:4: V: switch async_flush must be True or False, not 'yes'",
    ),
    (
        "method-raises",
        method("should_flush_tlb", "at, w, cpu, info", "return 1 // 0"),
        "x.py:7: should_flush_tlb() of x.py:V raised ZeroDivisionError",
    ),
    (
        "method-wrong-type",
        method("should_flush_tlb", "at, w, cpu, info", 'return "yes"'),
        "x.py:6: should_flush_tlb() of x.py:V returned 'yes' (str); want True or False",
    ),
    (
        "batch-order-drops",
        method("batch_order", "items", "return ()"),
        "x.py:6: batch_order() of x.py:V returned ()",
    ),
    (
        "flush-steps-int",
        method("flush_steps", "path", "return 5"),
        "x.py:6: flush_steps() of x.py:V returned 5 (int)",
    ),
    (
        "method-exits",
        method("nmi_uaccess_okay", "w, cpu", "raise SystemExit(0)"),
        "x.py:7: nmi_uaccess_okay() of x.py:V raised SystemExit",
    ),
]


@pytest.mark.parametrize(
    ("name", "source", "message"), VARIANT_FILES, ids=[c[0] for c in VARIANT_FILES]
)
def test_a_bad_user_variant_is_the_users_error_with_file_and_line(
    capsys: pytest.CaptureFixture[str], here: Path, name: str, source: str, message: str
) -> None:
    d = here / name
    d.mkdir()
    (d / "x.py").write_text(source)
    os.chdir(d)  # so that the file is named x.py, as typed
    _, err = one_line_error(capsys, d, ["fuzz", "-v", "x.py:V", "--max-examples", "1"])
    assert message in err


def test_a_variant_path_that_is_no_python_file(
    capsys: pytest.CaptureFixture[str], here: Path
) -> None:
    (here / "d.py").mkdir()
    _, err = one_line_error(capsys, here, ["fuzz", "-v", "d.py:V"])
    assert "variant file d.py: not a regular file" in err
    (here / "v.txt").write_text("V = 1\n")
    _, err = one_line_error(capsys, here, ["fuzz", "-v", "v.txt:V"])
    assert "variant file v.txt: not a .py file" in err
    (here / "none.py").write_text("X = 1\n")
    _, err = one_line_error(capsys, here, ["replay", "--variants", "none.py", str(GOOD)])
    assert "none.py defines no tlbfuzz.protocol.Variant" in err


# --- a corpus file runs no code ---------------------------------------------------------------

MARKER_CODE = """import pathlib
pathlib.Path({marker!r}).write_text("ran")
from tlbfuzz.protocol import VARIANTS
V = VARIANTS["rfc-async-posted"]
"""


def plant(folder: Path, marker: Path) -> Path:
    """A .py that writes ``marker`` when run, and a corpus JSON beside it that names it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "helper.py").write_text(MARKER_CODE.format(marker=str(marker)))
    return write_json(folder / "evil.json", {**good(), "variant": "helper.py:V"})


def test_replay_and_show_never_run_a_file_a_corpus_file_names(
    capsys: pytest.CaptureFixture[str], here: Path
) -> None:
    marker = here / "MARKER"
    evil = plant(here / "corpus" / "rfc-async-posted", marker)
    for argv in (["replay", str(evil)], ["show", str(evil)], ["replay", str(here / "corpus")]):
        for cwd in (here, evil.parent):  # beside the JSON, and in the working directory
            os.chdir(cwd)
            _, err = one_line_error(capsys, here, argv)
            assert "a corpus file never loads code" in err
            assert not marker.exists()
    for absolute in (str(evil.parent / "helper.py") + ":V", "/tmp/helper.py:V"):
        write_json(evil, {**good(), "variant": absolute})
        one_line_error(capsys, here, ["replay", str(evil)])
        assert not marker.exists()


def test_a_user_variant_resolves_only_against_files_the_user_passed(
    capsys: pytest.CaptureFixture[str], here: Path
) -> None:
    marker = here / "MARKER"
    evil = plant(here, marker)
    main(["replay", "--variants", str(here / "helper.py"), str(evil)])
    assert marker.exists()  # the user passed it: it ran, as they asked
    out, _ = capsys.readouterr()
    assert "evil.json: ok, breaks no_use_after_free at step 9" in out


def test_pytest_collection_of_the_corpus_runs_no_code_it_names(tmp_path: Path) -> None:
    """The test suite's own corpus collection (tests/test_corpus.py) on a corpus holding a
    JSON that names a .py beside it: loading reports the file, and the .py never runs."""
    from tests.test_corpus import corpus_files

    marker = tmp_path / "MARKER"
    evil = plant(tmp_path / "corpus" / "x", marker)
    files = corpus_files(tmp_path / "corpus")
    assert files == [evil]
    with pytest.raises(CorpusError, match="a corpus file never loads code"):
        load(files[0])
    assert not marker.exists()


@pytest.mark.slow
def test_pytest_run_over_a_planted_corpus_runs_no_code_it_names(tmp_path: Path) -> None:
    """The same, end to end: pytest in a subprocess over a copy of tests/ whose corpus/ holds
    the planted pair."""
    import shutil

    marker = tmp_path / "MARKER"
    shutil.copytree(
        ROOT / "tests", tmp_path / "tests", ignore=shutil.ignore_patterns("__pycache__")
    )
    plant(tmp_path / "corpus" / "rfc-async-posted", marker)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_corpus.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert "a corpus file never loads code" in r.stdout, r.stdout[-2000:]
    assert r.returncode == 1  # the planted file fails its tests; nothing ran
    assert not marker.exists()


# --- replay of a folder -----------------------------------------------------------------------


def test_replay_of_a_folder_goes_on_past_bad_files_and_counts_them(
    capsys: pytest.CaptureFixture[str], here: Path
) -> None:
    d = here / "c"
    d.mkdir()
    (d / "a-binary.json").write_bytes(b"\x00\xff" * 100)
    write_json(d / "b-good.json", good())
    (d / "c-loop.json").symlink_to(d / "c-loop.json")
    (d / "d-dangling.json").symlink_to(d / "nowhere")
    (d / "sub").mkdir()
    (d / "sub" / "up").symlink_to(d)  # a folder that contains itself
    write_json(d / "sub" / "z-good.json", good())
    capsys.readouterr()
    assert main(["replay", str(d)]) == 2
    out, err = capsys.readouterr()
    assert out.count(": ok, breaks no_use_after_free") == 2  # the files after the bad ones too
    assert "2 passed, 0 failed, 4 unreadable" in out
    assert "a-binary.json: not UTF-8 text" in err
    assert "c-loop.json: cannot read: Too many levels of symbolic links" in err
    assert "d-dangling.json: cannot read: No such file" in err
    assert "sub/up: symlink loop" in err
    assert "Traceback" not in out + err


def test_an_unreadable_subfolder_is_reported_not_skipped(
    capsys: pytest.CaptureFixture[str], here: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_json(here / "good.json", good())
    (here / "locked").mkdir()
    real = os.scandir

    def scandir(path: Any) -> Any:
        if Path(path).name == "locked":  # as root, chmod 000 does not stop a read
            raise PermissionError(errno.EACCES, "Permission denied")
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    capsys.readouterr()
    assert main(["replay", str(here)]) == 2
    out, err = capsys.readouterr()
    assert "1 passed, 0 failed, 1 unreadable" in out
    assert f"{here / 'locked'}: cannot read folder: Permission denied" in err


# --- outputs are checked first; a finding is printed before it is saved -----------------------


def test_corpus_that_is_a_file_fails_before_fuzzing(
    capsys: pytest.CaptureFixture[str], here: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tlbfuzz.fuzz.runner

    def never(*args: object, **kwargs: object) -> list[object]:
        raise AssertionError("fuzzed before checking the corpus folder")

    monkeypatch.setattr(tlbfuzz.fuzz.runner, "fuzz_variant", never)
    f = here / "file"
    f.write_text("x")
    _, err = one_line_error(capsys, here, ["fuzz", "-v", "linux-5.2", "--corpus", str(f)])
    assert f"--corpus {f}: not a folder" in err
    _, err = one_line_error(capsys, here, ["fuzz", "--corpus", str(f / "sub")])
    assert "not a folder" in err or "Not a directory" in err
    argv = ["explore", "-v", "linux-5.2", "--save", "--corpus", str(f)]
    _, err = one_line_error(capsys, here, argv)
    assert "not a folder" in err


def test_read_only_corpus_fails_before_fuzzing(
    capsys: pytest.CaptureFixture[str], here: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tlbfuzz.fuzz.runner

    monkeypatch.setattr(tlbfuzz.fuzz.runner, "fuzz_variant", lambda *a, **k: [])
    ro = here / "ro"
    ro.mkdir()
    if os.geteuid() != 0:
        ro.chmod(0o555)
    else:  # root writes through mode bits: fail the probe's write as a read-only mount would

        def read_only(*args: object, **kwargs: object) -> tuple[int, str]:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))

        monkeypatch.setattr(tempfile, "mkstemp", read_only)
    try:
        _, err = one_line_error(capsys, here, ["fuzz", "-v", "linux-5.2", "--corpus", str(ro)])
    finally:
        ro.chmod(0o755)
    assert f"--corpus {ro}: cannot write there" in err


def _finding(variant: str, schedule: list[str], cpus: int = 2) -> Finding:
    v = VARIANTS[variant]
    config = Config(cpus=cpus)
    actions = [parse(s) for s in schedule]
    hit = first_violation(World.initial(v, config), actions, ["no_use_after_free"])
    assert hit is not None
    return Finding(v, config, "no_use_after_free", hit[1], actions, 20, 5, 100, 0.1)


SWAPPED = [  # GOOD's race with the CPUs named the other way round, and a user write as the fill
    "cpu1 user_write va=0x1000",
    "cpu0 madvise_dontneed va=0x1000",
    "cpu0 zap_pte_range",
    "cpu0 tlb_finish_mmu__mm_tlb_flush_nested",
    "cpu0 flush_tlb_mm_range__inc_mm_tlb_gen",
    "cpu0 native_flush_tlb_multi__send_ipis",
    "cpu0 flush_tlb_mm_range__flush_tlb_func_local",
    "cpu0 tlb_finish_mmu",
    "cpu1 user_read va=0x1000",
]


@pytest.fixture
def fake_fuzz(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """fuzz_variant replaced: it reports what the test puts in the list, in order (a
    callable is called first: to break something mid-run)."""
    import tlbfuzz.fuzz.runner

    script: list[object] = []

    def fake(variant: object, props: list[str], **kwargs: Any) -> list[object]:
        while script:
            item = script.pop(0)
            if callable(item):
                item()
                continue
            kwargs["on_outcome"](item)
        return []

    monkeypatch.setattr(tlbfuzz.fuzz.runner, "fuzz_variant", fake)
    return script


def test_a_finding_is_printed_before_saving_and_a_failed_save_loses_nothing(
    capsys: pytest.CaptureFixture[str], here: Path, fake_fuzz: list[object]
) -> None:
    corpus = here / "out"
    folder = corpus / "rfc-async-posted"

    def folder_becomes_a_file() -> None:  # after the check: the save itself fails
        folder.write_text("in the way")

    fake_fuzz += [folder_becomes_a_file, _finding("rfc-async-posted", list(good()["schedule"]))]
    argv = ["fuzz", "-v", "rfc-async-posted", "-v", "rfc-async", "-p", "no_use_after_free"]
    argv += ["--workers", "1"]  # the fake fuzz_variant exists in this process only
    capsys.readouterr()
    assert main([*argv, "--corpus", str(corpus)]) == 1  # found: 1, though not saved
    out, err = capsys.readouterr()
    assert "rfc-async-posted: no_use_after_free breaks in 9 steps" in out  # on screen
    assert "NOT saved" in out
    assert err.count("\n") == 1
    assert "could not save the finding above" in err
    assert "Traceback" not in out + err
    assert "rfc-async " in out  # the run went on to the next variant


def test_one_race_is_one_file_whatever_the_cpu_numbering_or_fill(
    capsys: pytest.CaptureFixture[str], here: Path, fake_fuzz: list[object]
) -> None:
    old = os.umask(0o022)
    try:
        fake_fuzz += [_finding("rfc-async-posted", list(good()["schedule"]))]
        assert main(["fuzz", "-v", "rfc-async-posted", "-p", "no_use_after_free"]) == 1
        fake_fuzz += [_finding("rfc-async-posted", SWAPPED)]
        assert main(["fuzz", "-v", "rfc-async-posted", "-p", "no_use_after_free"]) == 1
    finally:
        os.umask(old)
    out, _ = capsys.readouterr()
    files = list((here / "findings").rglob("*.json"))  # the default: not the tracked corpus
    assert len(files) == 1
    assert "already in the corpus" in out
    assert out.count("Why: CPU1 user reads 0x1000") == 2  # the canonical schedule's own words
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o644
    assert load(files[0]).found["seed"] is not None  # dev draws a seed and records it


def test_a_cell_is_never_held_when_nothing_was_checked(
    capsys: pytest.CaptureFixture[str], here: Path, fake_fuzz: list[object]
) -> None:
    fake_fuzz += [Held(VARIANTS["linux-5.2"], "no_deadlock", 0, 0, 0.0)]
    out, err = one_line_error(
        capsys, here, ["fuzz", "-v", "linux-5.2", "-p", "no_deadlock", "--corpus", "/tmp"]
    )
    assert "was not checked" in err
    assert "held" not in out.split("(a number")[0]


MIDRUN = (
    HEAD
    + """import itertools
COUNT = itertools.count()


@attrs.frozen
class Late(Variant):
    def nmi_uaccess_okay(self, w, cpu):
        if next(COUNT) > 400:  # after the probe (about 200 calls), during fuzzing
            raise ValueError("late")
        return super().nmi_uaccess_okay(w, cpu)


"""
    + BASE.format(cls="Late")
)


@pytest.mark.slow
def test_a_variant_failing_mid_run_is_an_error_cell_and_the_run_goes_on(
    capsys: pytest.CaptureFixture[str], here: Path
) -> None:
    (here / "late.py").write_text(MIDRUN)
    argv = ["fuzz", "-v", "late.py:V", "-v", "linux-current", "-p", "no_deadlock"]
    argv += ["--max-examples", "200", "--seed", "1", "--corpus", str(here / "out")]
    capsys.readouterr()
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1
    assert "late.py:12: nmi_uaccess_okay() of late.py:V raised ValueError: late" in err
    rows = {
        line.split()[0]: line
        for line in out.splitlines()
        if line.startswith(("late.py:V ", "linux-current "))
    }
    assert "error" in rows["late.py:V"]
    assert "held" not in rows["late.py:V"]
    assert "held" in rows["linux-current"]


# --- Hypothesis profiles ----------------------------------------------------------------------


def test_profiles_do_not_inherit_from_hypothesis_ci_profile() -> None:
    """With CI set, Hypothesis loads its own ci profile (derandomized) as the default before
    ours are built; dev must still draw fresh examples."""
    code = (
        "from tlbfuzz.fuzz.profiles import PROFILES as P;"
        "print(P['dev'].derandomize, P['nightly'].derandomize, P['ci'].derandomize,"
        " P['dev'].print_blob)"
    )
    env = {**os.environ, "CI": "true", "PYTHONPATH": str(ROOT)}
    r = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert r.stdout.split() == ["False", "False", "True", "False"]


@pytest.mark.slow
def test_pytest_can_load_our_profiles() -> None:
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--hypothesis-profile=tlbfuzz-ci",
            "tests/test_world.py::test_same_actions_same_snapshots",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 passed" in r.stdout


def test_dev_runs_draw_a_seed_and_print_it(
    capsys: pytest.CaptureFixture[str], here: Path, fake_fuzz: list[object]
) -> None:
    fake_fuzz += [Held(VARIANTS["linux-5.2"], "no_deadlock", 3, 30, 0.1)]
    assert main(["fuzz", "-v", "linux-5.2", "-p", "no_deadlock"]) == 0
    out, _ = capsys.readouterr()
    assert "seed " in out
    assert "(--seed " in out


@pytest.mark.slow
def test_a_dev_run_repeats_with_its_seed(tmp_path: Path) -> None:
    from tests.clirun import run_cli

    argv = ["fuzz", "-v", "linux-current", "-p", "no_deadlock", "--max-examples", "40"]
    first = run_cli(*argv, "--corpus", str(tmp_path))
    seed = first.stdout.split("(--seed ")[1].split()[0]
    again = run_cli(*argv, "--seed", seed, "--corpus", str(tmp_path))
    row = [line for line in first.stdout.splitlines() if line.startswith("linux-current")]
    assert row == [line for line in again.stdout.splitlines() if line.startswith("linux-current")]
    assert row
