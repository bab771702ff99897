"""Where the tests find things: the repository, its samples, golden reports and the corpus.

The real-capture corpus lives beside the repository (``../shared/corpus``) and is not part
of it; tests that need it take the ``corpus`` fixture, which skips them when it is absent.
"""

from __future__ import annotations

from pathlib import Path

SUPPORT = Path(__file__).resolve().parent
TESTS = SUPPORT.parent
ROOT = TESTS.parent
SAMPLES = ROOT / "samples"
GOLDEN = TESTS / "report" / "golden"
CORPUS = ROOT.parent / "shared" / "corpus"
