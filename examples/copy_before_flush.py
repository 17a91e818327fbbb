"""linux-current whose migration copies the page before its batched flush
(migrate_pages_batch(): ``migrate_folio_move()`` before ``try_to_unmap_flush()``). A CPU that
still caches the old writable translation writes the old page after the copy was taken, and
remove_migration_ptes() maps the copy without that write: a lost write.

One decision moved (the order of the copy and the flush); nothing in protocol/ edited.
Migration is drawn only when asked, yet the fuzzer finds this without a budget: it draws the
paths that reach what a variant changes (``tlbfuzz.fuzz.changes``).

    tlbfuzz fuzz -v examples/copy_before_flush.py:VARIANT --profile ci -p no_write_lost_to_copy
"""

from __future__ import annotations

import attrs

from tlbfuzz.protocol import VARIANTS, Variant


@attrs.frozen
class CopyBeforeFlush(Variant):
    def migrate_flush_before_copy(self, path: str) -> bool:
        return False  # folio_migrate_copy() before the batch's try_to_unmap_flush()


VARIANT = CopyBeforeFlush(
    **{
        **attrs.asdict(VARIANTS["linux-current"], recurse=False),
        "name": "copy-before-flush",
        "summary": "linux-current whose migration copies the page before the batched flush",
        "kernel_ref": "examples/copy_before_flush.py (hypothetical patch)",
    }
)
