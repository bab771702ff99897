"""Figures: the artists each plot function draws, files save_all writes, and the lazy import."""

from __future__ import annotations

import stat
import subprocess
import sys

import matplotlib
import numpy as np
import polars as pl
import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from builders import DLL, TMP, Story, uv_with_backoff
from locations import TESTS
from traceaudit.errors import UsageError
from traceaudit.pipeline import analyze
from traceaudit.report import figure_data as data
from traceaudit.report import plot
from traceaudit.schema import Trace

matplotlib.use("Agg")  # headless; the figures never need a GUI backend

DOC = r"C:\Users\me\Documents\report.docx"


def two_blockers() -> Story:
    """Word fails to open a document held by an indexer (released) and OneDrive (never)."""
    story = Story()
    story.close(1, 30, DOC, process="SearchIndexer.exe")  # opened before the capture
    story.open_(2, 30, DOC, access="r", share="r")
    story.open_(3, 40, DOC, access="r", share="r", process="OneDrive.exe")  # never closed
    story.elsewhere(4, 40)  # ...though the capture shows OneDrive closing other files
    story.fail_open(10, 50, DOC, process="WINWORD.EXE")
    story.fail_open(30, 50, DOC)
    story.close(60, 30, DOC)
    story.op(200, 99, "ReadFile", r"C:\other", process="explorer.exe")
    return story


def report_of(story: Story):
    return analyze(Trace(events=story.events(), format="test"))


def quiet() -> Story:
    """A trace with no conflict at all."""
    return (
        Story()
        .open_(0, 1, r"C:\a.txt", process="a.exe")
        .close(5, 1, r"C:\a.txt")
        .op(6, 2, "ReadFile", r"C:\b.txt", process="b.exe")
    )


def handle_bars(ax: Axes) -> int:
    return sum(len(c.get_paths()) for c in ax.collections if c.get_gid() == plot.GID_HANDLES)


def lines(ax: Axes, gid: str) -> list:
    return [line for line in ax.get_lines() if line.get_gid() == gid]


def points(ax: Axes, gid: str) -> int:
    return sum(len(line.get_xdata()) for line in lines(ax, gid))


# ---------------------------------------------------------------------------- timeline


def test_timeline_draws_one_bar_per_handle_and_one_marker_per_failure():
    report = report_of(uv_with_backoff(100))
    ax = plot.timeline(report)
    assert isinstance(ax, Axes)
    assert handle_bars(ax) == 6  # uv's five opens of the directory, the scanner's DLL
    assert points(ax, plot.GID_FAILURES) == 4
    assert points(ax, plot.GID_SUCCESSES) == 1
    assert [t.get_text() for t in ax.get_yticklabels()] == ["uv.exe (10)", "MsMpEng.exe (20)"]
    assert TMP in ax.get_title()


def test_timeline_puts_failures_on_the_failing_row_in_ms_from_the_first_failure():
    ax = plot.timeline(report_of(uv_with_backoff(100)))
    (failures,) = lines(ax, plot.GID_FAILURES)
    assert np.allclose(failures.get_xdata(), [0.0, 10.0, 30.0, 70.0])
    assert set(failures.get_ydata()) == {0}
    assert "first failure" in ax.get_xlabel()


def test_timeline_shades_from_each_failure_to_the_blockers_close():
    d = data.timeline_data(report_of(uv_with_backoff(100)))
    assert d is not None
    assert d.held == ((0.0, pytest.approx(94.9), False),)


def test_timeline_marks_open_before_capture_and_still_open_handles():
    report = report_of(two_blockers())
    d = data.timeline_data(report)
    bars = d.bars.sort("start_ms")
    before = bars.filter(pl.col("open_before_capture"))
    still = bars.filter(pl.col("open_at_end"))
    assert before.height == 1 and still.height == 1
    assert before["start_ms"][0] == pytest.approx(d.trace_start_ms)
    assert still["end_ms"][0] == pytest.approx(d.trace_end_ms)
    assert d.held[-1][2] is True  # OneDrive never closed: held to the end, censored
    ax = plot.timeline(report)
    hatched = [c for c in ax.collections if c.get_gid() == plot.GID_HANDLES and c.get_hatch()]
    assert sum(len(c.get_paths()) for c in hatched) == 2
    assert handle_bars(ax) == 3
    assert points(ax, plot.GID_FAILURES) == 2


def test_timeline_of_a_named_path_matches_case_insensitively():
    report = report_of(uv_with_backoff(100))
    d = data.timeline_data(report, TMP.upper())
    assert d is not None and d.path == TMP and d.failures.height == 4


def test_timeline_of_a_parent_folder_gathers_everything_below_it():
    report = report_of(uv_with_backoff(100))
    d = data.timeline_data(report, "C:\\")
    assert d.path == "C:\\" and d.failures.height == 4 and d.bars.height == 6
    d = data.timeline_data(report, r"c:\cache")
    assert d.path == r"c:\cache" and d.failures.height == 4 and d.bars.height == 6


def test_timeline_of_a_path_without_failures_starts_at_its_first_event():
    report = report_of(uv_with_backoff(100))
    d = data.timeline_data(report, DLL)
    assert d is not None and not d.origin_is_failure and d.failures.is_empty()
    assert d.bars.height == 1 and d.bars["start_ms"][0] == 0.0


def test_timeline_uses_the_given_axes():
    fig = Figure()
    given = fig.add_subplot()
    assert plot.timeline(report_of(uv_with_backoff(100)), ax=given) is given


def test_timeline_escapes_dollar_signs_so_paths_are_not_mathtext():
    path = r"C:\$Recycle.Bin\$R1"
    story = Story().open_(0, 2, path + r"\x.dll", process="MsMpEng.exe")
    story.rename(5, 1, path, r"C:\y", process="a$b.exe").close(40, 2, path + r"\x.dll")
    ax = plot.timeline(report_of(story))
    # matplotlib draws "\$" as "$" outside mathtext; a lone "\$" would lose its backslash
    assert path.replace("$", r"\$") in ax.get_title()
    assert r"a\$b.exe (1)" in [t.get_text() for t in ax.get_yticklabels()]
    plot.figure_bytes(ax.figure, "png")  # renders without a mathtext error


def test_a_report_without_conflicts_gives_an_explaining_empty_axes():
    report = report_of(quiet())
    for draw in (plot.timeline, plot.windows, plot.blockers):
        ax = draw(report)
        assert isinstance(ax, Axes)
        assert "No " in ax.texts[0].get_text()


def test_timeline_of_a_path_the_trace_never_touched_says_so():
    ax = plot.timeline(report_of(uv_with_backoff(100)), r"C:\nowhere")
    assert ax.texts[0].get_text() == r"No handle or failure on C:\nowhere or below it."


def test_a_failure_with_no_holder_gets_a_timeline_but_no_window_or_blocker_figure(tmp_path):
    story = Story().fail_open(5, 1, r"C:\locked.txt", process="app.exe")
    story.op(9, 2, "ReadFile", r"C:\other.txt", process="b.exe")
    report = report_of(story)
    ax = plot.timeline(report)
    assert points(ax, plot.GID_FAILURES) == 1 and handle_bars(ax) == 0
    written = plot.save_all(report, tmp_path, formats=("png",))
    assert [p.name for p in written] == ["timeline-1-locked.txt.png"]


# ---------------------------------------------------------------------------- windows


def legend_texts(ax: Axes) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_windows_draws_the_ecdf_and_a_line_per_tool_of_the_replay_table():
    report = report_of(uv_with_backoff(100))
    ax = plot.windows(report)
    assert len(lines(ax, plot.GID_ECDF)) == 1
    assert ax.get_xscale() == "log"
    labels = legend_texts(ax)
    assert any(label.startswith("suggested (") for label in labels)
    # every tool of the replay table has a line, or the legend says why it has none
    tools = report.replay["tool"].to_list()
    assert len(tools) == 13
    drawn = [t for t in tools if any(label.startswith(f"{t}: ") for label in labels)]
    (note,) = [label for label in labels if label.startswith("no line: ")]
    left_out = [t for t in tools if t not in drawn]
    assert left_out and all(t in note for t in left_out)
    assert len(lines(ax, plot.GID_POLICY)) == 1 + len(drawn)
    # uv saw ACCESS DENIED (5): MSBuild's Copy and rimraf retry only 32/33; Node's fs.rm never
    assert "MSBuild Copy, rimraf (do not retry error 5)" in note
    assert "Node.js fs.rm (never retry by default)" in note


def test_windows_says_when_two_tools_share_one_curve_and_dashes_the_second():
    report = report_of(uv_with_backoff(100))
    ax = plot.windows(report, policies=["uv", ".NET SDK FileAccessRetrier"])
    by_label = {line.get_label(): line for line in lines(ax, plot.GID_POLICY)}
    (uv,) = [line for label, line in by_label.items() if label.startswith("uv: ")]
    (dotnet,) = [line for label, line in by_label.items() if label.startswith(".NET SDK")]
    # both retry at 10, 30, 70, 150 ms ...: the same step; the second one is dashed over it
    assert dotnet.get_label().endswith("(same curve as uv)")
    assert uv.get_linestyle() == "-" and dotnet.get_linestyle() == "--"
    assert uv.get_color() != dotnet.get_color()


def test_windows_draws_a_dense_run_of_retries_as_a_band():
    report = report_of(uv_with_backoff(5000))  # held 5 s: the axis runs to 20 s
    ax = plot.windows(report, policies=["graceful-fs", "uv"])
    # graceful-fs retries at most 100 ms apart for 60 s: on a log axis those ticks would
    # merge into a solid block; the dense run is one band, and the sparse start stays ticks
    (band,) = [p for p in ax.patches if p.get_gid() == plot.GID_RETRY_BAND]
    assert band.get_x() > 100  # where the retries come closer than a few points
    assert band.get_x() + band.get_width() == pytest.approx(ax.get_xlim()[1], rel=0.01)
    ticks = [c for c in ax.collections if c.get_gid() is None and hasattr(c, "get_positions")]
    assert len(ticks) == 3  # the suggested, graceful-fs's first retries, uv's: no band


def test_windows_accepts_policy_names_and_objects():
    from traceaudit.policy import RetryPolicy, known_policy

    report = report_of(uv_with_backoff(100))
    own = RetryPolicy(initial_delay_ms=50, multiplier=1, max_attempts=4)
    ax = plot.windows(report, policies=["uv", known_policy("conda"), own])
    assert len(lines(ax, plot.GID_POLICY)) == 1 + 3
    ax = plot.windows(report, policies=["uv", "MSBuild Copy"])  # MSBuild: not on error 5
    assert len(lines(ax, plot.GID_POLICY)) == 1 + 1
    assert "no line: MSBuild Copy (do not retry error 5)" in legend_texts(ax)


def test_windows_refuses_an_unknown_policy_name():
    with pytest.raises(UsageError, match="no single known policy named 'nope'"):
        plot.windows(report_of(uv_with_backoff(100)), policies=["nope"])


def test_windows_marks_censored_windows_with_their_count():
    report = report_of(two_blockers())
    sample = data.window_sample(report)
    assert sample is not None and sample.n == 1 and sample.n_censored == 1
    ax = plot.windows(report, policies=())
    (marks,) = [c for c in ax.collections if c.get_gid() == plot.GID_CENSORED]
    assert len(marks.get_offsets()) == 1
    assert any("still blocked" in t.get_text() for t in ax.get_legend().get_texts())


def test_windows_uses_the_given_axes():
    fig = Figure()
    given = fig.add_subplot()
    assert plot.windows(report_of(uv_with_backoff(100)), ax=given) is given


def test_policy_curve_reaches_the_window_at_the_first_retry_after_release():
    report = report_of(uv_with_backoff(100))
    sample = data.window_sample(report)
    assert sample.window_ms.tolist() == pytest.approx([94.9])
    from traceaudit.policy import known_policy

    curve = data.policy_curve(sample, known_policy("uv"))
    # uv retries at 10, 30, 70, 150 ms …: 150 ms is the first after 94.9 ms
    assert curve.made_it == 1 and curve.triggered == 1
    assert curve.covered[curve.attempt_ms < 150].max() == 0.0
    assert curve.covered[curve.attempt_ms >= 150].min() == 1.0


def test_window_sample_falls_back_to_conflicts_without_episodes():
    from dataclasses import replace

    report = report_of(uv_with_backoff(100))
    bare = replace(report, episodes=pl.DataFrame(), blocked=pl.DataFrame())
    sample = data.window_sample(bare)
    assert sample.source == "conflicts"
    assert sorted(sample.window_ms.round(6).tolist()) == [24.9, 64.9, 84.9, 94.9]


# ---------------------------------------------------------------------------- blockers


def test_blockers_draws_one_bar_per_blocking_process():
    story = two_blockers()
    # a second path, held by the scanner
    story.open_(100, 20, DLL, process="MsMpEng.exe")
    story.rename(101, 10, TMP, r"C:\cache\x", process="uv.exe").close(150, 20, DLL)
    report = report_of(story)
    ax = plot.blockers(report)
    bars = [p for p in ax.patches if p.get_gid() == plot.GID_BLOCKERS]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert len(bars) == len(labels) == 2
    assert labels == ["OneDrive.exe", "MsMpEng.exe"]  # most conflicts first
    assert [b.get_width() for b in bars] == [2, 1]


def test_blockers_counts_conflicts_with_no_holder_in_the_title():
    story = uv_with_backoff(100)
    story.fail_open(300, 10, r"C:\locked.txt", result="SHARING VIOLATION")
    ax = plot.blockers(report_of(story))
    assert "1 conflict with no holder" in ax.get_title()


def test_blockers_uses_the_given_axes():
    fig = Figure()
    given = fig.add_subplot()
    assert plot.blockers(report_of(uv_with_backoff(100)), ax=given) is given


# ---------------------------------------------------------------------------- files


def test_save_all_writes_png_and_svg_of_every_figure(tmp_path):
    out = tmp_path / "plots"
    written = plot.save_all(report_of(uv_with_backoff(100)), out)
    names = sorted(p.name for p in written)
    assert names == sorted(
        f"{stem}.{ext}"
        for stem in ("blockers", "timeline-1-tmpAbC123", "windows")
        for ext in ("png", "svg")
    )
    assert sorted(p.name for p in out.iterdir()) == names  # no temporary file left behind
    for p in written:
        head = p.read_bytes()[:64]
        assert head.startswith(b"\x89PNG") if p.suffix == ".png" else b"<svg" in p.read_bytes()
        assert stat.S_IMODE(p.stat().st_mode) & 0o044  # readable by others, as open() makes


def test_save_all_skips_figures_with_nothing_to_show(tmp_path):
    assert plot.save_all(report_of(quiet()), tmp_path) == []
    assert list(tmp_path.iterdir()) == []


def test_save_all_refuses_a_file_as_directory(tmp_path):
    target = tmp_path / "plots"
    target.write_text("x")
    with pytest.raises(UsageError, match="is not a folder"):
        plot.save_all(report_of(uv_with_backoff(100)), target)


def test_svg_output_is_reproducible():
    report = report_of(uv_with_backoff(100))
    first = plot.figure_bytes(plot.blockers(report).figure, "svg")
    again = plot.figure_bytes(plot.blockers(report).figure, "svg")
    assert first == again


def test_plot_functions_do_not_touch_pyplot_state_unless_pyplot_is_in_use():
    code = (
        "import matplotlib; matplotlib.use('Agg'); import sys;"
        f"sys.path[:0] = [{str(TESTS / 'report')!r}, {str(TESTS / 'support')!r}];"
        "from test_plot import report_of, uv_with_backoff;"
        "from traceaudit import plot;"
        "ax = plot.timeline(report_of(uv_with_backoff(100)));"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


def test_importing_traceaudit_does_not_import_matplotlib():
    code = (
        "import sys, traceaudit, traceaudit.report.html;"
        "assert 'matplotlib' not in sys.modules, sorted(m for m in sys.modules if 'matplotlib' in m)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# ---------------------------------------------------------------------------- helpers


@pytest.mark.parametrize(
    ("text", "width", "expected"),
    [
        ("short", 10, "short"),
        (r"C:\Users\me\AppData\Local\Temp\x.dll", 20, r"C:\Users\…\x.dll"),
        (r"C:\Users\me\AppData\Local\Temp\x.dll", 26, r"C:\Users\me\…\Temp\x.dll"),
        ("abcdefghijklmnopqrstuvwxyz", 11, "abcde…vwxyz"),
    ],
)
def test_shorten_middle_keeps_both_ends(text, width, expected):
    out = data.shorten_middle(text, width)
    assert out == expected and len(out) <= width


def test_blocked_paths_puts_other_process_blocks_first():
    story = two_blockers()
    story.open_(300, 7, r"C:\own.txt", access="r", share="", process="me.exe")
    for ms in (301, 302, 303):
        story.fail_open(ms, 7, r"C:\own.txt")
    story.close(310, 7, r"C:\own.txt")
    paths = data.blocked_paths(report_of(story))
    assert [p.path for p in paths] == [DOC, r"C:\own.txt"]
    assert paths[0].blockers == ("OneDrive.exe",)


# ---------------------------------------------------------------------------- stories


def test_two_handles_of_one_process_one_after_the_other_are_two_bars_with_a_gap():
    """The scanner opens the DLL, closes it, and opens it again 0.3 ms later: two handles.

    Drawn edge to edge they read as one long hold; each must be its own bar, with a gap
    a reader can see between them.
    """
    story = Story().open_(0, 20, DLL, process="MsMpEng.exe").close(40, 20, DLL)
    story.open_(40.3, 20, DLL).close(90, 20, DLL)
    story.rename(5, 10, TMP, r"C:\cache\x", process="uv.exe")
    story.rename(60, 10, TMP, r"C:\cache\x")
    d = data.timeline_data(report_of(story))
    scanner = d.bars.filter(pl.col("process") == "MsMpEng.exe").sort("start_ms")
    assert scanner.height == 2 and scanner["lane"].to_list() == [0, 0]
    ax = plot.timeline(report_of(story))
    assert handle_bars(ax) == 2
    ax.figure.draw_without_rendering()  # the bars are cut back for the screen at draw time
    corners = sorted(
        (path.vertices[:, 0].min(), path.vertices[:, 0].max())
        for c in ax.collections
        if c.get_gid() == plot.GID_HANDLES
        for path in c.get_paths()
    )
    (first_start, first_end), (second_start, _) = corners
    to_px = ax.transData.transform
    gap_px = to_px((second_start, 0))[0] - to_px((first_end, 0))[0]
    assert gap_px >= 2.0  # visible, though the trace has 0.3 ms between them
    assert first_start == pytest.approx(scanner["start_ms"][0])


def test_a_long_process_name_is_whole_in_the_margin_and_a_very_long_one_loses_whole_words():
    story = uv_with_backoff(100)
    story.processes[10] = "SearchProtocolHost.exe"  # 22 characters: shown whole
    for row in story.rows:
        if row["pid"] == 10:
            row["process"] = "SearchProtocolHost.exe"
        if row["pid"] == 20:
            row["process"] = "Microsoft.VisualStudio.Code.ServiceHub.Host.exe"
    ax = plot.timeline(report_of(story))
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["SearchProtocolHost.exe (10)", "Microsoft.…Host.exe (20)"]
    # drawn in the left margin: never over the bars, never off the figure
    ax.figure.draw_without_rendering()
    box = ax.get_window_extent()
    for label in ax.get_yticklabels():
        extent = label.get_window_extent()
        assert extent.x1 <= box.x0 and extent.x0 >= 0


def test_labels_inside_bars_name_whole_files_and_stay_inside_their_bar():
    ax = plot.timeline(report_of(uv_with_backoff(100)))
    ax.figure.draw_without_rendering()
    from traceaudit.report._mpl import FittedLabel

    (label,) = [t for t in ax.texts if isinstance(t, FittedLabel)]  # the scanner's DLL
    assert label.candidates == (
        "…\\a.dll  share Read, Write, Delete",
        "a.dll  share Read, Write, Delete",
        "a.dll",
    )
    text = label.get_text()
    assert text in label.candidates and "a.dll" in text  # the file, never cut
    x0, x1, *_ = label._span
    extent = label.get_window_extent()
    assert extent.x1 <= ax.transData.transform((x1, 0))[0] + 0.5


def test_every_text_on_every_figure_is_at_least_8_points():
    from matplotlib.text import Text

    report = report_of(two_blockers())
    for _name, figure in plot.report_figures(report):
        figure.draw_without_rendering()
        small = [
            (t.get_text(), t.get_fontsize())
            for t in figure.findobj(Text)
            if t.get_visible() and t.get_text() and t.get_fontsize() < 8
        ]
        assert small == [], _name


# ---------------------------------------------------------------------------- notebooks


def _formatted(obj):
    from IPython.core.interactiveshell import InteractiveShell

    data, _metadata = InteractiveShell.instance().display_formatter.format(obj)
    return data


@pytest.mark.parametrize("draw", [plot.timeline, plot.windows, plot.blockers])
def test_what_a_plot_function_returns_shows_as_exactly_one_image_in_jupyter(draw):
    ax = draw(report_of(uv_with_backoff(100)))
    for shown in (ax, ax.figure):  # the cell's value, or ax.figure as the old notebooks had
        data = _formatted(shown)
        images = [k for k in data if k.startswith("image/")]
        assert images == ["image/png"]
        assert data["image/png"].startswith(b"\x89PNG")


def test_an_axes_of_your_own_is_drawn_into_and_gets_nothing_new():
    fig = Figure()
    given = fig.add_subplot()
    assert plot.timeline(report_of(uv_with_backoff(100)), ax=given) is given
    assert type(given) is Axes and fig.axes == [given]  # nothing added, no repr of ours


def test_figures_are_not_registered_with_pyplot_so_the_inline_backend_never_shows_them():
    code = (
        "import matplotlib; matplotlib.use('Agg'); import sys;"
        "import matplotlib.pyplot as plt;"
        f"sys.path[:0] = [{str(TESTS / 'report')!r}, {str(TESTS / 'support')!r}];"
        "from test_plot import report_of, uv_with_backoff;"
        "from traceaudit import plot;"
        "ax = plot.timeline(report_of(uv_with_backoff(100)));"
        "assert plt.get_fignums() == [], plt.get_fignums();"
        "assert ax.figure._repr_png_().startswith(b'\\x89PNG')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
