"""A capture Process Monitor rolled over into Log.PML, Log-1.PML… reads as one trace.

No public capture rolled over, so the parts are cut from a corpus capture the way Procmon
writes them (:mod:`pml_parts`): each a whole PML with the original header and tables.
"""

from __future__ import annotations

import json
import shutil

import polars as pl
import pytest
from click.testing import CliRunner

from pml_parts import pml_bytes, split_pml, write_parts
from traceaudit import analyze, timeline
from traceaudit.cli import main
from traceaudit.errors import UsageError
from traceaudit.formats.convert import convert
from traceaudit.formats.load import open_batches
from traceaudit.formats.pml.reader import read_pml
from traceaudit.formats.pml.rollover import (
    chain_batches,
    group_parts,
    one_capture,
    part_name,
    sibling_parts,
)


@pytest.fixture
def capture(corpus):
    return pml_bytes(corpus / "procmon-pairs" / "Tests64bit.pml.gz")


@pytest.fixture
def parts(capture, tmp_path):
    return write_parts(capture, [20_000, 40_000], tmp_path)


def test_part_names():
    assert part_name("Log.PML") == ("log", 0)
    assert part_name("C:/captures/Log-12.pml") == ("log", 12)
    assert part_name("my-log-3.PML") == ("my-log", 3)
    assert part_name("Log.csv") is None


def test_the_parts_read_as_the_whole_capture(capture, parts, tmp_path):
    whole = tmp_path / "whole.pml"
    whole.write_bytes(capture)
    expected = read_pml(whole).events
    assert read_pml(parts).events.equals(expected)
    chained = chain_batches(parts, lambda p: open_batches(p, batch_rows=6_000))
    frames = pl.concat(list(chained.frames))
    assert frames.height == expected.height == 53_214
    assert frames.equals(expected.sort("row"))
    assert chained.warnings == [] and not chained.truncated


def test_parts_given_in_any_order_are_one_capture_in_part_order(parts):
    groups, notes = group_parts([parts[2], parts[0], parts[1]])
    assert [g.paths for g in groups] == [tuple(parts)]
    assert notes == []
    assert groups[0].note() == (
        "Log.PML: read Log.PML, Log-1.PML, Log-2.PML as one capture (3 files Process Monitor "
        "rolled over into; same computer and system in their headers, times in order), rows "
        "numbered on across the files."
    )


def test_a_missing_middle_part_is_said(parts):
    (group,), _ = group_parts([parts[0], parts[2]])
    assert group.paths == (parts[0], parts[2])
    assert group.missing() == [1]
    assert "Part 1 of it is not among the files: events are missing between the parts" in (
        group.note()
    )


def test_other_traces_stay_apart_and_keep_their_place(parts, tmp_path):
    other = tmp_path / "other.csv"
    other.write_text("not a pml")
    groups, _ = group_parts([other, parts[0], parts[1]])
    assert [g.paths for g in groups] == [(other,), (parts[0], parts[1])]


def test_a_part_of_another_machine_is_kept_apart(capture, corpus, tmp_path):
    ours = write_parts(capture, [20_000], tmp_path)[0]
    theirs = tmp_path / "Log-1.PML"
    shutil.copyfile(corpus / "procmon-pml" / "crysis-nanny.pml", theirs)
    groups, notes = group_parts([ours, theirs])
    assert [g.paths for g in groups] == [(ours,), (theirs,)]
    assert notes == [
        "Log.PML and Log-1.PML are named like parts of one rolled-over capture, but their "
        "headers name different computers, systems or PML versions: analysed as separate "
        "traces."
    ]


def test_parts_out_of_time_order_are_kept_apart(capture, tmp_path):
    early, late = split_pml(capture, [20_000])
    (tmp_path / "Log.PML").write_bytes(late)
    (tmp_path / "Log-1.PML").write_bytes(early)
    groups, notes = group_parts([tmp_path / "Log.PML", tmp_path / "Log-1.PML"])
    assert len(groups) == 2
    assert notes == [
        "Log.PML and Log-1.PML are named like parts of one rolled-over capture, but Log-1.PML "
        "starts before Log.PML ends: analysed as separate traces."
    ]


def test_parts_beside_a_single_file_are_pointed_out(parts):
    assert sibling_parts([parts[0]]) == [
        "Log.PML: Log-1.PML, Log-2.PML beside it are parts of the same capture (Process "
        "Monitor rolled it over); give them all to read the whole capture as one trace: "
        "Log.PML Log-1.PML Log-2.PML."
    ]
    assert sibling_parts(parts) == []
    assert sibling_parts([parts[1], parts[2]]) == [
        "Log-1.PML: Log.PML beside it is a part of the same capture (Process Monitor rolled "
        "it over); give them all to read the whole capture as one trace: Log.PML Log-1.PML "
        "Log-2.PML."
    ]


def test_analyze_reads_the_parts_as_the_whole_capture(corpus, tmp_path):
    """Cut between a handle's open (rows 353-354) and the failures on its file (1233-1250)."""
    source = corpus / "procmon-pml" / "ron-crash-a.pml"
    parts = write_parts(pml_bytes(source), [600, 1240], tmp_path)
    whole = analyze(source)
    joined = analyze([parts[2], parts[0], parts[1]])
    assert len(joined.traces) == 1
    assert (joined.traces[0].events, joined.traces[0].processes) == (
        1_250,
        whole.traces[0].processes,
    )
    for frame in ("conflicts", "blocking", "chains", "handles", "episodes"):
        assert getattr(joined, frame).drop("trace").equals(getattr(whole, frame).drop("trace"))
    assert joined.warnings[-1].startswith("Log.PML: read Log.PML, Log-1.PML, Log-2.PML as one")
    alone = analyze(parts[2])
    assert alone.conflicts.height == 2  # the file holds only the last part's failures
    assert alone.warnings[-1] == (
        "Log-2.PML: Log.PML, Log-1.PML beside it are parts of the same capture (Process Monitor "
        "rolled it over); give them all to read the whole capture as one trace: Log.PML "
        "Log-1.PML Log-2.PML."
    )


def test_timeline_and_convert_read_the_parts_as_one_trace(corpus, tmp_path):
    source = corpus / "procmon-pml" / "ron-crash-a.pml"
    parts = write_parts(pml_bytes(source), [600, 1240], tmp_path)
    path = whole_report_path(source)
    assert timeline(parts, path).equals(timeline(source, path))
    _, written = convert(parts, tmp_path / "events.parquet")
    assert pl.read_parquet(written).equals(
        pl.read_parquet(convert(source, tmp_path / "w.parquet")[1])
    )


def whole_report_path(source):
    """The folder of the failures in ron-crash-a (the handles' file is below it)."""
    failing = analyze(source).conflicts["path"][0]
    return failing.rsplit("\\", 1)[0]


def test_error_files_of_different_captures_are_not_one_trace(corpus, tmp_path):
    parts = write_parts(pml_bytes(corpus / "procmon-pml" / "ron-crash-a.pml"), [600], tmp_path)
    other = tmp_path / "other.pml"
    shutil.copyfile(corpus / "procmon-pml" / "crysis-nanny.pml", other)
    with pytest.raises(UsageError) as caught:
        one_capture([parts[0], other])
    assert str(caught.value) == (
        "Log.PML, other.pml: these are not the files of one rolled-over Process Monitor "
        "capture. Give one trace, or the files Log.PML, Log-1.PML… of one capture."
    )
    assert one_capture(parts[::-1]) == parts


def _cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_the_commands_take_the_files_of_one_capture(corpus, tmp_path):
    source = corpus / "procmon-pml" / "ron-crash-a.pml"
    parts = [str(p) for p in write_parts(pml_bytes(source), [600, 1240], tmp_path)]
    joined = _cli("analyze", *parts, "--json")
    alone = _cli("analyze", str(source), "--json")
    assert joined.exit_code == alone.exit_code == 0
    conflicts = [
        [{k: v for k, v in c.items() if k != "trace"} for c in json.loads(r.stdout)["conflicts"]]
        for r in (joined, alone)
    ]
    assert len(conflicts[0]) == 4 and conflicts[0] == conflicts[1]

    folder = whole_report_path(source)
    shown = _cli("timeline", *parts, folder)
    assert shown.exit_code == 0
    assert shown.stdout == _cli("timeline", str(source), folder).stdout
    assert shown.stderr.startswith("note: Log.PML: read Log.PML, Log-1.PML, Log-2.PML as one")

    written = _cli("convert", parts[0], parts[2], "-o", str(tmp_path / "gap.parquet"))
    assert written.exit_code == 0
    assert "Part 1 of it is not among the files: events are missing between the parts" in (
        written.stderr
    )
    assert pl.read_parquet(tmp_path / "gap.parquet").height == 1_250 - 640


def test_error_convert_of_two_captures(corpus, tmp_path):
    parts = write_parts(pml_bytes(corpus / "procmon-pml" / "ron-crash-a.pml"), [600], tmp_path)
    other = tmp_path / "other.pml"
    shutil.copyfile(corpus / "procmon-pml" / "crysis-nanny.pml", other)
    result = _cli("convert", str(parts[0]), str(other), "-o", str(tmp_path / "x.parquet"))
    assert result.exit_code == 2
    assert result.stderr == (
        "error: Log.PML, other.pml: these are not the files of one rolled-over Process Monitor "
        "capture. Give one trace, or the files Log.PML, Log-1.PML… of one capture.\n"
    )
    assert not (tmp_path / "x.parquet").exists()


def test_parts_compressed_one_by_one_are_one_capture(corpus, tmp_path):
    """Users gzip each part to attach it to an issue: Log.PML.gz, Log-1.PML.gz …"""
    import gzip

    source = corpus / "procmon-pml" / "ron-crash-a.pml"
    plain = write_parts(pml_bytes(source), [600, 1240], tmp_path)
    packed = []
    for path in plain:
        target = path.with_name(path.name + ".gz")
        target.write_bytes(gzip.compress(path.read_bytes()))
        path.unlink()
        packed.append(target)
    assert part_name(packed[1]) == ("log", 1)
    groups, kept_apart = group_parts([packed[2], packed[0], packed[1]])
    assert kept_apart == [] and [g.paths for g in groups] == [tuple(packed)]
    joined = analyze(packed)
    assert len(joined.traces) == 1 and joined.traces[0].events == 1_250
    assert joined.conflicts.drop("trace").equals(analyze(source).conflicts.drop("trace"))
    assert sibling_parts([packed[0]]) == [
        "Log.PML.gz: Log-1.PML.gz, Log-2.PML.gz beside it are parts of the same capture "
        "(Process Monitor rolled it over); give them all to read the whole capture as one "
        "trace: Log.PML.gz Log-1.PML.gz Log-2.PML.gz."
    ]
