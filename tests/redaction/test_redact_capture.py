"""``redact`` of a rolled-over capture: ``Log.PML``, ``Log-1.PML``… redacted together.

The parts are cut from a corpus capture (:mod:`pml_parts`, as the rollover tests do):
``ron-crash-a`` cut at events 600 and 1240, between a handle's open and the failures on
its file. Redacted together, the parts analyse together as the originals together, and
every name is the same pseudonym in every part. Skipped when the corpus is absent.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pml_parts import pml_bytes, write_parts
from traceaudit import analyze
from traceaudit.cli import main
from traceaudit.errors import RedactionLeakError, UsageError
from traceaudit.formats.pml.reader import read_pml
from traceaudit.redaction import redactor
from traceaudit.redaction.pml_check import PmlLeak
from traceaudit.redaction.redactor import CaptureRedactionResult, redact_capture

KEY = b"rolled-over-capture-test-key-32b"
NAMES = {"trace", "process", "path", "path_key", "rename_target", "decisive_process"}
FRAMES = ("conflicts", "blocking", "episodes", "chains", "handles")
MESSAGE = (
    "Log.PML, other.pml: these are not the files of one rolled-over Process Monitor "
    "capture. Give one trace, or the files Log.PML, Log-1.PML… of one capture."
)


@pytest.fixture
def parts(corpus, tmp_path):
    folder = tmp_path / "capture"
    folder.mkdir()
    return write_parts(pml_bytes(corpus / "procmon-pml" / "ron-crash-a.pml"), [600, 1240], folder)


def _cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _nameless(value: Any) -> Any:
    """Rows (or nested blockers, sections) with the columns that hold names left out."""
    if isinstance(value, dict):
        return {k: _nameless(v) for k, v in value.items() if k not in NAMES}
    if isinstance(value, list):
        return [_nameless(v) for v in value]
    return value


def test_parts_redacted_together_analyse_as_the_originals_together(parts, tmp_path):
    result = redact_capture(parts[::-1], tmp_path / "out", key=KEY)
    assert isinstance(result, CaptureRedactionResult)
    assert result.inputs == tuple(parts)
    assert result.output == tmp_path / "out"
    assert result.outputs == tuple(tmp_path / "out" / p.name for p in parts)
    assert (result.rows, result.part_rows) == (1_250, (600, 640, 10))
    before, after = analyze(parts), analyze(list(result.outputs))
    assert before.conflicts.height == 4
    assert [t.events for t in after.traces] == [t.events for t in before.traces] == [1_250]
    for frame in FRAMES:
        expected = getattr(before, frame)
        got = getattr(after, frame)
        assert got.columns == expected.columns, frame
        assert _nameless(got.to_dicts()) == _nameless(expected.to_dicts()), frame
    assert after.conflicts["path"].to_list() != before.conflicts["path"].to_list()
    assert after.handles.height == before.handles.height > 0


def test_every_name_is_the_same_pseudonym_in_every_part(parts, tmp_path):
    result = redact_capture(parts, tmp_path / "out", key=KEY)
    forward: dict[str, str] = {}
    backward: dict[str, str] = {}
    seen_in: dict[str, set[int]] = {}
    for number, (part, out) in enumerate(zip(parts, result.outputs, strict=True)):
        original, redacted = read_pml(part).events, read_pml(out).events
        assert redacted.height == original.height
        for column in ("path", "process"):
            for a, b in zip(original[column].to_list(), redacted[column].to_list(), strict=True):
                if a is None:
                    assert b is None
                    continue
                assert forward.setdefault(a.lower(), b.lower()) == b.lower(), (number, a, b)
                assert backward.setdefault(b.lower(), a.lower()) == a.lower(), (number, a, b)
                seen_in.setdefault(a.lower(), set()).add(number)
    shared = [a for a, numbers in seen_in.items() if len(numbers) > 1]
    assert any(forward[a] != a for a in shared)  # names in several parts, replaced alike


def test_map_is_one_table_for_every_part(parts, tmp_path):
    out, map_path = tmp_path / "out", tmp_path / "private" / "map.json"
    map_path.parent.mkdir()
    result = redact_capture(parts, out, key=KEY, map_path=map_path)
    document = json.loads(map_path.read_text(encoding="utf-8"))
    table = document["classes"]
    assert {cls: len(entries) for cls, entries in table.items()} == result.counts
    known = {(p, o) for entries in table.values() for p, o in entries.items()}
    for part, redacted in zip(parts, result.outputs, strict=True):
        before = read_pml(part).events["path"].drop_nulls().to_list()
        after = read_pml(redacted).events["path"].drop_nulls().to_list()
        for a, b in zip(before, after, strict=True):
            for old, new in zip(a.split("\\"), b.split("\\"), strict=True):
                if old != new and "." not in old and " " not in old:
                    assert (new, old) in known or (new.lower(), old.lower()) in {
                        (p.lower(), o.lower()) for p, o in known
                    }, (part.name, old, new)


def test_same_key_same_bytes_in_every_part(parts, tmp_path):
    first = redact_capture(parts, tmp_path / "a", key=KEY)
    again = redact_capture(parts, tmp_path / "b", key=KEY)
    other = redact_capture(parts, tmp_path / "c", key=b"another-key-of-thirty-two-bytes!")
    for a, b, c in zip(first.outputs, again.outputs, other.outputs, strict=True):
        assert a.read_bytes() == b.read_bytes()
        assert a.read_bytes() != c.read_bytes()


def test_the_leak_check_runs_on_every_part(parts, tmp_path, monkeypatch):
    checked: list[int] = []
    original = redactor.find_pml_leaks

    def spy(data, *args, **kwargs):  # type: ignore[no-untyped-def]
        checked.append(len(data))
        return original(data, *args, **kwargs)

    monkeypatch.setattr(redactor, "find_pml_leaks", spy)
    result = redact_capture(parts, tmp_path / "out", key=KEY)
    assert checked == [out.stat().st_size for out in result.outputs]
    assert len(checked) == 3


def test_error_a_leak_in_one_part_leaves_no_part(parts, tmp_path, monkeypatch):
    out = tmp_path / "out"
    calls: list[int] = []
    original = redactor.find_pml_leaks

    def leaky(data, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 2:
            return [PmlLeak("user", "wchen", 0x1234, "UTF-16")]
        return original(data, *args, **kwargs)

    monkeypatch.setattr(redactor, "find_pml_leaks", leaky)
    with pytest.raises(RedactionLeakError) as refused:
        redact_capture(parts, out, key=KEY)
    assert str(refused.value) == (
        "Log-1.PML: redaction check failed: 1 secret(s) of class user leaked ('wchen' as "
        "UTF-16 at 0x1234). The output was removed. No part of the capture was written "
        "(3 files)."
    )
    assert not out.exists()  # the folder it created, removed again

    out.mkdir()
    kept = out / "Log-2.PML"
    kept.write_bytes(b"an older file")
    calls.clear()
    with pytest.raises(RedactionLeakError):
        redact_capture(parts, out, key=KEY)
    assert sorted(p.name for p in out.iterdir()) == ["Log-2.PML"]
    assert kept.read_bytes() == b"an older file"


def test_existing_outputs_are_replaced_as_a_single_redact_replaces_its_output(parts, tmp_path):
    out = tmp_path / "new" / "folder"
    first = redact_capture(parts, out, key=KEY)
    (out / "Log-1.PML").write_bytes(b"stale")
    again = redact_capture(parts, out, key=KEY)
    assert again.outputs == first.outputs
    assert (out / "Log-1.PML").read_bytes()[:4] == b"PML_"
    assert sorted(p.name for p in out.iterdir()) == ["Log-1.PML", "Log-2.PML", "Log.PML"]


def test_cli_redacts_the_parts_into_a_folder(parts, tmp_path):
    out, key, map_path = tmp_path / "shareable", tmp_path / "redact.key", tmp_path / "map.json"
    args = ["redact", *map(str, parts), "-o", str(out), "--key-file", str(key)]
    result = _cli(*args, "--map", str(map_path))
    assert result.exit_code == 0, result.stderr
    names = ", ".join(str(out / p.name) for p in parts)
    assert result.stderr.startswith(f"created key file {key}: keep it private")
    assert f"wrote {names} (procmon-pml, 1,250 rows in 3 files); replaced: " in result.stderr
    assert result.stderr.endswith("; leak check passed on each.\n")
    assert len(json.loads(map_path.read_text(encoding="utf-8"))["classes"]["user"]) == 1
    shown = _cli(*args, "--json")
    assert shown.exit_code == 0
    document = json.loads(shown.stdout)
    assert document["outputs"] == [str(out / p.name) for p in parts]
    assert document["part_rows"] == [600, 640, 10] and document["rows"] == 1_250
    for a, b in zip(parts, document["outputs"], strict=True):
        assert read_pml(Path(b)).events.height == read_pml(a).events.height


def test_cli_one_file_is_redacted_as_before(parts, tmp_path):
    out = tmp_path / "one.PML"
    result = _cli("redact", str(parts[2]), "-o", str(out), "--key-file", str(tmp_path / "k"))
    assert result.exit_code == 0
    assert f"wrote {out} (procmon-pml, 10 rows); replaced: " in result.stderr
    assert result.stderr.endswith("; leak check passed.\n")


def test_error_parts_of_different_captures(parts, corpus, tmp_path):
    other = tmp_path / "capture" / "other.pml"
    shutil.copyfile(corpus / "procmon-pml" / "crysis-nanny.pml", other)
    out = tmp_path / "out"
    result = _cli("redact", str(parts[0]), str(other), "-o", str(out))
    assert result.exit_code == 2
    assert result.stderr == f"error: {MESSAGE}\n"
    assert not out.exists()
    with pytest.raises(UsageError) as caught:
        redact_capture([parts[0], other], out, key=KEY)
    assert str(caught.value) == MESSAGE


def test_error_output_is_an_existing_file(parts, tmp_path):
    out = tmp_path / "shareable.PML"
    out.write_bytes(b"not a folder")
    result = _cli("redact", *map(str, parts), "-o", str(out))
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {out}: exists and is not a folder; give a folder for the redacted parts of "
        "the capture (Log.PML, Log-1.PML, Log-2.PML).\n"
    )
    assert out.read_bytes() == b"not a folder"


def test_error_output_folder_holds_the_inputs(parts):
    result = _cli("redact", *map(str, parts), "-o", str(parts[0].parent))
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {parts[0].parent}: holds the input Log.PML, which the redacted part would "
        "replace; give another folder with -o (redact never writes over its input).\n"
    )


def test_error_map_over_a_part(parts, tmp_path):
    with pytest.raises(UsageError, match="the --map file would overwrite an input trace"):
        redact_capture(parts, tmp_path / "out", key=KEY, map_path=parts[1])
    assert not (tmp_path / "out").exists()


def test_a_missing_middle_part_is_said_and_one_file_is_redacted_alone(parts, tmp_path):
    gap = redact_capture([parts[2], parts[0]], tmp_path / "gap", key=KEY)
    assert [p.name for p in gap.outputs] == ["Log.PML", "Log-2.PML"]
    assert gap.notes[-1] == (
        "Log.PML: part 1 of the capture is not among the files: the redacted parts have "
        "the same gap."
    )
    alone = redact_capture([parts[1]], tmp_path / "alone", key=KEY)
    assert alone.outputs == (tmp_path / "alone" / "Log-1.PML",)
    assert (alone.rows, alone.part_rows, alone.output) == (640, (640,), tmp_path / "alone")
    assert read_pml(alone.outputs[0]).events.height == 640
