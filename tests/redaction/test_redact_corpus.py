"""Real captures that carry their authors' user and machine names come out clean.

Each corpus file below names a user, a computer or both (in paths, the User column,
``Impersonating:``, environment blocks, Network rows). After redaction the names must be
gone from the output bytes, and ``load_trace`` must still read the same number of events.
Skipped when the corpus (``../shared/corpus``) is absent.
"""

from __future__ import annotations

import gzip
import re
import zipfile
from pathlib import Path

import pytest

from traceaudit.formats import load_trace
from traceaudit.redaction.redactor import redact

KEY = b"corpus-redaction-test-key-32-byt"

# corpus file → names that must not survive, and names that must not survive as words
# (a user called "test" may still appear inside "latest").
NAMES = {
    "procmon-csv/yara-with-tid.csv": (["IEUser", "MSEDGEWIN10"], []),
    "procmon-csv/lab-os4-russian.csv": (["COMPUTERNAME=DELL", "\\permi\\"], ["permi"]),
    "procmon-csv/crysis-nanny-filtered.csv": (["Zingus", "RESIDUATO"], []),
    "procmon-pairs/Tests64bit.csv.gz": (["DESKTOP-6PCIALL", "6PCIALL", "\\test\\"], ["test"]),
    "procmon-pairs/Tests32bit.csv.gz": ([], ["test"]),
    "procmon-csv/one-row.csv": (["DESKTOP-FR51PUU", "FR51PUU"], []),
    "procmon-csv/winxp-24h.csv": (["HP Authored Customer", "HPAAV"], []),
    "procmon-csv/prsp0007-filtered.csv": (["pandalabs"], []),
    "procmon-csv/roslyn-test-comma-decimal.csv": (["\\svto\\"], ["svto"]),
    "procmon-csv/phishing-tiny.csv": (["LabUser"], []),
    "procmon-csv/ohtorii-24h.csv": (["\\foo\\"], ["foo"]),
    "procmon-xml/defender-scan-russian.xml": (["Epicmine", "DESKTOP-0BT2R3R"], []),
    "procmon-csv/excel-japanese-tab-separated.zip": ([], []),
}


def _text(path: Path) -> str:
    data = path.read_bytes()
    if data.startswith(b"\x1f\x8b"):
        data = gzip.decompress(data)
    elif data.startswith(b"PK"):
        with zipfile.ZipFile(path) as archive:
            data = b"".join(archive.read(name) for name in archive.namelist())
            return data.decode("cp932", errors="replace")
    return data.decode("utf-8-sig", errors="replace")


@pytest.mark.parametrize("relative", sorted(NAMES))
def test_known_names_are_gone_and_the_trace_still_reads(tmp_path, corpus, relative):
    source = corpus / relative
    suffix = "".join(source.suffixes[-2:]) if source.suffix == ".gz" else source.suffix
    out = tmp_path / f"redacted{suffix}"
    result = redact(source, out, key=KEY)
    text = _text(out)
    anywhere, words = NAMES[relative]
    for name in anywhere:
        assert name.lower() not in text.lower(), name
    for name in words:
        assert not re.search(rf"(?i)(?<![^\W_]){re.escape(name)}(?![^\W_])", text), name
    assert load_trace(out).events.height == load_trace(source).events.height == result.rows
    assert result.counts.get("user", 0) + result.counts.get("computer", 0) >= (1 if anywhere else 0)


def test_a_corpus_trace_redacts_the_same_with_the_same_key(tmp_path, corpus):
    source = corpus / "procmon-csv/yara-with-tid.csv"
    redact(source, tmp_path / "a.csv", key=KEY)
    redact(source, tmp_path / "b.csv", key=KEY)
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert (tmp_path / "a.csv").read_bytes()[:3] == b"\xef\xbb\xbf"
