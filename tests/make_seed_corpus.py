"""Write the seed corpus from tests/schedules.py: for each review concern, the violating
schedule and the answering variant's schedule that holds. Never overwrites a file.

    python -m tests.make_seed_corpus [corpus]
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.schedules import ALL_SCHEDULES
from tlbfuzz.fuzz.corpus import Entry, save
from tlbfuzz.protocol import VARIANTS, World, parse


def main() -> None:
    corpus = Path(sys.argv[1] if len(sys.argv) > 1 else "corpus")
    for c in ALL_SCHEDULES:
        pairs = [
            (c.variant, "violates", c.schedule),
            (c.holds_on, "holds", c.holds_schedule or c.schedule),
        ]
        for name, expect, schedule in pairs:
            actions = tuple(parse(s) for s in schedule)
            w = World.initial(VARIANTS[name], c.config).run(actions)
            why = w.violations([c.prop])
            note = f"review concern {c.key}: {c.question}"
            if why:
                note += f" -- {why[0].message}"
            found = {"by": "hand (tests/schedules.py)", "concern": c.key}
            path, created = save(
                Entry(VARIANTS[name], name, c.config, c.prop, expect, actions, found, note), corpus
            )
            print(("wrote " if created else "exists ") + str(path))


if __name__ == "__main__":
    main()
