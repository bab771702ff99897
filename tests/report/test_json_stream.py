"""``--json`` streams: :meth:`ReportData.write_json` writes the document in pieces, a record
per line in its long lists, and the pieces put together are the document ``to_dict()``
describes, whatever the report holds."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import traceaudit.report.data as report_data
from builders import DLL, TMP, Story, uv_with_backoff
from locations import SAMPLES
from traceaudit import analyze
from traceaudit.cli import main
from traceaudit.schema import Trace

SAMPLE_NAMES = ["uv-extract-rename.csv", "mixed-small.csv", "uv-issue-pasted.tsv"]


def streamed(report: report_data.ReportData, indent: int | None = 2) -> tuple[str, int]:
    """The streamed text and how many pieces it came in."""
    pieces: list[str] = []
    report.write_json(pieces.append, indent=indent)
    return "".join(pieces), len(pieces)


def same_document(text: str, report: report_data.ReportData) -> bool:
    return json.loads(text) == json.loads(json.dumps(report.to_dict(), ensure_ascii=False))


def story_trace(story: Story) -> Trace:
    return Trace(events=story.events(), format="procmon-csv", source=Path("story.csv"))


@pytest.mark.parametrize("sample", SAMPLE_NAMES)
@pytest.mark.parametrize("indent", [2, None, 0, 4])
def test_streamed_json_is_to_json(sample: str, indent: int | None) -> None:
    report = analyze(SAMPLES / sample)
    text, _ = streamed(report, indent)
    assert same_document(text, report)
    assert text == report.to_json(indent=indent)


def test_records_are_written_one_at_a_time_across_slices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Slices of 3 rows: records cross slice ends; every record is its own piece.
    monkeypatch.setattr(report_data, "STREAM_SLICE", 3)
    report = analyze(SAMPLES / "mixed-small.csv")
    text, pieces = streamed(report)
    assert same_document(text, report)
    records = report.conflicts.height + report.blocked_times.height + report.chains.height
    assert report.conflicts.height > 3 and report.chains.height > 3
    assert pieces >= records


def test_pooled_traces_stream_the_same_document() -> None:
    report = analyze([SAMPLES / "uv-extract-rename.csv", SAMPLES / "mixed-small.csv"])
    assert same_document(streamed(report)[0], report)


def test_a_report_with_nothing_to_list_writes_empty_lists() -> None:
    story = Story().open_(0, 7, r"C:\t\a.txt", process="a.exe").close(5, 7, r"C:\t\a.txt")
    report = analyze(story_trace(story))
    text, _ = streamed(report)
    assert same_document(text, report)
    assert '"conflicts": []' in text and '"retries": []' in text and '"episodes": []' in text


def test_hostile_names_stream_like_json_dumps() -> None:
    # Quotes, line breaks, a C1 control and text that looks like the stand-ins for the lists.
    odd = TMP + '\\"q"\n\x85 "stream:conflicts:00" ]},'
    story = uv_with_backoff(release_ms=300)
    story.open_(1, 20, odd + r"\b.dll", process='Ms"Mp\nEng.exe')
    story.rename(2, 10, odd, r"C:\cache\y", process="uv.exe")
    story.close(400, 20, odd + r"\b.dll")
    report = analyze(story_trace(story))
    assert report.conflicts.height >= 2
    for indent in (2, None):
        assert same_document(streamed(report, indent)[0], report)


def test_cli_json_is_the_streamed_document_with_c1_escaped(tmp_path) -> None:
    result = CliRunner().invoke(main, ["analyze", "--json", str(SAMPLES / "mixed-small.csv")])
    assert result.exit_code == 0, result.output
    assert result.output == analyze(SAMPLES / "mixed-small.csv").to_json() + "\n"


def test_cli_json_escapes_c1_controls_split_over_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    from traceaudit import cli

    monkeypatch.setattr(cli._JsonOut, "LIMIT", 7)  # flush every few characters
    out = cli._JsonOut()
    buffer = io.StringIO()
    monkeypatch.setattr(cli.click, "echo", lambda text, nl=True: buffer.write(text))
    for piece in ['{"a": "x\x85', "\x9f", 'y\x7f"}']:
        out.write(piece)
    out.flush(end="\n")
    assert buffer.getvalue() == '{"a": "x\\u0085\\u009fy\\u007f"}\n'


def test_the_dll_scenario_lists_its_conflicts() -> None:
    report = analyze(story_trace(uv_with_backoff(release_ms=100)))
    text, _ = streamed(report)
    assert DLL.replace("\\", "\\\\") in text and same_document(text, report)


def test_each_conflict_episode_and_retry_is_one_line() -> None:
    report = analyze(SAMPLES / "mixed-small.csv")
    lines = report.to_json().splitlines()
    conflicts = [line for line in lines if line.startswith('    {"trace": ') and '"row": ' in line]
    assert len(conflicts) == report.conflicts.height
    assert all(json.loads(line.rstrip(","))["verdict"] for line in conflicts)
    retries = [line for line in lines if '"attempts": ' in line]
    assert len(retries) == report.chains.height
