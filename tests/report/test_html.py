"""The self-contained HTML report: one file, nothing external, everything escaped, safe writes."""

from __future__ import annotations

import base64
import re
import stat
from html.parser import HTMLParser

import matplotlib
import pytest
from test_plot import DLL, TMP, quiet, report_of, two_blockers, uv_with_backoff

from builders import Story
from traceaudit.errors import UsageError
from traceaudit.report.html import render_html, write_html

matplotlib.use("Agg")  # headless; the figures never need a GUI backend


class _Collect(HTMLParser):
    """Tags, attributes and text of a page, and whether its tags nest properly."""

    VOID = {"meta", "br", "img", "link", "hr", "input"}

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.stack: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            return
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def parse(page: str) -> _Collect:
    parser = _Collect()
    parser.feed(page)
    parser.close()
    return parser


@pytest.fixture(scope="module")
def uv_page() -> str:
    return render_html(report_of(uv_with_backoff(100)))


def test_the_page_is_one_well_formed_document(uv_page):
    assert uv_page.startswith("<!DOCTYPE html>")
    parsed = parse(uv_page)
    assert parsed.errors == [] and parsed.stack == []
    ids = [attrs.get("id") for _, attrs in parsed.tags if attrs.get("id")]
    assert len(ids) == len(set(ids))
    for anchor in ("traces", "verdicts", "conflicts", "timelines", "windows", "advice"):
        assert anchor in ids


def test_the_page_loads_nothing_from_elsewhere(uv_page):
    parsed = parse(uv_page)
    tags = [tag for tag, _ in parsed.tags]
    assert "script" not in tags and "link" not in tags and "iframe" not in tags
    for _, attrs in parsed.tags:
        for name in ("src", "href"):
            value = attrs.get(name)
            if value is not None:
                assert value.startswith(("data:", "#")), value
    assert 'src="http' not in uv_page and "url(" not in uv_page
    assert "default-src 'none'" in uv_page  # and a CSP that would stop it anyway


def test_figures_are_embedded_inline(uv_page):
    images = [attrs for tag, attrs in parse(uv_page).tags if tag == "img"]
    # blockers, one timeline, windows
    assert len(images) == 3
    for attrs in images:
        assert attrs["src"].startswith("data:image/svg+xml;base64,")
        svg = base64.b64decode(attrs["src"].split(",", 1)[1])
        assert b"<svg" in svg
        assert attrs["alt"]


def test_png_figures_and_no_figures(tmp_path):
    report = report_of(uv_with_backoff(100))
    png = render_html(report, figures="png")
    assert png.count('src="data:image/png;base64,') == 3
    bare = render_html(report, figures=None)
    assert "<img" not in bare and "MsMpEng.exe" in bare
    with pytest.raises(UsageError, match="figures='gif'"):
        render_html(report, figures="gif")


def test_conflicts_table_names_the_blocker_with_pid_path_and_share_mode(uv_page):
    section = uv_page[uv_page.index('id="conflicts"') : uv_page.index('id="timelines"')]
    assert "<b>MsMpEng.exe</b> (20)" in section
    assert DLL in section
    assert "share mode Read, Write, Delete" in section
    assert "SetRenameInformationFile" in section and "ACCESS DENIED" in section
    assert "blocked-by-other-process" in section
    assert "94.9 ms" in section  # the first failure's remaining window
    assert section.count("<tr>") == 1 + 4  # header and the four failed attempts


def test_header_summary_advice_and_retries(uv_page):
    text = " ".join(parse(uv_page).text)
    assert "4 conflicts on 1 path" in text
    traces = uv_page[uv_page.index('id="traces"') : uv_page.index('id="verdicts"')]
    assert '<td class="num">18</td>' in traces  # events
    assert "2024-07-15 11:27:00 to 11:27:00 (155 ms)" in traces
    assert "retry with:" in text and "20 ms ×1.5, 4 attempts" in text
    assert "How real tools' retry policies would have fared" in text
    assert "uv.exe (10)" in text  # the application's own retries
    assert "<pre><code>" in uv_page
    for language in ("Rust (backon)", "Python (tenacity)", "Go", ".NET (Polly)"):
        assert language in text


def test_everything_from_the_trace_is_escaped():
    evil = r"C:\t\<script>alert(1)</script>&x"
    story = Story().open_(0, 2, evil + r"\a.dll", process="<b>scan</b>.exe")
    story.rename(5, 1, evil, r"C:\t\y", process="app&co.exe").close(40, 2, evil + r"\a.dll")
    page = render_html(report_of(story))
    assert "<script>" not in page and "<b>scan</b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&amp;x" in page
    assert "&lt;b&gt;scan&lt;/b&gt;.exe" in page
    assert "app&amp;co.exe" in page
    parsed = parse(page)
    assert parsed.errors == [] and "script" not in [t for t, _ in parsed.tags]


def test_a_report_without_conflicts_still_renders():
    page = render_html(report_of(quiet()))
    assert "No failed file operation in this trace can be explained by a lock." in page
    assert "<img" not in page
    assert parse(page).errors == []


def test_censored_windows_and_warnings_are_shown():
    report = report_of(two_blockers())
    page = render_html(report, figures=None)
    assert "still held at the end of the trace" in page
    story = Story().open_(0, 1, r"C:\a", process="only.exe").fail_open(1, 1, r"C:\a")
    filtered = render_html(report_of(story), figures=None)
    warnings = filtered[filtered.index('id="warnings"') :]
    assert "only one process" in warnings


def test_long_conflict_lists_are_cut_with_a_note():
    page = render_html(report_of(uv_with_backoff(100)), figures=None, max_conflicts=2)
    section = page[page.index('id="conflicts"') : page.index('id="timelines"')]
    assert section.count("<tr>") == 1 + 2
    assert "The first 2 of 4 conflicts" in section


# ---------------------------------------------------------------------------- writing


def test_write_html_writes_one_file_atomically(tmp_path):
    target = tmp_path / "report.html"
    assert write_html(report_of(uv_with_backoff(100)), target) == target
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]  # no temp file left
    assert target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert stat.S_IMODE(target.stat().st_mode) & 0o044


def test_write_html_replaces_an_earlier_report(tmp_path):
    target = tmp_path / "report.html"
    target.write_text("old")
    write_html(report_of(uv_with_backoff(100)), target, figures=None)
    assert "MsMpEng.exe" in target.read_text(encoding="utf-8")


def test_write_html_leaves_nothing_behind_when_the_move_fails(tmp_path, monkeypatch):
    import traceaudit._atomic as io_module

    def boom(src, dst):
        raise OSError("disk full")

    target = tmp_path / "report.html"
    target.write_text("previous")
    monkeypatch.setattr(io_module.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_html(report_of(uv_with_backoff(100)), target, figures=None)
    monkeypatch.undo()
    assert target.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_write_html_refuses_to_overwrite_an_input_trace(tmp_path):
    trace = tmp_path / "Logfile.CSV"
    trace.write_text("the trace")
    with pytest.raises(UsageError) as caught:
        write_html(report_of(uv_with_backoff(100)), trace, inputs=[trace], figures=None)
    assert str(caught.value) == (
        f"{trace}: this is an input trace; refusing to write the HTML report over it. "
        "Give another file name, e.g. report.html."
    )
    assert trace.read_text() == "the trace"


def test_write_html_refuses_a_file_named_like_a_trace_of_the_report(tmp_path):
    from dataclasses import replace

    report = report_of(uv_with_backoff(100))
    report = replace(report, traces=(replace(report.traces[0], name="Logfile.CSV"),))
    trace = tmp_path / "logfile.csv"
    trace.write_text("the trace")
    with pytest.raises(UsageError, match="has the name of a trace this report was made from"):
        write_html(report, trace, figures=None)
    assert trace.read_text() == "the trace"


def test_write_html_refuses_a_directory_and_a_missing_folder(tmp_path):
    report = report_of(uv_with_backoff(100))
    with pytest.raises(UsageError, match="is a directory"):
        write_html(report, tmp_path, figures=None)
    with pytest.raises(UsageError, match="no such directory"):
        write_html(report, tmp_path / "nope" / "r.html", figures=None)


def test_timelines_cover_the_most_telling_paths_first():
    story = two_blockers()
    story.open_(100, 20, DLL, process="MsMpEng.exe")
    story.rename(101, 10, TMP, r"C:\cache\x", process="uv.exe").close(150, 20, DLL)
    page = render_html(report_of(story), max_timelines=1)
    section = page[page.index('id="timelines"') : page.index('id="windows"')]
    assert section.count("<img") == 1
    assert re.search(r"<h3[^>]*>C:\\Users\\me\\Documents\\report.docx</h3>", section)
    assert "1 more blocked paths" in section
