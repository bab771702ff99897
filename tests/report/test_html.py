"""The self-contained HTML report: one file, nothing external, everything escaped, safe writes.

These read the page as text; tests/report/test_html_browser.py drives it in Chromium.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import stat
from html.parser import HTMLParser

import matplotlib
import pytest
from test_plot import DLL, TMP, quiet, report_of, two_blockers, uv_with_backoff

from builders import Story
from locations import ROOT, SAMPLES
from traceaudit import analyze
from traceaudit.errors import UsageError
from traceaudit.report import figure_data as data
from traceaudit.report.html import render_html, write_html

matplotlib.use("Agg")  # headless; the figures never need a GUI backend


class _Collect(HTMLParser):
    """Tags, attributes and text of a page, and whether its tags nest properly."""

    VOID = {"meta", "br", "img", "link", "hr", "input", "wbr"}

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


def plain(html_text: str) -> str:
    """``html_text`` without the line-break opportunities the page puts into paths."""
    return html_text.replace("<wbr>", "")


def scripts(page: str) -> list[tuple[dict[str, str], str]]:
    """(attributes, content) of every <script> of the page."""
    found = re.findall(r"<script([^>]*)>(.*?)</script>", page, flags=re.S)
    return [(dict(re.findall(r'(\w[\w-]*)="([^"]*)"', attrs)), body) for attrs, body in found]


def conflict_data(page: str) -> dict:
    (body,) = [b for a, b in scripts(page) if a.get("id") == "conflict-data"]
    return json.loads(body)


def section(page: str, start: str, end: str) -> str:
    return page[page.index(f'id="{start}"') : page.index(f'id="{end}"')]


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
    assert "link" not in tags and "iframe" not in tags and "object" not in tags
    for tag, attrs in parsed.tags:
        assert tag != "script" or "src" not in attrs  # the script is inline
        for name in ("src", "href"):
            value = attrs.get(name)
            if value is not None:
                assert value.startswith(("data:", "#")), value
    assert 'src="http' not in uv_page and "http://" not in uv_page.replace(
        'xmlns="http://www.w3.org/2000/svg"', ""
    ).replace('"http://www.w3.org/2000/svg"', "")
    assert "url(" not in uv_page.replace('fill="url(#hatch-', "")  # in-page patterns only


def csp_of(page: str) -> dict[str, str]:
    (policy,) = re.findall(r'http-equiv="Content-Security-Policy" content="([^"]*)"', page)
    return dict(d.strip().split(" ", 1) for d in policy.split(";"))


def test_the_csp_allows_exactly_the_inline_script_and_style(uv_page):
    csp = csp_of(uv_page)
    assert csp["default-src"] == "'none'" and csp["img-src"] == "data:"
    assert csp["base-uri"] == "'none'" and csp["form-action"] == "'none'"
    text = " ".join(csp.values())
    for loose in ("unsafe-inline", "unsafe-eval", "http", "*", "self", "nonce"):
        assert loose not in text
    code = [b for a, b in scripts(uv_page) if a.get("type") != "application/json"]
    assert len(code) == 1
    digest = base64.b64encode(hashlib.sha256(code[0].encode()).digest()).decode()
    assert csp["script-src"] == f"'sha256-{digest}'"
    (style,) = re.findall(r"<style>(.*?)</style>", uv_page, flags=re.S)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert csp["style-src"] == f"'sha256-{digest}'"
    assert ' style="' not in uv_page  # a style attribute would be refused by the CSP
    assert "eval(" not in code[0] and "new Function" not in code[0]


def test_figures_are_embedded_inline(uv_page):
    images = [attrs for tag, attrs in parse(uv_page).tags if tag == "img"]
    # the blocked-time distribution; the timelines and blockers are the page's own SVG
    assert len(images) == 1
    for attrs in images:
        assert attrs["src"].startswith("data:image/svg+xml;base64,")
        svg = base64.b64decode(attrs["src"].split(",", 1)[1])
        assert b"<svg" in svg
        assert attrs["alt"]


def test_png_figures_and_no_figures(tmp_path):
    report = report_of(uv_with_backoff(100))
    png = render_html(report, figures="png")
    assert png.count('src="data:image/png;base64,') == 1
    bare = render_html(report, figures=None)
    assert "<img" not in bare and "MsMpEng.exe" in bare
    with pytest.raises(UsageError, match="figures='gif'"):
        render_html(report, figures="gif")


def test_conflicts_table_names_the_blocker_with_pid_path_and_share_mode(uv_page):
    part = plain(section(uv_page, "conflicts", "timelines"))
    assert "<b>MsMpEng.exe</b> (20)" in part
    assert DLL in part
    assert "share mode Read, Write, Delete" in part
    assert "SetRenameInformationFile" in part and "ACCESS DENIED" in part
    assert "blocked-by-other-process" in part
    assert "94.9 ms" in part  # the first failure's remaining window
    assert part.count("<tr") == 1 + 4  # header and the four failed attempts


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
    assert '<details class="snippets" id="snippets">' in uv_page  # closed until asked for
    for language in ("Rust (backon)", "Python (tenacity)", "Go", ".NET (Polly)"):
        assert language in text


def test_everything_from_the_trace_is_escaped():
    evil = r"C:\t\<script>alert(1)</script>&x"
    story = Story().open_(0, 2, evil + r"\a.dll", process="<b>scan</b>.exe")
    story.rename(5, 1, evil, r"C:\t\y", process="app&co.exe").close(40, 2, evil + r"\a.dll")
    page = render_html(report_of(story))
    assert "<script>alert" not in page and "<b>scan</b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&amp;x" in plain(page)
    assert "&lt;b&gt;scan&lt;/b&gt;.exe" in page
    assert "app&amp;co.exe" in page
    parsed = parse(page)
    assert parsed.errors == []
    assert [t for t, _ in parsed.tags].count("script") == 2  # the data block and the script


def test_a_report_without_conflicts_still_renders():
    page = render_html(report_of(quiet()))
    assert "No failed file operation in this trace can be explained by a lock." in page
    assert "<img" not in page
    assert parse(page).errors == []


def test_censored_windows_and_warnings_are_shown():
    report = report_of(two_blockers())
    page = render_html(report, figures=None)
    assert "still held at<br>the trace's end" in page
    story = Story().open_(0, 1, r"C:\a", process="only.exe").fail_open(1, 1, r"C:\a")
    filtered = render_html(report_of(story), figures=None)
    warnings = filtered[filtered.index('id="warnings"') :]
    assert "only one process" in warnings


def test_long_conflict_lists_are_cut_with_a_note():
    page = render_html(report_of(uv_with_backoff(100)), figures=None, max_conflicts=2)
    part = section(page, "conflicts", "timelines")
    assert part.count("<tr") == 1 + 2
    assert "The first 2 of 4 conflicts" in part
    assert "showing 2 of 2 (4 in the trace)" in part
    assert [c["id"] for c in conflict_data(page)["conflicts"]] == ["conflict-1", "conflict-2"]


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
    page = render_html(report_of(story), max_timelines=1, figures=None)
    part = section(page, "timelines", "windows")
    assert part.count('<svg class="timeline"') == 1 and "<img" not in part
    assert re.search(r"<h3[^>]*>C:\\Users\\me\\Documents\\report.docx</h3>", plain(part))
    assert "1 more blocked paths" in part


# ---------------------------------------------------------------------------- structure


HOSTILE = r"C:\t\</script><script>alert(1)</script>.txt"
HOSTILE_PROCESS = "<!--evil--></script>.exe"


def hostile() -> Story:
    """A file named to break out of a script block, held by a process named likewise."""
    story = Story().open_(0, 2, HOSTILE, access="r", share="r", process=HOSTILE_PROCESS)
    story.fail_open(5, 1, HOSTILE, process="app.exe").close(40, 2, HOSTILE)
    return story


@pytest.fixture(scope="module")
def mixed():
    return analyze(SAMPLES / "mixed-small.csv")


@pytest.fixture(scope="module")
def mixed_page(mixed) -> str:
    return render_html(mixed, figures=None)


def test_the_json_block_lists_every_conflict_with_its_row(mixed, mixed_page):
    payload = conflict_data(mixed_page)
    assert payload["total"] == mixed.conflicts.height == len(payload["conflicts"])
    ids = {attrs.get("id") for tag, attrs in parse(mixed_page).tags if tag == "tr"}
    for i, c in enumerate(payload["conflicts"]):
        assert c["id"] in ids and c["order"] == i
        assert set(c) >= {"verdict", "process", "pid", "path", "holders", "held_ms", "censored"}
    assert set(payload["verdicts"]) == set(mixed.conflicts["verdict"])
    assert "SearchProtocolHost.exe" in payload["holders"]
    # the filter options are indices into those lists, in the same order
    form = section(mixed_page, "conflict-filters", "conflict-count")
    for i, name in enumerate(payload["processes"]):
        assert f'<option value="{i}">{name}</option>' in form
    assert "showing 43 of 43" in mixed_page


def test_a_hostile_name_cannot_break_out_of_the_page():
    page = render_html(report_of(hostile()), figures=None)
    assert page.count("<script") == 2 and page.count("</script>") == 2
    assert "<!--" not in page
    payload = conflict_data(page)  # still parses, and gives the name back unchanged
    (row,) = payload["conflicts"]
    assert row["path"] == HOSTILE and row["holders"] == [HOSTILE_PROCESS]
    assert payload["holders"] == [HOSTILE_PROCESS]
    parsed = parse(page)
    assert parsed.errors == [] and parsed.stack == []
    assert HOSTILE in "".join(parsed.text).replace("\u200b", "")


def test_paths_wrap_at_separators_and_durations_do_not(mixed_page):
    part = section(mixed_page, "conflicts", "timelines")
    assert r"C:\<wbr>Users\<wbr>wchen\<wbr>Documents\<wbr>todo\<wbr>file.txt.tmp" in part
    assert "break-all" not in mixed_page
    css = re.findall(r"<style>(.*?)</style>", mixed_page, flags=re.S)[0]
    assert re.search(r"td\.c-path \{ min-width: 22ch; \}", css)
    assert re.search(r"td\.c-held[^{]*\{ white-space: nowrap; \}", css)
    assert 'class="c-held num"' in part


def test_each_timeline_draws_one_bar_per_handle_and_links_its_failures(mixed, mixed_page):
    part = section(mixed_page, "timelines", "windows")
    svgs = re.findall(r'<svg class="timeline".*?</g></g></svg>', part, flags=re.S)
    paths = data.blocked_paths(mixed, limit=5)
    assert len(svgs) == len(paths) == 5
    rows = {attrs.get("id") for tag, attrs in parse(mixed_page).tags if tag == "tr"}
    for entry, svg in zip(paths, svgs, strict=True):
        td = data.timeline_data(mixed, entry.path)
        assert svg.count('<rect class="bar ') == td.bars.height  # successive handles apart
        links = re.findall(r'<a class="fail" href="#([^"]+)"', svg)
        assert len(links) == td.failures.height
        assert set(links) <= rows
        for process in td.rows:  # labelled in full (none of these is long)
            assert f">{process}</text>" in svg
        assert 'data-lo="' in svg and 'data-hi="' in svg
    # the uv path: MsMpEng.exe opened many handles one after another, each its own bar
    uv = svgs[1]
    assert len(re.findall(r'aria-label="MsMpEng\.exe \(pid 33820\)', uv)) > 10
    assert "share mode Read, Write, Delete" in uv and "no close in the capture" not in uv


def test_long_process_names_end_in_an_ellipsis_with_the_full_name_in_a_title():
    name = "AVeryLongProcessNameThatWouldSpillOverTheBars.exe"
    story = Story().open_(0, 2, r"C:\a\b.txt", access="r", share="r", process=name)
    story.fail_open(5, 1, r"C:\a\b.txt", process="app.exe").close(40, 2, r"C:\a\b.txt")
    page = render_html(report_of(story), figures=None)
    svg = section(page, "timelines", "windows")
    assert f"<title>{name} (2)</title>" in svg
    assert re.search(r"<title>[^<]*</title>AVeryLongProcessNameThatWouldSpil…</text>", svg)


def test_the_replay_says_when_a_tool_does_not_retry_the_error(uv_page):
    report = report_of(uv_with_backoff(100))  # ACCESS DENIED: code 5
    part = section(uv_page, "advice", "retries")
    not_retried = report.replay.filter(report.replay["triggered"] == 0)["tool"].to_list()
    assert "rimraf" in not_retried  # it retries 32 and 33 only
    assert part.count("does not retry this error") == len(not_retried)
    for tool in not_retried:
        row = re.search(rf"<tr><td>{re.escape(tool)}</td>.*?</tr>", part)
        assert row and "does not retry this error" in row.group(0)
        assert "0%" not in row.group(0) and "0.0 ms" not in row.group(0)


def test_the_replay_says_which_episodes_fail_at_once(mixed, mixed_page):
    part = section(mixed_page, "advice", "retries")
    rimraf = re.search(r"<tr><td>rimraf</td>.*?</tr>", part)
    assert rimraf and "3 of 7<br>" in rimraf.group(0)
    assert "the other 4 fail at once" in rimraf.group(0)


def test_the_assets_ship_with_the_package():
    from importlib import resources

    assets = resources.files("traceaudit.report") / "html_assets"
    assert (assets / "report.js").read_text(encoding="utf-8").strip()
    assert (assets / "report.css").read_text(encoding="utf-8").strip()
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert '"report/html_assets/*.js", "report/html_assets/*.css"' in pyproject
