"""Corpus files of format 1 (before ``tlb_gather_mmu()`` was split from the PTE changes) still
replay, translated step for step, and ``python -m tlbfuzz.fuzz.upgrade`` rewrites them."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from tlbfuzz.fuzz import corpus, upgrade
from tlbfuzz.protocol import VARIANTS, World, parse

if TYPE_CHECKING:
    from pathlib import Path

    import pytest

# The race of rfc-async-posted/no_use_after_free-9-*.json as format 1 wrote it (8 steps).
OLD_SCHEDULE = [
    "cpu1 user_read va=0x1000",
    "cpu0 madvise_dontneed va=0x1000",
    "cpu0 tlb_finish_mmu__mm_tlb_flush_nested",
    "cpu0 flush_tlb_mm_range__inc_mm_tlb_gen",
    "cpu0 native_flush_tlb_multi__send_ipis",
    "cpu0 flush_tlb_mm_range__flush_tlb_func_local",
    "cpu0 tlb_finish_mmu",
    "cpu1 user_read va=0x1000",
]
FORMAT_1: dict[str, object] = {
    "format": 1,
    "variant": "rfc-async-posted",
    "property": "no_use_after_free",
    "expect": "violates",
    "length": 8,
    "config": {"cpus": 2, "budget": {"rest": None}, "reuse": True},
    "found": {"by": "hand"},
    "note": "",
    "schedule": OLD_SCHEDULE,
}


def _write(tmp_path: Path, d: dict[str, object], name: str = "old.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(d))
    return path


def test_a_format_1_file_replays_with_the_zap_after_its_start(tmp_path: Path) -> None:
    e = corpus.load(_write(tmp_path, FORMAT_1))
    assert e.format == 1
    assert [str(a) for a in e.schedule[1:3]] == [
        "cpu0 madvise_dontneed va=0x1000",
        "cpu0 zap_pte_range",
    ]
    r = corpus.replay(e)
    assert r.ok, r.message
    assert r.broke_at == 9


# cpu0's madvise starts while cpu1's writeback holds the PTL for its flush: in format 1 the
# start spun, and its merged step ran at the resume (``cpu0 madvise_dontneed``, no arguments).
_SPUN = [
    "cpu0 user_write va=0x2000",
    "cpu1 clear_page_dirty_for_io mm=A va=0x2000",
    "cpu0 madvise_dontneed va=0x2000",
    "cpu1 flush_tlb_mm_range__inc_mm_tlb_gen",
    "cpu1 native_flush_tlb_multi__send_ipis",
    "cpu1 flush_tlb_mm_range__flush_tlb_func_local",
    "cpu0 flush_smp_call_function_queue",
    "cpu0 flush_tlb_func",
    "cpu1 smp_call_function_many__csd_lock_wait",
    "cpu1 page_mkclean_one__set_pte_at",
]


def test_a_start_that_spun_on_the_ptl_gets_its_zap_where_it_resumed() -> None:
    old = [parse(s) for s in [*_SPUN, "cpu0 madvise_dontneed"]]
    new = upgrade.from_format_1(World.initial(VARIANTS["linux-current"]), old)
    spun = "cpu0 madvise_dontneed va=0x2000"
    assert [str(a) for a in new] == [*(s for s in _SPUN if s != spun), spun, "cpu0 zap_pte_range"]
    World.initial(VARIANTS["linux-current"]).run(new)  # every step enabled


def test_a_start_that_spun_opens_its_gather_where_format_1_resumed_it() -> None:
    """Format 1's spinning start had not opened its gather yet: the PTL holder's
    mm_tlb_flush_nested() must not see it (so the translation moves the start there)."""
    old = [parse(s) for s in [*_SPUN, "cpu0 madvise_dontneed"]]
    new = [str(a) for a in upgrade.from_format_1(World.initial(VARIANTS["linux-current"]), old)]
    assert new.index("cpu0 madvise_dontneed va=0x2000") == len(_SPUN) - 1
    assert new[-1] == "cpu0 zap_pte_range"


def test_a_munmap_resume_is_told_from_a_start_by_where_the_cpu_is() -> None:
    """``cpu0 munmap`` has no arguments: the same text starts munmap and resumes it."""
    w = World.initial(VARIANTS["linux-5.2"])
    assert [str(a) for a in upgrade.from_format_1(w, [parse("cpu0 munmap")])] == [
        "cpu0 munmap",
        "cpu0 unmap_vmas",
    ]


def test_a_step_that_is_not_enabled_ends_the_translation_and_replay_names_it(
    tmp_path: Path,
) -> None:
    d = {**FORMAT_1, "schedule": [*OLD_SCHEDULE[:2], "cpu0 tlb_finish_mmu"], "length": 3}
    e = corpus.load(_write(tmp_path, d))
    r = corpus.replay(e)
    assert r.drift
    assert "drift at step 4: cpu0 tlb_finish_mmu is not enabled" in r.message


def test_upgrade_rewrites_a_folder_and_keeps_a_file_whose_verdict_no_longer_matches(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = _write(tmp_path, FORMAT_1)
    assert upgrade.main([str(tmp_path)]) == 0
    assert not old.exists()
    (new,) = tmp_path.glob("*.json")
    assert new.name.startswith("no_use_after_free-9-")
    data = json.loads(new.read_text())
    assert (data["format"], data["length"]) == (corpus.FORMAT, 9)
    assert corpus.replay(corpus.load(new)).ok
    assert upgrade.main([str(tmp_path)]) == 0  # today's format: left alone
    assert list(tmp_path.glob("*.json")) == [new]
    holds = _write(tmp_path, {**FORMAT_1, "expect": "holds"}, "wrong.json")
    later = _write(tmp_path, FORMAT_1, "zz-old.json")  # after it: still upgraded
    assert upgrade.main([str(tmp_path)]) == 1
    assert "not upgraded" in capsys.readouterr().err
    assert holds.exists()  # its owner decides
    assert not later.exists()
