"""The mail format: 72 columns for every corpus schedule, C names, notes, titles by expect, a
replay command that still pastes, and the pasteable pytest reproducer."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import attrs
import pytest

from tests.schedules import CONCERNS
from tlbfuzz.fuzz.cli import main
from tlbfuzz.fuzz.corpus import iter_files, load
from tlbfuzz.fuzz.mail import WIDTH, c_text, prose, render_mail, shell_lines
from tlbfuzz.fuzz.reproducer import function_name, render_python
from tlbfuzz.protocol import VARIANTS, Config, parse
from tlbfuzz.protocol.world import HW_OPS, IRQ_OPS

STEPS = {  # every kernel step of every built-in variant (kernel paths are records)
    st.name for v in VARIANTS.values() for p in v.paths().values() for st in v.path_steps(p)
}

ROOT = Path(__file__).resolve().parent.parent
CORPUS = sorted(iter_files([ROOT / "corpus"]))
REL = [f.relative_to(ROOT) for f in CORPUS]


def mail_of(path: Path) -> str:
    e = load(ROOT / path)
    return render_mail(
        e.variant,
        e.config,
        e.schedule,
        e.prop,
        replay_cmd=f"tlbfuzz replay {path}",
        expect=e.expect,
    )


@pytest.mark.parametrize("path", REL, ids=str)
def test_every_corpus_schedule_fits_in_72_columns(path: Path) -> None:
    text = mail_of(path)
    too_wide = [line for line in text.splitlines() if len(line) > WIDTH]
    assert not too_wide, "\n".join(too_wide)


def test_op_names_become_c_function_names() -> None:
    assert c_text(parse("cpu0 flush_tlb_mm_range__inc_mm_tlb_gen")) == "inc_mm_tlb_gen()"
    assert c_text(parse("cpu0 native_flush_tlb_multi__send_ipis")) == "native_flush_tlb_multi()"
    assert c_text(parse("cpu0 native_flush_tlb_others__send_ipis")) == ("native_flush_tlb_others()")
    assert c_text(parse("cpu1 flush_tlb_func")) == "flush_tlb_func()"
    assert c_text(parse("cpu1 smp_call_function_many__csd_lock_wait")) == "csd_lock_wait()"
    assert c_text(parse("cpu0 madvise_dontneed va=0x1000")) == "madvise(0x1000, MADV_DONTNEED)"
    assert c_text(parse("cpu1 tlb_fill va=0x1000")) == "TLB fill 0x1000 (speculative)"
    assert c_text(parse("cpu1 switch_mm_irqs_off__cpumask_set_cpu next=B")) == (
        "switch_mm_irqs_off(B)"
    )


@pytest.mark.parametrize("op", sorted({*STEPS, *IRQ_OPS, "flush_smp_call_function_queue"}))
def test_no_model_identifier_reaches_the_mail(op: str) -> None:
    """Every kernel step prints as C (a call, or an assignment), never as path__step."""
    text = c_text(parse(f"cpu0 {op}"))
    assert "__" not in text
    assert text.endswith(")") or "=" in text or text == "tlb_gen check", text


@pytest.mark.parametrize("op", sorted(HW_OPS | {"nmi"}))
def test_hardware_events_are_plain_words(op: str) -> None:
    args = "asid=0" if op == "pwc_evict" else "asid=0 va=0x1000" if op == "tlb_evict" else ""
    text = c_text(parse(f"cpu0 {op} {args or 'va=0x1000'}"))
    assert "_" not in text.replace("copy_from_user_nmi", ""), text


def test_the_lost_write_shows_the_write_that_makes_the_page_newer_than_disk() -> None:
    (path,) = [p for p in REL if p.name.startswith("no_lost_write-8-")]
    lines = mail_of(path).splitlines()
    last = max(i for i, line in enumerate(lines) if re.match(r" 8  ", line))
    notes = "\n".join(lines[last + 1 : last + 4])
    assert "pfn 2 written: memory now newer than disk" in notes
    assert "// <-- no_lost_write" in notes


def test_a_holds_file_is_not_titled_as_a_break(capsys: pytest.CaptureFixture[str]) -> None:
    holds = [p for p in REL if load(ROOT / p).expect == "holds"]
    assert holds
    for p in holds:
        first = mail_of(p).splitlines()[0]
        assert "breaks" not in first
        assert "holds over these" in first


@pytest.mark.parametrize("concern", CONCERNS, ids=lambda c: c.key)
def test_review_concerns_read_as_cpu_columns_with_c_names_and_notes(concern: object) -> None:
    from tests.schedules import Concern

    assert isinstance(concern, Concern)
    v = VARIANTS[concern.variant]
    text = render_mail(v, concern.config, [parse(s) for s in concern.schedule], concern.prop)
    lines = text.splitlines()
    head = next(i for i, line in enumerate(lines) if line.strip().startswith("CPU0"))
    assert re.fullmatch(r" {4}CPU0 +CPU1", lines[head])
    assert re.fullmatch(r" {4}---- +----", lines[head + 1])
    assert re.search(r"^ 1  ", lines[head + 2], re.M)
    assert any(line.strip().startswith("// ") for line in lines)
    assert f"// <-- {concern.prop}\n" in text + "\n"
    assert "Why: " in text
    assert "Models: " in text
    assert "__" not in "\n".join(lines[head:])


def test_too_many_cpus_for_columns_becomes_one_line_per_step() -> None:
    three = [p for p in REL if load(ROOT / p).config.cpus == 3]
    assert three
    text = mail_of(three[0])
    assert "    CPU0  " not in text
    assert re.search(r"^ 1  CPU\d  \S", text, re.M)


def test_the_link_line_names_the_patch_mail() -> None:
    text = mail_of(next(p for p in REL if p.parts[1] == "rfc-async-posted"))
    assert "Link: https://lore.kernel.org/r/20190531063645.4697-12-namit@vmware.com" in text


def test_a_long_replay_command_still_pastes_into_a_shell() -> None:
    cmd = "tlbfuzz replay /" + "very-long-folder-name/" * 5 + "no_use_after_free-7-abc.json"
    lines = shell_lines(cmd)
    assert len(lines) > 1
    assert all(len(line) <= WIDTH for line in lines)
    r = subprocess.run(
        ["bash", "-c", "set -- " + "\n".join(lines) + '\nprintf "%s\\n" "$@"'],
        capture_output=True,
        text=True,
        check=True,
    )
    assert r.stdout.split() == cmd.split()


def test_show_defaults_to_mail(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", str(ROOT / REL[0])]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= WIDTH
    assert "Replay:" in out


@pytest.mark.parametrize("path", REL, ids=str)
def test_show_format_python_is_a_passing_test(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["show", "--format", "python", str(ROOT / path)]) == 0
    source = capsys.readouterr().out
    e = load(ROOT / path)
    assert source == render_python(e)
    namespace: dict[str, object] = {}
    exec(compile(source, str(path), "exec"), namespace)
    test = namespace[function_name(e)]
    assert callable(test)
    test()


def test_python_reproducer_fails_when_the_verdict_changes() -> None:
    """The printed assert is the file's verdict, so it would catch a model change."""
    (path,) = [p for p in REL if p.name.startswith("no_lost_write-8-")]
    e = load(ROOT / path)
    lines = render_python(e).splitlines()
    last_write = max(i for i, line in enumerate(lines) if "cpu1 user_write" in line)
    truncated = "\n".join(lines[:last_write] + lines[last_write + 1 :])
    namespace: dict[str, object] = {}
    exec(compile(truncated, "x", "exec"), namespace)
    test = namespace[function_name(e)]
    assert callable(test)
    with pytest.raises(AssertionError):
        test()


def test_python_reproducer_names_only_non_default_config() -> None:
    # a loaded file's budget names every kind (tlbfuzz.protocol.Config.resolved): take one, at
    # default
    e = attrs.evolve(load(ROOT / REL[0]), config=Config())
    text = render_python(e)
    assert "Config()" in text
    assert "Budget" not in text


def test_prose_never_parts_an_option_from_its_value_or_at_its_hyphens() -> None:
    """A narrowed model is named as explore's options; wrapped at any width, every line
    still holds ``--file-pages 0`` whole (before, the mail broke it after ``--file-pages``)."""
    model = "cpu0:madvise=1 cpu1:switch=2 (--mms 1 --file-pages 0 --memory-model tso)"
    text = f"In the narrowed model {model}, linux-current holds no_use_after_free: --narrow-states"
    for width in range(30, 90):
        lines = prose(text, width, "", "  ")
        assert " ".join(" ".join(lines).split()) == text
        joined = "\n".join(lines)
        for option in ("--mms 1", "--file-pages 0", "--memory-model tso", "--narrow-states"):
            assert option in joined, (width, lines)


def test_prose_glues_an_option_to_the_next_word_only_where_both_fit_on_a_line() -> None:
    assert prose("see --narrow-states and then some more text", 18) == [
        "see",
        "--narrow-states",
        "and then some more",
        "text",
    ]
