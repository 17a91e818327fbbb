"""The corpus: every saved schedule replays with its verdict, deterministically; bad input
gets one line naming the file and step; nothing saved is ever overwritten."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.schedules import ALL_SCHEDULES, SHORTEST
from tlbfuzz.fuzz.corpus import CorpusError, Entry, iter_files, load, replay, save, walk
from tlbfuzz.fuzz.user import UserVariantError, cli_variant
from tlbfuzz.protocol import VARIANTS, Config, parse

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "corpus"


def corpus_files(folder: Path) -> list[Path]:
    """The files the tests below replay: every ``*.json`` under ``folder``. Loading one runs
    no code (a user variant it names resolves only against files passed on the command line,
    and the tests pass none), so a .py beside a JSON is never imported."""
    return sorted(p for p in walk([folder]) if isinstance(p, Path))


FILES = corpus_files(CORPUS)


def test_every_concern_has_both_its_entries() -> None:
    """For each concern, the schedule that breaks it and the one that holds on the answering
    variant (identical entries of two concerns are stored once)."""
    saved = {
        (e.variant_ref, e.prop, e.expect, tuple(str(a) for a in e.schedule))
        for e in (load(p) for p in FILES)
    }
    for c in ALL_SCHEDULES:
        assert (c.variant, c.prop, "violates", c.schedule) in saved, c.key
        holds = c.holds_schedule or c.schedule
        assert (c.holds_on, c.prop, "holds", holds) in saved, c.key


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_corpus_file_replays_with_its_verdict(path: Path) -> None:
    r = replay(load(path))
    assert r.ok, r.message


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_corpus_replay_is_deterministic(path: Path) -> None:
    """Shuttle's check: two replays give identical snapshots, step by step."""
    e = load(path)
    a = replay(e, keep_snapshots=True)
    b = replay(e, keep_snapshots=True)
    assert a.snapshots == b.snapshots
    assert len(a.snapshots) == len(e.schedule) + 1


def test_every_concern_has_a_violating_entry_of_its_shortest_length() -> None:
    entries = [load(p) for p in FILES]
    for (variant, prop), n in SHORTEST.items():
        lengths = [
            len(e.schedule)
            for e in entries
            if e.variant_ref == variant and e.prop == prop and e.expect == "violates"
        ]
        assert lengths, f"no corpus entry for {variant} {prop}"
        assert min(lengths) == n, (variant, prop, lengths)


def _write(tmp_path: Path, name: str, d: object) -> Path:
    p = tmp_path / name
    p.write_text(json.dumps(d) if not isinstance(d, str) else d)
    return p


def _good() -> dict[str, object]:
    return json.loads(FILES[0].read_text())  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: "{not json", "not valid JSON"),
        (lambda d: {**d, "variant": "linux-9.9"}, "unknown variant 'linux-9.9'"),
        (lambda d: {**d, "property": "no_bugs"}, "unknown property 'no_bugs'"),
        (lambda d: {**d, "format": 99}, "unknown format 99"),
        (lambda d: {**d, "expect": "maybe"}, "expect must be"),
        (lambda d: {**d, "schedule": ["cpu0 user_read va=zz"]}, "step 1: bad value"),
        (lambda d: {**d, "config": {"cpus": 0}}, "config: cpus 0 is out of range 1-4"),
        (lambda d: {**d, "length": 99}, "says length 99"),
        (lambda d: [1, 2], "expected a JSON object"),
    ],
)
def test_bad_corpus_file_gives_one_line_naming_it(
    tmp_path: Path, mutate: object, message: str
) -> None:
    p = _write(tmp_path, "bad.json", mutate(_good()))  # type: ignore[operator]
    with pytest.raises(CorpusError, match=message) as info:
        load(p)
    assert str(p) in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_action_is_drift_naming_file_step_and_alternatives(tmp_path: Path) -> None:
    d = _good()
    sched = list(d["schedule"])  # type: ignore[call-overload]
    sched.insert(1, "cpu1 tlb_finish_mmu")
    d["schedule"], d["length"] = sched, len(sched)
    r = replay(load(_write(tmp_path, "drift.json", d)))
    assert not r.ok
    assert "drift at step 2: cpu1 tlb_finish_mmu is not enabled; cpu1 could do:" in r.message
    assert "drift.json" in r.message


def test_a_verdict_that_changed_is_reported(tmp_path: Path) -> None:
    e = next(load(p) for p in FILES if load(p).expect == "violates")
    flipped = Entry(e.variant, e.variant_ref, e.config, e.prop, "holds", e.schedule, path=tmp_path)
    r = replay(flipped)
    assert not r.ok
    assert "expected" in r.message


def test_unreadable_folder_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(CorpusError, match="no such file or folder"):
        list(iter_files([tmp_path / "missing"]))
    (tmp_path / "sub").mkdir()
    real_scandir = os.scandir

    def denied(path: str | Path) -> object:
        if Path(path).name == "sub":
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    # CI runs as root, where chmod cannot make a folder unreadable: make the walk fail instead
    monkeypatch.setattr(os, "scandir", denied)
    with pytest.raises(CorpusError, match="sub: cannot read folder: Permission denied"):
        list(iter_files([tmp_path]))


def test_user_variant_file_that_raises_on_import(tmp_path: Path) -> None:
    f = tmp_path / "v.py"
    f.write_text("import os\nraise RuntimeError('boom')\n")
    with pytest.raises(UserVariantError, match=r"v.py:2: raised RuntimeError: boom on import"):
        cli_variant(f"{f}:X")
    g = tmp_path / "w.py"
    g.write_text("X = 3\n")
    with pytest.raises(UserVariantError, match=r"w.py:1: X is not a tlbfuzz\.protocol\.Variant"):
        cli_variant(f"{g}:X")
    with pytest.raises(UserVariantError, match="No such file"):
        cli_variant(f"{tmp_path}/none.py:X")


def test_user_variant_from_a_file() -> None:
    v = cli_variant(str(ROOT / "examples" / "my_variant.py") + ":SKIP_SWITCHING_CPUS")
    assert v.name == "skip-switching-cpus"
    assert type(v).should_flush_tlb is not type(VARIANTS["linux-current"]).should_flush_tlb


def test_save_is_atomic_deduplicated_and_never_overwrites(tmp_path: Path) -> None:
    actions = tuple(parse(s) for s in ALL_SCHEDULES[0].schedule)
    e = Entry(
        VARIANTS["rfc-async-posted"],
        "rfc-async-posted",
        Config(),
        "no_use_after_free",
        "violates",
        actions,
    )
    p1, created1 = save(e, tmp_path)
    p2, created2 = save(e, tmp_path)
    assert created1
    assert not created2
    assert p1 == p2
    p1.write_text("precious")  # a file already there is never replaced
    assert save(e, tmp_path) == (p1, False)
    assert p1.read_text() == "precious"
    assert not [q for q in p1.parent.iterdir() if q.name.startswith(".tmp-")]
    shorter = Entry(e.variant, e.variant_ref, e.config, e.prop, e.expect, actions[:-1])
    p3, created3 = save(shorter, tmp_path)
    assert created3
    assert p3 != p1
