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

CORPUS_CSVS = (
    "procmon-csv/blerkk.csv",
    "procmon-csv/createprocess-gcc-comma-decimal.csv",
    "procmon-csv/crysis-nanny-filtered.csv",
    "procmon-csv/excel-japanese-tab-separated.zip",
    "procmon-csv/excel-resaved.csv",
    "procmon-csv/exe-to-pdf.csv",
    "procmon-csv/lab-os4-russian.csv",
    "procmon-csv/lotl-detection-renames.csv",
    "procmon-csv/monitorapis.csv",
    "procmon-csv/noriben-2013.csv",
    "procmon-csv/ohtorii-24h.csv",
    "procmon-csv/one-row.csv",
    "procmon-csv/phishing-tiny.csv",
    "procmon-csv/prsp0007-filtered.csv",
    "procmon-csv/roslyn-test-comma-decimal.csv",
    "procmon-csv/winxp-24h.csv",
    "procmon-csv/yara-with-tid.csv",
    "procmon-pairs/Tests32bit.csv.gz",
    "procmon-pairs/Tests64bit.csv.gz",
    "procmon-pairs/UTC32Filesystem.csv.gz",
    "procmon-pairs/UTC64Filesystem.csv.gz",
    "procmon-pairs/UTC64Process.csv.gz",
)
"""Every Procmon CSV export in the corpus, relative to it."""
