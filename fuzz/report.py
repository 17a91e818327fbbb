"""Schedules as a kernel engineer reads them: one column per CPU, one action per line, what
each step changed (a diff of the state before and after, in kernel words), and which
property broke and why.

The effect column is computed here, by diffing worlds, so the model's hot path pays nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tlbfuzz.protocol import World
from tlbfuzz.protocol.state import FRAME_KINDS, INIT_MM, NO_PFN, cpumask_str, mm_name

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tlbfuzz.protocol import Action, Config, Variant, Violation

COL = 44


def _mm(m: int) -> str:
    return mm_name(m) if m >= INIT_MM else "LOADED_MM_SWITCHING"


def describe_step(before: World, after: World) -> str:
    """What changed, most telling first; empty if only invisible state moved."""
    out: list[str] = []
    for cpu, (b, a) in enumerate(zip(before.cpus, after.cpus, strict=True)):
        p = f"cpu{cpu} "
        if b.loaded_mm != a.loaded_mm:
            out.append(f"{p}loaded_mm {_mm(b.loaded_mm)}->{_mm(a.loaded_mm)}")
        if b.cr3_mm != a.cr3_mm:
            out.append(f"{p}CR3 {_mm(b.cr3_mm)}->{_mm(a.cr3_mm)}")
        if b.store_buffer != a.store_buffer:
            from tlbfuzz.fuzz.mail import store_buffer_changes

            out.extend(p + e for e in store_buffer_changes(b.store_buffer, a.store_buffer))
        if b.is_lazy != a.is_lazy:
            out.append(f"{p}is_lazy {int(b.is_lazy)}->{int(a.is_lazy)}")
        if b.task != a.task:
            out.append(f"{p}current {'kthread' if not a.task else 'mm ' + mm_name(a.task)}")
        for k in sorted(b.tlb.keys() - a.tlb.keys()):
            out.append(f"{p}TLB -{k[1]:#x}")
        for k in sorted(a.tlb.keys() - b.tlb.keys()):
            e = a.tlb[k]
            out.append(f"{p}TLB +{k[1]:#x}->pfn {e.pfn} W={int(e.writable)} D={int(e.dirty)}")
        for k in sorted(a.tlb.keys() & b.tlb.keys()):
            if a.tlb[k] != b.tlb[k]:
                e = a.tlb[k]
                out.append(f"{p}TLB {k[1]:#x}->pfn {e.pfn} W={int(e.writable)} D={int(e.dirty)}")
        if b.pwc != a.pwc:
            pw = a.pwc.get(a.cr3_asid)
            out.append(f"{p}PWC " + (f"+PMD->pfn {pw.pfn}" if pw else "flushed"))
        if b.ctxs != a.ctxs:
            for asid, (was, now) in enumerate(zip(b.ctxs, a.ctxs, strict=True)):
                if was != now:
                    out.append(f"{p}ctxs[{asid}].tlb_gen {was[1]}->{now[1]}")
        if b.ipi_pending != a.ipi_pending and a.ipi_pending:
            out.append(f"{p}IPI pending")
        if len(a.queue) > len(b.queue):
            out.append(f"{p}queue +csd from cpu{a.queue[-1].sender}")
        if b.irqs_on != a.irqs_on:
            out.append(f"{p}IRQs {'on' if a.irqs_on else 'off'}")
        if b.async_func_in_progress != a.async_func_in_progress:
            out.append(f"{p}async_func_in_progress={a.async_func_in_progress or 'NULL'}")
    for key, csd in after.csds.items():
        old = before.csds[key]
        if old.locked and not csd.locked:
            out.append(f"csd cpu{key.sender}->cpu{key.target} unlocked")
    for mm_id, (b_mm, a_mm) in enumerate(zip(before.mms, after.mms, strict=True)):
        if mm_id == 0:
            continue
        p = f"mm {mm_name(mm_id)} "
        if b_mm.tlb_gen != a_mm.tlb_gen:
            out.append(f"{p}tlb_gen {b_mm.tlb_gen}->{a_mm.tlb_gen}")
        if b_mm.tlb_flush_pending != a_mm.tlb_flush_pending:
            out.append(f"{p}tlb_flush_pending {b_mm.tlb_flush_pending}->{a_mm.tlb_flush_pending}")
        if b_mm.cpumask != a_mm.cpumask:
            out.append(f"{p}cpumask {cpumask_str(a_mm.cpumask)}")
        if b_mm.pgtable_pfn != a_mm.pgtable_pfn and a_mm.pgtable_pfn == NO_PFN:
            out.append(f"{p}PMD cleared")
        for va in sorted(a_mm.ptes):
            old_pte, y = b_mm.ptes.get(va), a_mm.ptes[va]
            if old_pte is not None and old_pte.seq != y.seq:
                out.append(
                    f"{p}PTE {va:#x} "
                    + (
                        f"W={int(y.writable)} D={int(y.dirty)}"
                        if y.present
                        else "PROT_NONE"
                        if y.protnone
                        else "cleared"
                    )
                )
    for pfn, (was_f, new) in enumerate(zip(before.frames, after.frames, strict=True)):
        if was_f.version != new.version:
            kinds = f"{FRAME_KINDS[was_f.kind]}->{FRAME_KINDS[new.kind]}"
            out.append(f"pfn {pfn} {kinds} v{new.version}")
        elif was_f.page_dirty != new.page_dirty:
            out.append(f"pfn {pfn} PG_dirty={int(new.page_dirty)}")
        elif was_f.modified != new.modified and not new.modified:
            out.append(f"pfn {pfn} written back")
    return "; ".join(out)


def render(
    variant: Variant,
    config: Config,
    schedule: Sequence[Action],
    prop: str | None = None,
    violation: Violation | None = None,
    replay_cmd: str | None = None,
    title: str | None = None,
    paragraphs: Sequence[str] = (),
) -> str:
    """The schedule as per-CPU lanes with effects, the broken property, ``paragraphs`` and the
    replay command."""
    from tlbfuzz.fuzz.mail import machine

    cpus = config.cpus
    w = World.initial(variant, config)
    head = title or (
        f"{variant.name}: {prop} breaks in {len(schedule)} steps ({machine(config)})"
        if prop
        else f"{variant.name}: {len(schedule)} steps ({machine(config)})"
    )
    lines = [head, f"  {variant.kernel_ref}"]
    cols = "".join(f"{'cpu' + str(c):<{COL}}" for c in range(cpus))
    lines.append(f"{'#':>3}  {cols}effect")
    broke = False
    for i, a in enumerate(schedule, 1):
        before = w.copy()
        w.apply(a)
        effect = describe_step(before, w)
        if prop and not broke and w.violations([prop]):
            broke = True
            effect = f"!! {prop}" + (f"; {effect}" if effect else "")
        text = str(a).split(" ", 1)[1] if a.cpu >= 0 else str(a)
        lane = a.cpu if a.cpu >= 0 else 0
        cells = [""] * cpus
        cells[lane] = text if a.cpu >= 0 else f"[{text}]"
        row = "".join(f"{c:<{COL}}" for c in cells)
        lines.append(f"{i:>3}  {row}{effect}")
    if violation is not None:
        lines.append(f"why: {violation.message}")
    elif prop:
        found = w.violations([prop])
        lines.append(f"why: {found[0].message}" if found else f"{prop} holds")
    lines += paragraphs
    if replay_cmd:
        lines.append(f"replay: {replay_cmd}")
    return "\n".join(lines)
