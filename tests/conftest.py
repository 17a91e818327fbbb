"""Registers the fuzzer's Hypothesis profiles before pytest's Hypothesis plugin loads one, so
that ``pytest --hypothesis-profile=tlbfuzz-ci`` (or ``tlbfuzz-dev``, ``tlbfuzz-nightly``)
works."""

import tlbfuzz.fuzz.profiles  # noqa: F401  # registers the profiles on import
