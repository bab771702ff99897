"""``redact`` on Process Monitor PML logs: in place, same-length pseudonyms.

Every corpus PML is redacted and read back by three independent readers (ours,
procmon-parser, procmon-reader where installed): the same number of events, the same
operation, PID, TID, time, result and duration, paths of the same byte length with the
backslashes in the same places. The captures with conflicts keep their analysis
(:func:`test_redact_analysis.assert_same_analysis`). Cut logs are redacted up to what
the reader can read, and a name the rewriting missed is caught by the leak check.
Skipped when the corpus (``../shared/corpus``) is absent.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from test_redact_analysis import assert_same_analysis

from locations import CORPUS
from traceaudit.errors import RedactionLeakError
from traceaudit.formats.pml.reader import read_pml
from traceaudit.redaction import pml as pml_module
from traceaudit.redaction.context import Secret
from traceaudit.redaction.keys import Pseudonyms
from traceaudit.redaction.pml_check import find_pml_leaks
from traceaudit.redaction.redactor import redact
from traceaudit.redaction.samelength import SameLength

KEY = b"pml-redaction-test-key-32-bytes!"
SAME = ("time", "pid", "tid", "operation", "result", "duration", "event_class", "row")
TYPED = ("access_mask", "share_mode", "disposition", "create_options", "is_directory")
TYPED += ("delete_on_close", "open_result", "replace_if_exists", "delete_flag", "offset")
TYPED += ("length",)


def _pmls() -> list[str]:
    if not CORPUS.is_dir():
        return ["(corpus absent)"]
    found = list(CORPUS.glob("procmon-pml/*.pml")) + list(CORPUS.glob("procmon-pairs/*.pml.gz"))
    return sorted(str(p.relative_to(CORPUS).as_posix()) for p in found)


PMLS = _pmls()


def _content(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def _redacted(tmp_path: Path, source: Path) -> tuple[Path, object]:
    out = tmp_path / ("out.pml.gz" if source.suffix == ".gz" else "out.pml")
    result = redact(source, out, key=KEY, map_path=tmp_path / "map.json")
    return out, result


def _plain(tmp_path: Path, path: Path, name: str) -> Path:
    plain = tmp_path / name
    plain.write_bytes(_content(path))
    return plain


def _shape(text: str | None) -> tuple[int, list[int]] | None:
    """Byte length (UTF-16) and where the backslashes are."""
    if text is None:
        return None
    return len(text.encode("utf-16-le", "surrogatepass")), [
        i for i, c in enumerate(text) if c == "\\"
    ]


# --------------------------------------------------------------------------- corpus


@pytest.mark.parametrize("relative", PMLS)
def test_corpus_pml_reads_the_same_with_our_reader(tmp_path, corpus, relative):
    source = corpus / relative
    out, result = _redacted(tmp_path, source)
    assert (out.read_bytes()[:2] == b"\x1f\x8b") == (source.suffix == ".gz")
    before, after = read_pml(source), read_pml(out)
    assert after.events.height == before.events.height == result.rows  # type: ignore[attr-defined]
    assert after.warnings == before.warnings
    for column in SAME + TYPED:
        assert after.events[column].equals(before.events[column]), column
    for column in ("path", "process", "rename_target"):
        shapes_before = [_shape(v) for v in before.events[column].to_list()]
        assert [_shape(v) for v in after.events[column].to_list()] == shapes_before, column
    # the output is the input with only string bytes changed: same size, same structure
    assert len(_content(out)) == len(_content(source))
    mapping = json.loads((tmp_path / "map.json").read_text(encoding="utf-8"))
    for entries in mapping["classes"].values():
        for pseudonym, original in entries.items():
            assert len(pseudonym.encode("utf-16-le", "surrogatepass")) == len(
                original.encode("utf-16-le", "surrogatepass")
            )
            assert pseudonym.lower() != original.lower()


@pytest.mark.parametrize("relative", PMLS)
def test_corpus_pml_reads_the_same_with_procmon_parser(tmp_path, corpus, relative):
    procmon_parser = pytest.importorskip("procmon_parser")
    source = corpus / relative
    if int.from_bytes(_content(source)[4:8], "little") != 9:
        pytest.skip("procmon-parser reads PML version 9 only")
    out, _ = _redacted(tmp_path, source)
    readers = []
    for path in (source, out):
        handle = _plain(tmp_path, path, f"plain-{path.name}.pml").open("rb")
        readers.append(
            (handle, procmon_parser.ProcmonLogsReader(handle, should_get_stacktrace=False))
        )
    try:
        (_, original), (_, redacted) = readers
        assert len(redacted) == len(original)
        for a, b in zip(original, redacted, strict=True):
            assert (b.operation, b.tid, b.date_filetime, b.result, b.duration) == (
                a.operation,
                a.tid,
                a.date_filetime,
                a.result,
                a.duration,
            )
            assert b.process.pid == a.process.pid
            assert _shape(b.path) == _shape(a.path)
            assert _shape(b.process.image_path) == _shape(a.process.image_path)
            assert len(b.process.command_line) == len(a.process.command_line)
    finally:
        for handle, _ in readers:
            handle.close()


@pytest.mark.parametrize("relative", PMLS)
def test_corpus_pml_reads_the_same_with_procmon_reader(tmp_path, corpus, relative):
    procmon_reader = pytest.importorskip("procmon_reader")
    source = corpus / relative
    if int.from_bytes(_content(source)[4:8], "little") != 9:
        pytest.skip("procmon-reader reads PML version 9 only")
    out, _ = _redacted(tmp_path, source)
    fields = ["operation", "pid", "tid", "timestamp", "result", "duration", "path"]
    rows = []
    for path in (source, out):
        reader = procmon_reader.ProcmonReader(str(_plain(tmp_path, path, f"r-{path.name}.pml")))
        try:
            reader.apply_filters(filters=[], select_fields=fields)
            rows.append([dict(event) for event in reader])
        finally:
            reader.close()
    original, redacted = rows
    assert len(redacted) == len(original) > 0
    for a, b in zip(original, redacted, strict=True):
        assert {k: v for k, v in b.items() if k != "path"} == {
            k: v for k, v in a.items() if k != "path"
        }
        assert _shape(b.get("path")) == _shape(a.get("path"))


@pytest.mark.parametrize(
    "relative",
    [
        "procmon-pml/ron-crash-a.pml",
        "procmon-pml/ron-crash (b).pml",
        "procmon-pairs/UTC32Filesystem.pml.gz",
    ],
)
def test_corpus_pml_with_conflicts_keeps_its_analysis(tmp_path, corpus, relative):
    source = corpus / relative
    out, _ = _redacted(tmp_path, source)
    assert_same_analysis(source, out)


def test_corpus_pml_names_are_gone(tmp_path, corpus):
    """Tests64bit was captured by user ``test`` on DESKTOP-6PCIALL."""
    out, result = _redacted(tmp_path, corpus / "procmon-pairs/Tests64bit.pml.gz")
    data = _content(out)
    for name in ("DESKTOP-6PCIALL", "6PCIALL"):
        assert name.encode("utf-16-le") not in data
        assert name.lower().encode("utf-16-le") not in data.lower()
    assert result.counts["user"] >= 1  # type: ignore[attr-defined]
    header_name = data[0x0C : 0x0C + 32].decode("utf-16-le").split("\x00")[0]
    assert header_name and header_name.upper() != "DESKTOP-6PCIALL"


def test_corpus_pml_same_key_same_bytes(tmp_path, corpus):
    source = corpus / "procmon-pml/file-dump-renames.pml"
    redact(source, tmp_path / "a.pml", key=KEY)
    redact(source, tmp_path / "b.pml", key=KEY)
    redact(source, tmp_path / "c.pml", key=b"another-key-of-thirty-two-bytes!")
    assert (tmp_path / "a.pml").read_bytes() == (tmp_path / "b.pml").read_bytes()
    assert (tmp_path / "a.pml").read_bytes() != (tmp_path / "c.pml").read_bytes()


def test_corpus_pml_rename_targets_follow_their_paths(tmp_path, corpus):
    """A rename target and the path of a later event on the renamed file get the same
    pseudonym (the reader joins relative targets to the source's folder)."""
    source = corpus / "procmon-pml/file-dump-renames.pml"
    out, _ = _redacted(tmp_path, source)
    before, after = read_pml(source).events, read_pml(out).events
    forward: dict[str, str] = {}
    for column in ("path", "rename_target"):
        for a, b in zip(before[column].to_list(), after[column].to_list(), strict=True):
            if a is not None:
                assert forward.setdefault(a.lower(), b.lower()) == b.lower(), (a, b)
    assert before["rename_target"].drop_nulls().len() > 0


# --------------------------------------------------------------------------- damage


def test_corpus_pml_cut_in_its_events_is_redacted_up_to_the_last_intact_event(tmp_path, corpus):
    data = _content(corpus / "procmon-pml/ron-crash-a.pml")
    cut = tmp_path / "cut.pml"
    cut.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out.pml"
    result = redact(cut, out, key=KEY)
    before, after = read_pml(cut), read_pml(out)
    assert after.truncated and before.truncated
    assert 0 < after.events.height == before.events.height == result.rows
    for column in SAME:
        assert after.events[column].equals(before.events[column]), column
    assert out.stat().st_size < cut.stat().st_size  # the cut-off event is dropped
    assert any("cut short" in n or "not closed" in n or "lost" in n for n in result.notes)


def test_corpus_pml_cut_in_its_tables_keeps_every_event(tmp_path, corpus):
    data = _content(corpus / "procmon-pml/ron-crash-a.pml")
    strings = int.from_bytes(data[0x258:0x260], "little")
    cut = tmp_path / "cut-tables.pml"
    cut.write_bytes(data[: strings + 200])
    out = tmp_path / "out.pml"
    redact(cut, out, key=KEY)
    before, after = read_pml(cut), read_pml(out)
    assert after.events.height == before.events.height == 1250
    for column in SAME:
        assert after.events[column].equals(before.events[column]), column


def test_error_pml_leak_is_refused(tmp_path, corpus, monkeypatch):
    """A field the rewriting leaves alone is caught by the check of every byte."""
    original = pml_module.PmlHandler._rewrite

    def careless(self, kind, text):  # type: ignore[no-untyped-def]
        return text if kind == "path" else original(self, kind, text)

    monkeypatch.setattr(pml_module.PmlHandler, "_rewrite", careless)
    out = tmp_path / "out.pml"
    with pytest.raises(RedactionLeakError) as refused:
        redact(corpus / "procmon-pml/ron-crash-a.pml", out, key=KEY)
    message = str(refused.value)
    assert message.startswith("out.pml: redaction check failed: ")
    assert " at 0x" in message and message.endswith("The output was removed.")
    assert not out.exists()
    assert not list(tmp_path.glob(".out.pml.*"))


# --------------------------------------------------------------------------- pseudonyms


def _same() -> SameLength:
    return SameLength(Pseudonyms(KEY), forbidden={"bob", "notes"})


def test_same_length_keeps_length_classes_and_case_identity():
    same = _same()
    upper, lower = same.text("WChen"), same.text("wchen")
    assert len(upper) == len(lower) == 5 and upper.lower() == lower
    assert upper[0].isupper() and upper[1].isupper() and upper[2:].islower()
    assert same.text("report-2023_v2.final") != "report-2023_v2.final"
    text = same.text("report-2023_v2.final")
    assert [c.isdigit() for c in text] == [c.isdigit() for c in "report-2023_v2.final"]
    assert [c.isalpha() for c in text] == [c.isalpha() for c in "report-2023_v2.final"]
    assert text[6] == "-" and text[11] == "_" and text[14] == "."


def test_same_length_is_injective_and_avoids_secret_words():
    words = [f"{a}{b}{c}" for a in "abcdefgh" for b in "aeiou" for c in "mnprst"]
    same = SameLength(Pseudonyms(KEY), forbidden={*words, "bob", "notes"})
    pseudonyms = [same.text(w) for w in words]
    assert len(set(pseudonyms)) == len(words)
    assert not set(pseudonyms) & (set(words) | {"bob", "notes"})
    letters = [same.text(c) for c in "abcdefghijklmnopqrstuvwxyz"]
    assert len(set(letters)) == 26


def test_any_number_of_one_and_two_character_names_stay_distinct():
    """A trace may hold a hundred one-character folder names (CJK, or a damaged log read
    as names): more than a pool of one-character pseudonyms drawn one by one can serve.
    They are permuted instead; two-character names get pseudonyms past the 1,296 pairs
    of letters and digits. Never an error, never two names on one pseudonym."""
    same = _same()
    latin = [chr(c) for c in range(0x20, 0x100) if chr(c).isalnum()]
    ones = [chr(c) for c in range(0x4E00, 0x4E00 + 300)] + latin
    pseudonyms = [same.text(n) for n in ones]
    assert all(len(p) == 1 for p in pseudonyms)
    assert len({p.lower() for p in pseudonyms}) == len({n.lower() for n in ones})
    assert all(ord(p) <= 0xFF for p, n in zip(pseudonyms, ones, strict=True) if ord(n) <= 0xFF)
    assert not any(same.text(d).isdigit() for d in "0123456789")  # 1.2.3.4 is no IP then
    twos = [a + b for a in "abcdefghijklmnopqrstuvwxyz0123456789" for b in "éèêëàâäôöùûüçñ"]
    twos += [chr(0x4E00 + k) + "x" for k in range(1000)]
    pseudonyms = [same.text(n) for n in twos]
    assert all(len(p) == 2 for p in pseudonyms)
    assert len(set(pseudonyms)) == len(twos)


def test_same_length_keeps_hex_guid_and_sid_shapes():
    same = _same()
    guid = same.text("{3F2504E0-4F89-11D3-9A0C-0305E82C3301}")
    assert len(guid) == 38 and all(c in "0123456789abcdefABCDEF{}-" for c in guid)
    sid = same.text("S-1-5-21-1004336348-1177238915-682003330-1001")
    assert sid.startswith("S-1-5-21-") and sid.endswith("-1001")
    assert len(sid) == len("S-1-5-21-1004336348-1177238915-682003330-1001")
    assert sid != "S-1-5-21-1004336348-1177238915-682003330-1001"


def test_same_length_is_the_same_for_the_same_key_only():
    assert _same().text("MyProject") == _same().text("MyProject")
    other = SameLength(Pseudonyms(b"another-key-of-thirty-two-bytes!"))
    assert other.text("MyProject") != _same().text("MyProject")


def test_leak_check_finds_utf16_and_long_ansi_names_everywhere_and_short_ones_in_fields():
    secrets = [Secret("user", "wchen"), Secret("path", "MyProject")]
    blob = b"\x01\x02" + "x\\WCHEN\\y".encode("utf-16-le") + b"\x00\x01MYPROJECT\x00" + b"wchen"
    leaks = find_pml_leaks(blob, secrets)
    assert [(leak.text, leak.encoding, leak.offset) for leak in leaks] == [
        ("wchen", "UTF-16", 6),
        ("MyProject", "ANSI", 22),
    ]
    # a short name as one-byte text counts only inside a one-byte string field
    inside = find_pml_leaks(blob, secrets, one_byte=[(len(blob) - 5, len(blob))])
    assert ("wchen", "ANSI", len(blob) - 5) in [(x.text, x.encoding, x.offset) for x in inside]
    # "wchen" inside "wchenx" is not the word
    assert find_pml_leaks("wchenx".encode("utf-16-le"), secrets) == []
