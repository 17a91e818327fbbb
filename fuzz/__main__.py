"""``python -m tlbfuzz.fuzz`` is ``tlbfuzz``."""

import sys

from tlbfuzz.fuzz.cli import main

sys.exit(main())
