"""``python -m fuzz`` is ``tlbfuzz``."""

import sys

from fuzz.cli import main

sys.exit(main())
