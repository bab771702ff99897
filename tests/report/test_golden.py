"""Golden reports: ``traceaudit analyze --json`` on every sample, compared with the file kept
in tests/report/golden/ (the JSON, and the text report as .txt). A change in any figure or
word shows up here as a diff to review.

After an intended change, regenerate with ``TRACEAUDIT_UPDATE_GOLDEN=1 python -m pytest
tests/report/test_golden.py`` and review the diff before committing it.
"""

from __future__ import annotations

import json
import os

import pytest

from locations import GOLDEN, ROOT
from traceaudit import analyze

ROOT = ROOT
GOLDEN = GOLDEN
SAMPLES = [
    "uv-extract-rename.csv",
    "replace-under-indexer.csv",
    "uv-issue-pasted.tsv",
    "mixed-small.csv",
]


@pytest.mark.parametrize("sample", SAMPLES)
def test_report_matches_golden(sample):
    report = analyze(ROOT / "samples" / sample).to_dict()
    golden = GOLDEN / (sample + ".json")
    text = json.dumps(report, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
    if os.environ.get("TRACEAUDIT_UPDATE_GOLDEN"):
        golden.write_text(text, encoding="utf-8", newline="\n")
    assert json.loads(golden.read_text(encoding="utf-8")) == json.loads(text)


@pytest.mark.parametrize("sample", SAMPLES)
def test_text_report_matches_golden(sample):
    """The terminal report (``traceaudit analyze``), whole: wording, plurals, alignment."""
    text = analyze(ROOT / "samples" / sample).to_text()
    golden = GOLDEN / (sample + ".txt")
    if os.environ.get("TRACEAUDIT_UPDATE_GOLDEN"):
        golden.write_text(text, encoding="utf-8", newline="\n")
    assert golden.read_text(encoding="utf-8") == text
