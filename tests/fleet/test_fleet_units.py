"""The fleet's parts without a cluster: discovery, the per-trace task, the dataset, the
pooled summary (equal to ``analyze`` of the same traces), the lazy import, the CLI's
message when Dask is missing."""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner
from polars.testing import assert_frame_equal

import traceaudit
from locations import SAMPLES
from traceaudit.cli import main
from traceaudit.errors import TraceFormatError
from traceaudit.fleet.dataset import DatasetWriter, analyse_into, read_table, scan_table
from traceaudit.fleet.discovery import discover
from traceaudit.fleet.driver import _Progress
from traceaudit.fleet.summary import summarize
from traceaudit.fleet.task import TABLES, analyse_file, content_id, failed_result

FAMILIES = [
    ("extract-rename", 1),
    ("extract-rename", 2),
    ("replace-under-indexer", 3),
    ("censored", 4),
    ("own-handle", 5),
    ("permission-denied", 6),
]


def damaged_csv(path: Path) -> Path:
    """A Procmon CSV header over rows that are all binary junk: sniffed as a trace, unreadable."""
    header = '\ufeff"Time of Day","Process Name","PID","Operation","Path","Result","Detail"'
    path.write_bytes(header.encode("utf-8") + b"\r\n" + b'"junk\x00\x01,""x\r\n' * 5)
    return path


def make_fleet(root: Path) -> Path:
    """Simulated traces in two machine folders, a damaged one, a note. The two
    extract-rename traces are both ``extract-rename.csv``, as every machine's capture is
    ``Logfile.PML``: ``analyze`` names the second ``extract-rename.csv #2``."""
    for k, (family, seed) in enumerate(FAMILIES):
        folder = root / f"machine-{k % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        traceaudit.simulate(family, seed=seed).write_csv(folder / f"{family}.csv")
    damaged_csv(root / "machine-0" / "damaged.csv")
    (root / "machine-1" / "notes.txt").write_text("not a trace\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def traces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small fleet (:func:`make_fleet`) and a hidden folder, never searched."""
    root = make_fleet(tmp_path_factory.mktemp("fleet-traces"))
    hidden = root / ".cache"
    hidden.mkdir()
    traceaudit.simulate("censored", seed=9).write_csv(hidden / "skipped.csv")
    return root


def good_paths(root: Path) -> list[str]:
    """The readable traces of :func:`make_fleet`, in path order (the fleet's order)."""
    found = root.glob("machine-*/*.csv")
    return sorted(str(p.resolve()) for p in found if p.name != "damaged.csv")


def test_discovery_walks_folders_sniffs_later_and_skips_the_output(traces: Path, tmp_path: Path):
    found = discover([traces], exclude=traces / "machine-1")
    assert [c.path for c in found] == sorted(c.path for c in found)
    assert all(c.sniff for c in found)
    assert {Path(c.path).parent.name for c in found} == {"machine-0"}  # excluded, hidden
    named = discover([traces / "machine-1" / "notes.txt"])
    assert [c.sniff for c in named] == [False]  # a file named is always analysed
    globbed = discover([str(traces / "**" / "*.csv")])
    assert len(globbed) == len(FAMILIES) + 1 and all(c.sniff for c in globbed)
    with pytest.raises(TraceFormatError, match="no such file or folder"):
        discover([tmp_path / "missing"])
    with pytest.raises(TraceFormatError, match="matches no file"):
        discover([str(tmp_path / "*.pml")])


def test_the_task_analyses_ignores_skips_and_records_failures(traces: Path):
    path = good_paths(traces)[0]
    result = analyse_file(path)
    assert result.status == "ok" and result.trace_id == content_id(path)
    assert set(result.tables) == set(TABLES)
    assert all(
        "trace_id" not in f.columns and "trace" not in f.columns for f in result.tables.values()
    )
    row = result.trace.row(0, named=True)
    assert row["status"] == "ok" and row["events"] > 0 and row["id_from"] == "content"

    assert analyse_file(path, known={result.trace_id}).status == "skipped"
    note = traces / "machine-1" / "notes.txt"
    assert analyse_file(note, sniff=True).status == "not-a-trace"
    named = analyse_file(note)  # named on the command line: its failure is recorded
    assert named.status == "error" and "not a trace traceaudit can read" in named.error
    damaged = analyse_file(traces / "machine-0" / "damaged.csv", sniff=True)
    assert damaged.status == "error" and "not one event could be read" in damaged.error
    assert damaged.trace.row(0, named=True)["error"] == damaged.error


def write_dataset(paths: list[str], dataset: Path) -> None:
    """What the driver does, without a cluster."""
    with DatasetWriter(dataset) as writer:
        for path in paths:
            writer.write(analyse_file(path, sniff=True))


def test_the_pooled_summary_equals_analyze_of_the_traces_together(traces: Path, tmp_path: Path):
    paths = good_paths(traces)
    dataset = tmp_path / "dataset"
    write_dataset([*paths, str(traces / "machine-0" / "damaged.csv")], dataset)
    summary = summarize(dataset)
    report = traceaudit.analyze(paths)
    assert_pooled_equal(summary, report)
    assert summary.failures.height == 1 and summary.analysed == len(paths)
    names = summary.traces["trace"].drop_nulls().to_list()
    assert names == [t.name for t in report.traces]
    assert "extract-rename.csv #2" in names


def assert_pooled_equal(summary, report) -> None:
    assert summary.policy is not None and summary.policy == report.policy
    assert summary.policy_withheld == report.policy_withheld
    for name in ("replay", "windows", "blocked_windows", "blocked_times", "episodes"):
        assert_frame_equal(getattr(summary, name), getattr(report, name))
    assert_frame_equal(summary.blocked.sort(pl.all()), report.blocked.sort(pl.all()))


def test_the_dataset_is_hive_partitioned_by_trace_and_left_clean(traces: Path, tmp_path: Path):
    paths = good_paths(traces)[:2]
    dataset = tmp_path / "dataset"
    write_dataset(paths, dataset)
    ids = {content_id(p) for p in paths}
    for table in ("traces", *TABLES):
        folders = {p.name for p in (dataset / table).iterdir()}
        assert folders == {f"trace_id={i}" for i in ids}, table
        for folder in (dataset / table).iterdir():
            assert [f.name for f in folder.iterdir()] == ["part.parquet"]
    assert list((dataset / ".tmp").iterdir()) == []
    conflicts = pl.scan_parquet(dataset / "conflicts", hive_partitioning=True).collect()
    assert set(conflicts["trace_id"].unique()) == ids
    assert read_table(dataset, "conflicts").height == conflicts.height
    assert read_table(dataset, "traces")["path"].to_list() == sorted(paths)
    with pytest.raises(traceaudit.UsageError, match="unknown fleet table"):
        scan_table(dataset, "events")


def test_a_trace_whose_tables_were_cut_short_is_not_in_the_dataset(traces: Path, tmp_path: Path):
    """A run killed after a trace's tables but before its traces row: readers ignore it,
    and the next run analyses it again (it is not known)."""
    path = good_paths(traces)[0]
    result = analyse_file(path)
    dataset = tmp_path / "dataset"
    with DatasetWriter(dataset) as writer:
        for table in TABLES:
            writer._put(table, result.trace_id, result.tables[table])
    assert scan_table(dataset, "conflicts").collect().height > 0
    assert read_table(dataset, "conflicts").height == 0
    assert summarize(dataset).traces.height == 0


def test_import_traceaudit_loads_no_dask_and_fleet_is_callable_either_way():
    code = (
        "import sys, traceaudit\n"
        "f = traceaudit.fleet\n"
        "print(callable(f), 'dask' in sys.modules, 'distributed' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False", "False"]
    # a submodule imported first binds the package to traceaudit.fleet: still callable
    code = (
        "import traceaudit.fleet.task, traceaudit, types\n"
        "print(isinstance(traceaudit.fleet, types.ModuleType), callable(traceaudit.fleet))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True"]


def test_the_cli_says_how_to_install_dask_when_it_is_missing(
    traces: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed fails
    result = CliRunner().invoke(main, ["fleet", str(traces), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "pip install 'traceaudit[fleet]'" in result.output
    assert not (tmp_path / "out").exists()


def test_the_summary_groups_unread_traces_by_reason_and_flags_incomplete_captures(
    traces: Path, tmp_path: Path
):
    """Seven ETW traces without file I/O print their advice once, not seven times; a
    capture pasted from Procmon's window is flagged as incomplete."""
    dataset = tmp_path / "dataset"
    pasted = SAMPLES / "uv-issue-pasted.tsv"
    note = traces / "machine-1" / "notes.txt"
    damaged = [damaged_csv(tmp_path / f"damaged-{k}.csv") for k in range(3)]
    for k, path in enumerate(damaged):  # three distinct contents, three traces
        path.write_bytes(path.read_bytes() + b"x" * k)
    with DatasetWriter(dataset) as writer:  # files named: the note is recorded too
        for path in [good_paths(traces)[0], pasted, note, *damaged]:
            writer.write(analyse_file(path))
    text = summarize(dataset).to_text()
    answer = {line[2:13].strip(): line[14:] for line in text.splitlines()[3:] if line[:2] == "  "}
    assert answer["Unread"].startswith(
        "4 traces could not be read: not one event could be read (3), not a trace traceaudit "
        "can read (1);"
    )
    assert answer["Caveat"].startswith(
        "1 of 2 analysed traces is an incomplete capture (pasted-excerpt 1, io-without-open 1"
    )
    details = text[text.index("Traces that could not be read (4), by reason:") :].splitlines()
    assert details[1] == "  not one event could be read (3 traces):"
    assert details[2:5] == [f"    {p.resolve()}" for p in damaged]
    assert details[5].startswith("    the first one: not one event could be read: all 5 rows")
    assert details[6:8] == ["  not a trace traceaudit can read (1 trace):", f"    {note.resolve()}"]
    assert details[8].startswith("    error: not a trace traceaudit can read (looks like")


def test_the_output_must_be_a_new_folder_or_a_dataset(traces: Path, tmp_path: Path):
    """``-o`` naming the traces' own folder would scatter tables among them: refused."""
    with pytest.raises(traceaudit.UsageError, match="not a fleet dataset"):
        traceaudit.fleet([traces], traces / "machine-0")
    assert not (traces / "machine-0" / "traces").exists()


def test_a_scheduler_that_cannot_be_reached_leaves_no_dataset(traces: Path, tmp_path: Path):
    pytest.importorskip("distributed")
    with pytest.raises(traceaudit.TraceauditError, match="cannot reach the Dask scheduler"):
        traceaudit.fleet([traces], tmp_path / "out", scheduler="no-port-here", progress=False)
    assert not (tmp_path / "out").exists()


def test_a_script_without_a_main_guard_is_told_what_to_do(
    traces: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """As a local worker process starts, Python imports the caller's script again: a call
    to fleet() at its top level would start a cluster there."""
    monkeypatch.setattr(multiprocessing.current_process(), "_inheriting", True, raising=False)
    with pytest.raises(traceaudit.UsageError, match='if __name__ == "__main__"'):
        traceaudit.fleet([traces], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_cli_refuses_workers_with_a_scheduler(traces: Path, tmp_path: Path):
    result = CliRunner().invoke(
        main,
        ["fleet", str(traces), "-o", str(tmp_path / "o"), "--workers", "2", "--scheduler", "x"],
    )
    assert result.exit_code == 2 and "exclude each other" in result.output


def test_the_summary_reads_as_json(traces: Path, tmp_path: Path):
    dataset = tmp_path / "dataset"
    write_dataset(good_paths(traces), dataset)
    doc = json.loads(summarize(dataset).to_json())
    assert doc["traces"] == {"total": len(FAMILIES), "analysed": len(FAMILIES), "failed": 0}
    assert doc["holders"][0]["holder"] == "MsMpEng.exe"
    assert doc["policy"]["summary"]
    assert os.fspath(dataset) == doc["dataset"]


def test_a_worker_that_sees_the_dataset_commits_the_trace_itself(traces: Path, tmp_path: Path):
    """Its tables and then its traces row: the driver has nothing to write for it."""
    path = good_paths(traces)[0]
    with DatasetWriter(tmp_path / "dataset") as writer:
        here = analyse_into(path, str(writer.root), str(writer.tmp))
        assert here.written and here.tables == {} and here.trace is not None
        files = sorted(p.parent.parent.name for p in writer.root.glob("*/*/part.parquet"))
        assert files == sorted(["traces", *TABLES])
        assert read_table(writer.root, "traces")["path"].to_list() == [path]
        elsewhere = analyse_into(path, str(writer.root), str(tmp_path / "not-on-this-worker"))
        assert not elsewhere.written and set(elsewhere.tables) == set(TABLES)
        writer.write(elsewhere)  # the driver commits what travelled back
    assert read_table(tmp_path / "dataset", "conflicts").height == here_conflicts(path)


def here_conflicts(path: str) -> int:
    return traceaudit.analyze(path).conflicts.height


def test_a_task_lost_on_the_cluster_is_recorded_and_tried_again_next_time(
    traces: Path, tmp_path: Path
):
    path = good_paths(traces)[0]
    lost = failed_result(path, "the task failed on the cluster (KilledWorker: boom)")
    dataset = tmp_path / "dataset"
    with DatasetWriter(dataset) as writer:
        writer.write(lost)
    row = summarize(dataset).traces.row(0, named=True)
    assert (row["status"], row["id_from"]) == ("error", "path")
    assert "KilledWorker" in row["error"] and row["trace_id"] == lost.trace_id != content_id(path)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_draws_on_a_terminal_and_ends_with_one_line():
    screen = Terminal()
    bar = _Progress(4, screen, enabled=True)
    for k in range(4):
        bar.advance(failed=k == 0)
    bar.finish("fleet: 4 files: 3 analysed, 1 failed in 0.1 s")
    text = screen.getvalue()
    assert "\r[" in text and "1/4 files, 1 failed" in text and "4/4 files, 1 failed" in text
    assert "s left" in text.split("\r")[1]  # an estimate while files remain
    drawn = text.split("\r")[-3]  # the last bar, erased with as many spaces
    assert "left" not in drawn
    assert text.endswith(f"\r{' ' * len(drawn)}\rfleet: 4 files: 3 analysed, 1 failed in 0.1 s\n")
    assert "\x1b" not in text  # no ANSI escape: old Windows consoles print them as text
    screen = Terminal()
    _Progress(4, screen, enabled=True).advance(2, skipped=True)  # known before: no estimate
    assert "2/4 files" in screen.getvalue() and "left" not in screen.getvalue()
    quiet = io.StringIO()
    bar = _Progress(4, quiet, enabled=True)
    bar.advance(4)
    bar.finish("done")
    assert quiet.getvalue() == "done\n"


def test_the_files_of_a_rolled_over_capture_are_one_trace_of_the_fleet(
    corpus: Path, traces: Path, tmp_path: Path
):
    """Procmon rolled a capture over into Log.PML, Log-1.PML, Log-2.PML on one machine:
    discovery joins them, the task reads them as one trace (one id, one row), and the
    pooled summary equals ``analyze`` of the parts and the other traces together."""
    from pml_parts import pml_bytes, write_parts

    machine = tmp_path / "machine-2"
    machine.mkdir()
    source = corpus / "procmon-pml" / "ron-crash-a.pml"
    parts = [str(p.resolve()) for p in write_parts(pml_bytes(source), [600, 1240], machine)]
    found = discover([machine, traces / "machine-0"])
    joined = [c for c in found if c.parts]
    assert [c.parts for c in joined] == [tuple(parts)]
    assert joined[0].path == parts[0]
    assert joined[0].size == sum(Path(p).stat().st_size for p in parts)
    assert not any(c.path in parts[1:] for c in found)

    result = analyse_file(parts[0], parts=parts, sniff=True)
    assert result.status == "ok" and result.trace_id == content_id(*parts)
    row = result.trace.row(0, named=True)
    assert row["events"] == 1_250 and row["conflicts"] == 4
    assert any("read Log.PML, Log-1.PML, Log-2.PML as one capture" in w for w in row["warnings"])

    dataset = tmp_path / "dataset"
    with DatasetWriter(dataset) as writer:
        for candidate in found:
            writer.write(analyse_file(candidate.path, parts=candidate.parts, sniff=True))
    others = [c.path for c in found if not c.parts and Path(c.path).name != "damaged.csv"]
    report = traceaudit.analyze([*parts, *others])
    summary = summarize(dataset)
    assert summary.analysed == len(report.traces) == 1 + len(others)
    assert_pooled_equal(summary, report)


def test_the_run_line_counts_files_and_says_which_were_joined():
    from traceaudit.fleet.summary import FleetRun

    run = FleetRun(found=4, analysed=2, seconds=1.0, workers=2, rolled_over=3, captures=1)
    assert run.line() == (
        "fleet: 4 files (3 of them in 1 rolled-over capture, each one trace): 2 analysed, "
        "0 failed in 1.0 s on 2 workers"
    )
    assert run.to_dict()["rolled_over"] == 3 and run.to_dict()["captures"] == 1
