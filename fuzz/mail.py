"""Schedules as a reviewer pastes them into a mail: at most 72 columns, whatever the schedule.

Modelled on the interleaving diagrams of Linux's ``Documentation/memory-barriers.txt`` and the
comments in ``arch/x86/mm/tlb.c``: one column per CPU (``CPU0``, ``CPU1``), each as wide as
its longest step, kernel functions named as in C (``inc_mm_tlb_gen()``), and what a step
changed as ``// ...`` notes under it. When the CPUs' columns do not fit, each step becomes one
line of its own with the CPU in front (the per-CPU block form). Then the broken property and
why, in plain words, the variant's kernel reference (``Link:`` for a mail's message id) and the
command that replays the schedule.

``c_text(action)`` is the one place that turns the model's op names into C: by rule (the part
of ``path__step`` that is a kernel function, with ``()``), plus the ``C_NAMES`` table for
steps that are not a function call and for hardware events, which are said in plain words.
"""

from __future__ import annotations

import contextlib
import re
import textwrap
from typing import TYPE_CHECKING, Final

from tlbfuzz.protocol import GLOBAL, PROPERTIES, VARIANTS, World
from tlbfuzz.protocol.state import (
    ANON,
    COPIED,
    FILE,
    FREE,
    INIT_MM,
    NO_PFN,
    PGTABLE,
    for_each_cpu,
    mm_name,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from tlbfuzz.protocol import Action, Config, Variant, Violation
    from tlbfuzz.protocol.tso import Store

WIDTH: Final = 72
GAP: Final = 2
"""Blanks between two CPU columns."""
NUM: Final = 4
"""The step-number column: ``NN`` and two blanks."""

C_NAMES: Final[dict[str, str]] = {
    # the IPI handler's steps, which are not steps of a kernel path
    "csd_unlock": "csd_unlock()",
}
"""Op name -> C for the IPI handler's steps. A kernel path's steps say how a reviewer writes
them in their own records (``tlbfuzz.protocol.paths.Step.c``): ``STEP_C``."""


def _step_c() -> dict[str, str]:
    out: dict[str, str] = {}
    for v in VARIANTS.values():
        for p in v.paths().values():
            for st in v.path_steps(p):
                out.setdefault(st.name, st.c)
    return out


STEP_C: Final = _step_c()
"""Every built-in step's C, from its record (one place: the step's declaration)."""

HARDWARE: Final[dict[str, Callable[[Action], str]]] = {
    "user_read": lambda a: f"user reads {_va(a)}",
    "user_write": lambda a: f"user writes {_va(a)}",
    "tlb_fill": lambda a: f"TLB fill {_va(a)} (speculative)",
    "tlb_evict": lambda a: f"TLB evicts {_va(a)}",
    "pwc_evict": lambda _a: "paging-structure cache evicts",
    "store_buffer_drain": lambda _a: "store buffer drains",
    "nmi": lambda a: f"NMI: copy_from_user_nmi({_va(a)})",
    "alloc_page": lambda a: f"alloc_page(): pfn {a.arg('pfn')} to {_to(a.arg('to'))}",
    "tlb_remove_table_rcu": lambda a: f"RCU: tlb_remove_table_rcu() frees pfn {a.arg('pfn')}",
}
"""Hardware events and the page allocator, in plain words."""

PATH_STARTS: Final[dict[str, Callable[[Action], str]]] = {
    "madvise_dontneed": lambda a: f"madvise({_va(a)}, MADV_DONTNEED)",
    "mprotect": lambda a: f"mprotect({_va(a)}, PROT_READ)",
    "munmap": lambda _a: "munmap()",
    "clear_page_dirty_for_io": lambda a: (
        f"clear_page_dirty_for_io({mm_name(a.arg('mm'))}:{_va(a)})"
    ),
    "local_irq_disable": lambda _a: "local_irq_disable()",
    "smp_call_function_single": lambda a: f"smp_call_function_single({a.arg('target')})",
    "enter_lazy_tlb": lambda _a: "enter_lazy_tlb()",
    "unmap_mapping_range": lambda a: f"truncate_pagecache({mm_name(a.arg('mm'))}:{_va(a)})",
    "try_to_unmap_one": lambda a: f"reclaim: try_to_unmap({mm_name(a.arg('mm'))}:{_va(a)})",
    "gup_fast": lambda a: f"get_user_pages_fast({_va(a)})",
}
"""A kernel path started with its arguments, written as the call that starts it."""


def _va(a: Action) -> str:
    return f"{a.arg('va'):#x}"


def _to(to: int) -> str:
    return "a device" if to == 0 else f"mm {mm_name(to)}"


def c_text(action: Action) -> str:
    """The action as a kernel engineer writes it: C function names with ``()``, hardware
    events in plain words. The single mapping from op names to C (see the module doc)."""
    op = action.op
    for table in (HARDWARE, PATH_STARTS):
        if op in table:
            with contextlib.suppress(KeyError):  # an argument missing: fall back to the rule
                return table[op](action)
    path, sep, step = op.partition("__")
    if action.args and sep:  # a path started at a step of its own: switch_mm_irqs_off(next)
        nxt = dict(action.args).get("next")
        return f"{path}({mm_name(nxt) if nxt is not None else ''})"
    if op in STEP_C:
        return STEP_C[op]
    if op in C_NAMES:
        return C_NAMES[op]
    return f"{step if sep else op}()"


def step_words(action: Action) -> str:
    """A step as the mail names it: who, then what (``CPU1 zap_and_free()``)."""
    who = "alloc" if action.cpu == GLOBAL else f"CPU{action.cpu}"
    return f"{who} {c_text(action)}"


# --- what a step changed, in plain words ----------------------------------------------------


def _mm(m: int) -> str:
    return mm_name(m) if m >= INIT_MM else "LOADED_MM_SWITCHING"


def _bits(writable: bool, dirty: bool) -> str:
    return ("writable" if writable else "read-only") + (", dirty" if dirty else "")


def machine(config: Config) -> str:
    """``2 CPUs``, or ``2 CPUs, x86-TSO`` when stores wait in store buffers."""
    tso = f", x86-TSO, {config.store_buffer}-entry store buffers"
    return f"{config.cpus} CPUs" + (tso if config.memory_model == "tso" else "")


def store_buffer_changes(b: tuple[Store, ...], a: tuple[Store, ...]) -> list[str]:
    """What a step did to a store buffer: stores drained to memory (from the front), stores
    buffered (at the back)."""
    drained = next(k for k in range(len(b) + 1) if a[: len(b) - k] == b[k:])
    out = [f"{s.loc} = {_value(s.loc, s.value)} reaches memory" for s in b[:drained]]
    out += [f"store buffer: {s.loc} = {_value(s.loc, s.value)}" for s in a[len(b) - drained :]]
    return out


def _value(var: object, v: int) -> str:
    if var == "is_lazy":
        return ("false", "true")[v]
    return mm_name(v) if var == "loaded_mm" else str(v)


def effects(before: World, after: World) -> list[str]:
    """What one step changed, most telling first, each in a few plain words. A CPU's own
    state is prefixed with its name, shared state (mms, pages, csds) with the object."""
    out: list[str] = []
    for cpu, (b, a) in enumerate(zip(before.cpus, after.cpus, strict=True)):
        p = f"CPU{cpu} "
        if b.loaded_mm != a.loaded_mm:
            out.append(f"{p}loaded_mm = {_mm(a.loaded_mm)}")
        if b.cr3_mm != a.cr3_mm:
            out.append(f"{p}CR3 = mm {_mm(a.cr3_mm)}")
        if b.store_buffer != a.store_buffer:
            out.extend(p + e for e in store_buffer_changes(b.store_buffer, a.store_buffer))
        if b.is_lazy != a.is_lazy:
            out.append(f"{p}{'enters' if a.is_lazy else 'leaves'} lazy TLB mode")
        if b.task != a.task:
            out.append(f"{p}runs " + ("a kernel thread" if not a.task else f"mm {_mm(a.task)}"))
        for k in sorted(b.tlb.keys() - a.tlb.keys()):
            out.append(f"{p}TLB: {k[1]:#x} dropped")
        for k in sorted(a.tlb.keys()):
            e = a.tlb[k]
            if b.tlb.get(k) != e:
                out.append(f"{p}TLB: {k[1]:#x} -> pfn {e.pfn}, {_bits(e.writable, e.dirty)}")
        if b.pwc != a.pwc:
            pw = a.pwc.get(a.cr3_asid)
            out.append(
                f"{p}caches PMD -> page table pfn {pw.pfn}" if pw else f"{p}cached PMD dropped"
            )
        for asid, (was, now) in enumerate(zip(b.ctxs, a.ctxs, strict=True)):
            if was != now and was[1] != now[1]:
                out.append(f"{p}local tlb_gen {was[1]} -> {now[1]} (ASID {asid})")
        if len(a.queue) > len(b.queue):
            out.append(f"csd queued on CPU{cpu}" + (", IPI sent" if a.ipi_pending else ""))
        elif a.ipi_pending and not b.ipi_pending:
            out.append(f"IPI sent to CPU{cpu}")
        if b.irqs_on != a.irqs_on:
            out.append(f"{p}IRQs {'on' if a.irqs_on else 'off'}")
        if b.async_func_in_progress != a.async_func_in_progress:
            out.append(f"{p}async_func_in_progress = {a.async_func_in_progress or 'NULL'}")
        lb, la = b.locals, a.locals
        if lb.ptl != la.ptl:
            out.append(f"{p}{'takes' if la.ptl else 'drops'} the PTL")
        if la.fullmm and not lb.fullmm:  # a gather open before: mm_tlb_flush_nested()
            out.append(
                p + ("nested gather: flush everything" if lb.pending else "its flush: the whole mm")
            )
    for key, csd in after.csds.items():
        if before.csds[key].locked and not csd.locked:
            out.append(f"csd CPU{key.sender} -> CPU{key.target} unlocked")
    if len(after.rcu) > len(before.rcu):
        out.append("page table waits for an RCU grace period")
    for mm_id, (b_mm, a_mm) in enumerate(zip(before.mms, after.mms, strict=True)):
        if mm_id == INIT_MM:
            continue
        p = f"mm {mm_name(mm_id)} "
        if b_mm.tlb_gen != a_mm.tlb_gen:
            out.append(f"{p}tlb_gen {b_mm.tlb_gen} -> {a_mm.tlb_gen}")
        if b_mm.cpumask != a_mm.cpumask:
            cpus = ",".join(str(c) for c in for_each_cpu(a_mm.cpumask)) or "none"
            out.append(f"mm_cpumask({mm_name(mm_id)}) = {{{cpus}}}")
        if b_mm.tlb_flush_pending != a_mm.tlb_flush_pending:
            out.append(f"{p}tlb_flush_pending {b_mm.tlb_flush_pending} -> {a_mm.tlb_flush_pending}")
        if b_mm.tlb_flush_batched != a_mm.tlb_flush_batched:
            out.append(f"{p}tlb_flush_batched = {str(a_mm.tlb_flush_batched).lower()}")
        if b_mm.pgtable_pfn != a_mm.pgtable_pfn and a_mm.pgtable_pfn == NO_PFN:
            out.append(f"{p}PMD entry cleared")
        for va in sorted(a_mm.ptes):
            old, new = b_mm.ptes.get(va), a_mm.ptes[va]
            if old is not None and old != new:
                if new.protnone and not old.protnone:
                    out.append(f"{p}PTE {va:#x} PROT_NONE (NUMA hinting)")
                elif new.migration:
                    kind = "writable" if new.writable else "readable"
                    sd = ", soft-dirty clear" if old.soft_dirty and not new.soft_dirty else ""
                    out.append(f"{p}PTE {va:#x} {kind} migration entry (pfn {new.pfn}){sd}")
                elif not new.present and not new.protnone:
                    out.append(f"{p}PTE {va:#x} cleared")
                elif old.seq != new.seq or (old.writable, old.dirty) != (new.writable, new.dirty):
                    to = f" -> pfn {new.pfn}" if new.pfn != old.pfn else ""
                    sd = ""
                    if new.soft_dirty != old.soft_dirty:
                        sd = ", soft-dirty" if new.soft_dirty else ", soft-dirty clear"
                    out.append(f"{p}PTE {va:#x}{to} {_bits(new.writable, new.dirty)}{sd}")
    for pfn, (old_f, new_f) in enumerate(zip(before.frames, after.frames, strict=True)):
        if old_f.version != new_f.version:
            if new_f.kind == FREE:
                what = "page table" if old_f.kind == PGTABLE else "page"
                out.append(f"{what} pfn {pfn} freed")
            elif new_f.kind == ANON:  # alloc_user_page(): a COW copy, a migration target
                out.append(f"pfn {pfn} allocated for mm {mm_name(new_f.mm)} {new_f.va:#x}")
            else:
                out.append(f"pfn {pfn} reallocated to {_to(new_f.mm if new_f.mm else 0)}")
            continue
        if old_f.mapped and not new_f.mapped and new_f.kind == FILE:
            out.append(f"pfn {pfn} leaves the rmap (page_mapped() false)")
        if old_f.copied < new_f.copied == COPIED:
            out.append(f"pfn {pfn} copied: later writes to it are not in the copy")
        elif COPIED <= old_f.copied < new_f.copied:
            out.append(f"pfn {pfn} written after its copy was taken")
        if old_f.page_dirty != new_f.page_dirty:
            out.append(f"pfn {pfn} PG_dirty {'set' if new_f.page_dirty else 'cleared'}")
        if old_f.modified != new_f.modified:
            out.append(
                f"pfn {pfn} written: memory now newer than disk"
                if new_f.modified
                else f"pfn {pfn} written back to disk"
            )
    return out


# --- layout -----------------------------------------------------------------------------


def _wrap(text: str, width: int = WIDTH, indent: str = "", first: str | None = None) -> list[str]:
    """``text`` wrapped at ``width``: the first line starts with ``first`` (default:
    ``indent``), the others with ``indent``."""
    first = indent if first is None else first
    return prose(text, width, first, indent) or [first.rstrip()]


_OPTION: Final = re.compile(r"(--[a-z][a-z0-9-]*) (-?[^\s-]\S*)")
_KEEP: Final = "\ue000"  # a private-use character: no text of ours has one


def prose(text: str, width: int = WIDTH, first: str = "", indent: str = "") -> list[str]:
    """``text`` wrapped at ``width`` without breaking an option from its value, where the two
    fit on a line, or at its hyphens (``--file-pages 0``, ``--narrow-states``): a model
    named as ``explore``'s options stays one a reader can copy."""
    room = width - max(len(first), len(indent))

    def glue(m: re.Match[str]) -> str:
        return m.group(1) + _KEEP + m.group(2) if len(m.group(0)) <= room else m.group(0)

    kept = text if _KEEP in text else _OPTION.sub(glue, text)
    lines = textwrap.wrap(
        kept,
        width=width,
        initial_indent=first,
        subsequent_indent=indent,
        break_on_hyphens=False,
        break_long_words=True,
    )
    return [line.replace(_KEEP, " ") for line in lines]


def shell_lines(cmd: str, width: int = WIDTH, indent: str = "  ") -> list[str]:
    """``cmd`` indented, as lines that still paste into a shell when it is wider than
    ``width``: broken between words with `` \\``, and inside a word too long for a line with
    a bare ``\\`` (the shell joins both)."""
    if len(indent + cmd) <= width:
        return [indent + cmd]
    lines: list[str] = []
    cur = indent
    for word in cmd.split(" "):
        if cur.strip() and len(cur) + 1 + len(word) + 2 > width:
            lines.append(cur + " \\")
            cur = indent
        cur = f"{cur} {word}" if cur.strip() else cur + word
        while len(cur) > width:
            lines.append(cur[: width - 1] + "\\")
            cur = cur[width - 1 :]
    lines.append(cur)
    return lines


def plain(message: str) -> str:
    """A violation message in a reviewer's words: CPUs as the kernel prints them."""
    return re.sub(r"\bcpu(\d+)\b", r"CPU\1", message)


def _refs(kernel_ref: str) -> list[str]:
    out = _wrap(kernel_ref, indent=" " * 8, first="Models: ")
    for msgid in re.findall(r"[\w.+-]+@[\w.-]+\w", kernel_ref):
        for line in (f"Link: https://lore.kernel.org/r/{msgid}", f"Message-ID: <{msgid}>"):
            if len(line) <= WIDTH:
                out.append(line)
                break
    return out


def _diagram(cpus: int, steps: list[tuple[Action, list[str]]]) -> list[str]:
    texts = [c_text(a) for a, _ in steps]
    widths = [len(f"CPU{c}") for c in range(cpus)]
    for (a, _), t in zip(steps, texts, strict=True):
        lane = max(a.cpu, 0)
        widths[lane] = max(widths[lane], len(t) + (2 if a.cpu == GLOBAL else 0))
    starts = [NUM]
    for w in widths[:-1]:
        starts.append(starts[-1] + w + GAP)
    columns = starts[-1] + widths[-1] <= WIDTH
    lines: list[str] = []
    if columns:
        head = "".join(f"{f'CPU{c}':<{w + GAP}}" for c, w in enumerate(widths)).rstrip()
        rule = "".join(f"{'----':<{w + GAP}}" for w in widths).rstrip()
        lines += [" " * NUM + head, " " * NUM + rule]
    for i, ((a, notes), text) in enumerate(zip(steps, texts, strict=True), 1):
        shown = f"[{text}]" if a.cpu == GLOBAL else text
        own = f"CPU{a.cpu} "
        short = [n.removeprefix(own) for n in notes]  # under its own CPU, the name is implied
        if columns:
            col = starts[max(a.cpu, 0)]
            lines.append(f"{i:>2}".ljust(col) + shown)
            # under the step where each note fits on one line, else from the left margin
            if not all(col + 3 + len(n) <= WIDTH for n in short):
                col, short = NUM, notes
        else:
            who = "alloc" if a.cpu == GLOBAL else f"CPU{a.cpu}"
            lines += _wrap(shown, indent=" " * (NUM + 6), first=f"{i:>2}  {who:<6}")
            col = NUM + 6
        pad = " " * col
        for n in short:
            lines += _wrap(n, indent=pad + "//   ", first=pad + "// ")
    return lines


def render_mail(
    variant: Variant,
    config: Config,
    schedule: Sequence[Action],
    prop: str | None = None,
    violation: Violation | None = None,
    replay_cmd: str | None = None,
    title: str | None = None,
    expect: str = "violates",
    name: str | None = None,
    paragraphs: Sequence[str] = (),
) -> str:
    """The schedule as a mail-ready diagram, at most ``WIDTH`` columns. ``expect`` is what the
    corpus file claims: a ``holds`` file is titled as a schedule the property survives.
    ``paragraphs``: said after the why (``tlbfuzz.fuzz.changes.whose_lines``)."""
    name = name or variant.name
    w = World.initial(variant, config)
    steps: list[tuple[Action, list[str]]] = []
    broke_at = None
    for i, a in enumerate(schedule, 1):
        before = w.copy()
        w.apply(a)
        notes = effects(before, w)
        if prop and broke_at is None and w.violations([prop]):
            broke_at = i
            notes.append(f"<-- {prop}")
        steps.append((a, notes))
    n, cpus = len(schedule), machine(config)
    if title is None:
        if not prop:
            title = f"{name}: {n} steps ({cpus})"
        elif expect == "holds" and broke_at is None:
            title = f"{name}: {prop} holds over these {n} steps ({cpus})"
        elif expect == "holds":
            title = f"{name}: {prop} was expected to hold, but breaks at step {broke_at}"
        elif broke_at is None:
            title = f"{name}: {prop} was expected to break, but holds over {n} steps"
        else:
            title = f"{name}: {prop} breaks in {n} steps ({cpus})"
    lines = _wrap(title, indent="  ", first="")
    lines += ["", *_refs(variant.kernel_ref), "", *_diagram(config.cpus, steps), ""]
    if prop:
        found = w.violations([prop])
        why = violation or (found[0] if found else None)
        lines += _wrap(f"{prop}: {PROPERTIES[prop].summary}.", indent="  ", first="")
        if why is not None:
            lines += _wrap(plain(why.message), indent="  ", first="Why: ")
        else:
            lines.append("It holds: no step above breaks it.")
    for text in paragraphs:
        lines += _wrap(text, indent="  ", first="")
    if replay_cmd:
        lines += ["", "Replay:", *shell_lines(replay_cmd)]
    return "\n".join(line.rstrip() for line in lines)


FORMATS: Final = ("mail", "wide")
"""What ``--format`` takes for printed schedules; ``show`` also takes ``python``."""


def render_as(
    fmt: str,
    variant: Variant,
    config: Config,
    schedule: Sequence[Action],
    prop: str | None = None,
    violation: Violation | None = None,
    replay_cmd: str | None = None,
    title: str | None = None,
    expect: str = "violates",
    paragraphs: Sequence[str] = (),
) -> str:
    """A schedule in ``fmt``: ``mail`` (72 columns, the default) or ``wide`` (the lanes with an
    effect column, ``tlbfuzz.fuzz.report``)."""
    if fmt == "wide":
        from tlbfuzz.fuzz.report import render

        if title is None and prop and expect == "holds":
            title = f"{variant.name}: {prop} holds over these {len(schedule)} steps"
        return render(variant, config, schedule, prop, violation, replay_cmd, title, paragraphs)
    return render_mail(
        variant, config, schedule, prop, violation, replay_cmd, title, expect, paragraphs=paragraphs
    )
