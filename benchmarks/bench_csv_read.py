"""Procmon CSV read throughput: traceaudit's ``load_trace`` against bare ``pl.read_csv``.

``pl.read_csv(path)`` is the floor: it only splits the file into columns. ``load_trace``
also finds the columns by name, decodes times, PIDs, durations and Detail into typed
columns and sorts. The goal is ``load_trace`` at 60 % or more of the bare rate.

Inputs, timed in one run (best and median of ``--repeat`` interleaved runs):

(a) ``../shared/corpus/procmon-pairs/Tests64bit.csv.gz`` decompressed to a temporary
    file (53,214 events, 27 columns, Procmon's own export); skipped if the corpus is
    absent.
(b) a synthetic Procmon export of ``--rows`` events (default 1,000,000): the 7 default
    columns plus Date & Time, UTF-8 with BOM, CRLF, every field quoted, a realistic mix of
    CreateFile / ReadFile / WriteFile / CloseFile / registry / rename / delete rows.

Run: ``.venv/bin/python benchmarks/bench_csv_read.py [--rows N] [--repeat N]``
"""

from __future__ import annotations

import argparse
import gc
import gzip
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl

from traceaudit.formats import load_trace
from traceaudit.formats.procmon_text import kernels
from traceaudit.formats.procmon_text.csv_read import _FIELDS as CSV_FIELDS
from traceaudit.formats.procmon_text.csv_read import find_header

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus"
PAIRS_CSV = CORPUS / "procmon-pairs" / "Tests64bit.csv.gz"

# (operation, result, detail) in proportions typical of a busy file-system capture.
# "{offset}", "{length}" and "{size}" vary per row, so Detail has a realistic number of
# distinct values (Procmon captures: ~1-7 % of CreateFile details, 15-80 % of I/O ones).
_ROW_KINDS: list[tuple[str, str, str]] = [
    (
        "CreateFile",
        "SUCCESS",
        "Desired Access: Generic Read, Disposition: Open, Options: Synchronous IO "
        "Non-Alert, Non-Directory File, Attributes: n/a, ShareMode: Read, Write, "
        "AllocationSize: n/a, OpenResult: Opened",
    ),
    (
        "CreateFile",
        "SUCCESS",
        "Desired Access: Read Attributes, Disposition: Open, Options: Open Reparse Point, "
        "Attributes: n/a, ShareMode: Read, Write, Delete, AllocationSize: n/a, "
        "OpenResult: Opened",
    ),
    (
        "CreateFile",
        "SUCCESS",
        "Desired Access: Generic Write, Read Attributes, Disposition: OverwriteIf, "
        "Options: Synchronous IO Non-Alert, Non-Directory File, Attributes: N, "
        "ShareMode: Read, AllocationSize: {size}, OpenResult: Created",
    ),
    (
        "CreateFile",
        "SHARING VIOLATION",
        "Desired Access: Generic Read/Write, Disposition: Open, Options: Synchronous IO "
        "Non-Alert, Non-Directory File, Attributes: n/a, ShareMode: None, "
        "AllocationSize: n/a",
    ),
    ("ReadFile", "SUCCESS", "Offset: {offset}, Length: {length}, Priority: Normal"),
    (
        "ReadFile",
        "SUCCESS",
        "Offset: {offset}, Length: {length}, I/O Flags: Non-cached, Paging I/O, "
        "Synchronous Paging I/O, Priority: Normal",
    ),
    ("WriteFile", "SUCCESS", "Offset: {offset}, Length: {length}, Priority: Normal"),
    ("WriteFile", "SUCCESS", "Offset: {offset}, Length: {length}"),
    ("CloseFile", "SUCCESS", ""),
    ("CloseFile", "SUCCESS", ""),
    (
        "QueryStandardInformationFile",
        "SUCCESS",
        "AllocationSize: {size}, EndOfFile: {offset}, NumberOfLinks: 1, DeletePending: "
        "False, Directory: False",
    ),
    ("QueryOpen", "FAST IO DISALLOWED", ""),
    ("RegQueryValue", "SUCCESS", "Type: REG_DWORD, Length: 4, Data: 0"),
    ("RegOpenKey", "NAME NOT FOUND", "Desired Access: Read"),
    (
        "SetRenameInformationFile",
        "ACCESS DENIED",
        "ReplaceIfExists: True, FileName: C:\\Users\\dev\\build\\out{length}.bin",
    ),
    ("SetDispositionInformationFile", "SUCCESS", "Delete: True"),
]


def _grouped(number: int) -> str:
    return f"{number:,}"


def write_synthetic(path: Path, rows: int) -> None:
    """A Procmon-style CSV of ``rows`` events, built with polars (no Python row loop)."""
    kinds = pl.DataFrame(
        {
            "kind": list(range(len(_ROW_KINDS))),
            "Operation": [k[0] for k in _ROW_KINDS],
            "Result": [k[1] for k in _ROW_KINDS],
            "Template": [k[2] for k in _ROW_KINDS],
        },
        schema_overrides={"kind": pl.Int64},
    )
    # Thousands-separated numbers, formatted once and picked per row (prime moduli keep
    # the picks independent of the row kind).
    offsets = pl.DataFrame(
        {"o": list(range(65536)), "offset": [_grouped(n * 4096) for n in range(65536)]},
        schema_overrides={"o": pl.Int64},
    )
    sizes = pl.DataFrame(
        {
            "n": list(range(4096)),
            "length": [_grouped(1 + (n * 7919) % 65536) for n in range(4096)],
            "size": [_grouped((n * 104729) % 10_000_000) for n in range(4096)],
        },
        schema_overrides={"n": pl.Int64},
    )
    start = pl.datetime(2024, 7, 15, 11, 27, 27)
    i = pl.int_range(0, rows, eager=False)
    frame = (
        pl.select(i.alias("i"))
        .with_columns(
            # ~97 µs between events with some jitter: a 1M-event capture spans ~100 s.
            (
                start + pl.duration(nanoseconds=pl.col("i") * 97_300 + (pl.col("i") * 7919) % 5_000)
            ).alias("t"),
            (pl.col("i") * 2654435761 % len(_ROW_KINDS)).alias("kind"),
            (pl.col("i") * 31 % 4093).alias("n"),
            (pl.col("i") * 7919 % 65521).alias("o"),
        )
        .join(kinds, on="kind", how="left", maintain_order="left")
        .join(sizes, on="n", how="left", maintain_order="left")
        .join(offsets, on="o", how="left", maintain_order="left")
        .select(
            pl.format(
                "{}.{} {}",
                pl.col("t").dt.strftime("%-I:%M:%S"),
                (pl.col("t").dt.nanosecond() // 100).cast(pl.String).str.zfill(7),
                pl.col("t").dt.strftime("%p"),
            ).alias("Time of Day"),
            pl.format("proc{}.exe", pl.col("i") % 17).alias("Process Name"),
            (1000 + pl.col("i") % 37).cast(pl.String).alias("PID"),
            pl.col("Operation"),
            pl.format(
                "C:\\Users\\dev\\AppData\\Local\\Temp\\build\\file{}.dat", pl.col("i") % 5003
            ).alias("Path"),
            pl.col("Result"),
            pl.col("Template")
            .str.replace("{offset}", pl.col("offset"), literal=True)
            .str.replace("{length}", pl.col("length"), literal=True)
            .str.replace("{size}", pl.col("size"), literal=True)
            .alias("Detail"),
            pl.col("t").dt.strftime("%-m/%-d/%Y %-I:%M:%S %p").alias("Date & Time"),
        )
    )
    frame.write_csv(path, include_bom=True, line_terminator="\r\n", quote_style="always")


def timed(run: Callable[[], int]) -> tuple[float, float, int]:
    """Wall time and CPU time (all threads of the process) of one run, and the row count
    it reported."""
    gc.collect()
    cpu = time.process_time()
    started = time.perf_counter()
    count = run()
    return time.perf_counter() - started, time.process_time() - cpu, count


def _used_columns(path: Path) -> list[str]:
    """The header names of the columns load_trace reads (the bare read of "the same
    columns" reads these)."""
    header = find_header(path.read_bytes()[:65536].decode("utf-8-sig", errors="replace"))
    assert header is not None
    wanted = {i for column, i in header.canonical().items() if column in CSV_FIELDS}
    return [header.names[i] for i in sorted(wanted | {len(header.names) - 1})]


def compare(label: str, path: Path, repeat: int) -> None:
    """Time bare polars and load_trace on one file (interleaved, ``repeat`` runs each, so
    background load hits both alike) and print them side by side: best and median wall
    time, best CPU time.

    The goal is on wall time against the bare read of the same columns (on an export
    with more columns than load_trace reads, the bare read of them all is printed too).
    CPU time is printed too: on a shared machine it moves less with other processes' load
    than wall time does, so it tells a real change from noise. ``load_trace``'s first
    call in the process (numba loading its compiled loops from the cache) is timed apart.
    """
    columns = _used_columns(path)
    readers: dict[str, Callable[[], int]] = {
        "pl.read_csv (same columns)": lambda: pl.read_csv(path, columns=columns).height,
        "traceaudit load_trace": lambda: load_trace(path).events.height,
    }
    if len(columns) < len(_used_columns_all(path)):
        readers["pl.read_csv (all columns)"] = lambda: pl.read_csv(path).height
    walls: dict[str, list[float]] = {name: [] for name in readers}
    best_cpu = dict.fromkeys(readers, float("inf"))
    rows = dict.fromkeys(readers, 0)
    first = timed(readers["traceaudit load_trace"])[0] if not _WARM else None
    _WARM.append(True)
    for run in readers.values():  # warm-up: page cache, thread pools, imports
        run()
    for _ in range(repeat):
        for name, run in readers.items():
            seconds, cpu, rows[name] = timed(run)
            walls[name].append(seconds)
            best_cpu[name] = min(best_cpu[name], cpu)
    best = {name: min(times) for name, times in walls.items()}
    median = {name: statistics.median(times) for name, times in walls.items()}
    size_mb = path.stat().st_size / 1e6
    print(f"\n{label}: {path.name} ({size_mb:,.1f} MB), load average {_load()}")
    if first is not None:
        print(f"  first load_trace call in this process (numba cache load): {first:.3f} s")
    print(f"  {'reader':<28}{'rows':>12}{'best s':>9}{'median s':>10}{'rows/s':>14}{'cpu s':>9}")
    for name in readers:
        print(
            f"  {name:<28}{rows[name]:>12,}{best[name]:>9.3f}{median[name]:>10.3f}"
            f"{rows[name] / best[name]:>14,.0f}{best_cpu[name]:>9.3f}"
        )
    ours = "traceaudit load_trace"
    for bare in readers:
        if bare == ours:
            continue
        goal = "; goal >= 60%" if bare.endswith("(same columns)") else ""
        print(
            f"  load_trace throughput vs {bare}: best/best {best[bare] / best[ours]:.0%}, "
            f"median/median {median[bare] / median[ours]:.0%}, per CPU second "
            f"{best_cpu[bare] / best_cpu[ours]:.0%}{goal}"
        )
    spread = sorted(walls["pl.read_csv (same columns)"])
    print(
        f"  bare read's {repeat} runs: best {spread[0]:.4f}, 2nd {spread[1]:.4f}, "
        f"quartile {spread[len(spread) // 4]:.4f} s (a stable best has close neighbours)"
    )


_WARM: list[bool] = []


def _used_columns_all(path: Path) -> tuple[str, ...]:
    header = find_header(path.read_bytes()[:65536].decode("utf-8-sig", errors="replace"))
    assert header is not None
    return header.names


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def cold_compile(path: Path) -> None:
    """``load_trace``'s first call in a fresh process with an empty numba cache (the
    one-time compile of the loops), and with the cache filled."""
    code = (
        "import time, sys; t = time.perf_counter(); "
        "from traceaudit.formats import load_trace; load_trace(sys.argv[1]); "
        "print(f'{time.perf_counter() - t:.2f}')"
    )
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        runs = [
            subprocess.run(
                [sys.executable, "-c", code, str(path)],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            for _ in range(2)
        ]
    print(
        f"\nfirst call in a new process (import + read of {path.name}): {runs[0]} s with an "
        f"empty numba cache (compiling), {runs[1]} s with it filled"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="synthetic events")
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="runs per reader (default: 41 on the 53k-row export, 11 on the synthetic one)",
    )
    args = parser.parse_args()
    print(
        f"polars {pl.__version__}, {pl.thread_pool_size()} threads, "
        f"compiled loops {'on' if kernels.available() else 'off'}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        if PAIRS_CSV.exists():
            pairs = Path(tmp) / "Tests64bit.csv"
            pairs.write_bytes(gzip.decompress(PAIRS_CSV.read_bytes()))
            if kernels.available():
                cold_compile(pairs)
            compare("(a) Procmon's own 27-column export", pairs, args.repeat or 41)
        else:
            print(f"\n(a) skipped: {PAIRS_CSV} not found")
        synthetic = Path(tmp) / "synthetic.csv"
        started = time.perf_counter()
        write_synthetic(synthetic, args.rows)
        print(
            f"\n(generated {args.rows:,} synthetic events in {time.perf_counter() - started:.1f} s)"
        )
        compare("(b) synthetic 7 columns + Date & Time", synthetic, args.repeat or 11)


if __name__ == "__main__":
    main()
