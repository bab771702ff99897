"""Benchmark: reading an ETW .etl trace with traceaudit and with dissect.etl.

Run ``python benchmarks/bench_etl_read.py [TRACE.etl[.zip]] [--rounds N]`` (default: the
corpus trace ``etl/perfview-net452-x64.etl.zip``: 179,474 records in 360 LZ77-compressed
buffers, extracted to a temporary file first). Each reader runs in its own fresh process,
once per round, the readers taking turns (the machine is shared: interleaved rounds, then
min and median over all timed reads):

* ``dissect.etl`` (AGPL, when installed; not a dependency of traceaudit): iterate every
  record and parse its payload (``record.event``), as a consumer of that library does to
  find its file events;
* ``traceaudit.read_etl``: the whole event frame (every record walked, FileIo /
  Kernel-File / process / thread records decoded and linked), with the numba kernels;
* ``traceaudit.read_etl_file_events``: the decoded FileIo / Kernel-File records only;
* ``traceaudit.read_etl (no JIT)``: ``read_etl`` with ``TRACEAUDIT_NO_JIT=1`` (the
  pure-Python decoder and record walk, as where numba is missing).

The first read of each process is not timed (imports, numba loading its cached machine
code); it is printed separately as "first", and once more with numba compiling from
scratch (an empty ``NUMBA_CACHE_DIR``), the one-time cost after installing or changing
the kernels. Printed per reader: records, min and median seconds, records per second
(median), and the speed-up over dissect.etl (median over median), with the load average.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
DEFAULT_TRACE = CORPUS / "etl" / "perfview-net452-x64.etl.zip"
NO_JIT = "traceaudit.read_etl (no JIT)"
READERS = ("dissect.etl", "traceaudit.read_etl", "traceaudit.read_etl_file_events", NO_JIT)
REPEATS = {
    "dissect.etl": 1,
    "traceaudit.read_etl": 7,
    "traceaudit.read_etl_file_events": 7,
    NO_JIT: 3,
}


def _run_once(reader: str, path: str) -> tuple[int, float]:
    """(records, seconds) of one read in this process."""
    start = time.perf_counter()
    if reader == "dissect.etl":
        from dissect.etl import ETL

        records = 0
        with open(path, "rb") as handle:
            for record in ETL(handle):
                records += 1
                with contextlib.suppress(Exception):  # dissect fails on a few records
                    record.event  # noqa: B018 - parse the payload, as a consumer would
        return records, time.perf_counter() - start
    from traceaudit.formats.etl import reader as etl

    if reader == "traceaudit.read_etl_file_events":
        etl.read_etl_file_events(path)
    else:
        etl.read_etl(path)
    seconds = time.perf_counter() - start
    return etl._decode(etl.open_input(path), strict=False).decoded.records, seconds


def _child(reader: str, path: str, repeats: int) -> None:
    """Run in a fresh interpreter: one untimed first read (timed apart), then ``repeats``."""
    records, first = _run_once(reader, path)
    times = [_run_once(reader, path)[1] for _ in range(repeats)]
    print(json.dumps({"records": records, "first": first, "times": times}))


def _measure(
    reader: str, path: str, repeats: int, env: dict[str, str] | None = None
) -> dict | None:
    command = [sys.executable, __file__, "--child", reader, path, str(repeats)]
    environment = {**os.environ, **(env or {})}
    if reader == NO_JIT:
        environment["TRACEAUDIT_NO_JIT"] = "1"
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=environment)
    if done.returncode != 0:
        print(f"{reader}: not run ({done.stderr.strip().splitlines()[-1:] or ['failed']})")
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:  # not Linux
        return "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trace", nargs="?", default=str(DEFAULT_TRACE))
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument(
        "--child", nargs=3, metavar=("READER", "PATH", "REPEATS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        reader, path, repeats = args.child
        _child(reader, path, int(repeats))
        return
    source = Path(args.trace)
    runs: dict[str, list[dict]] = {reader: [] for reader in READERS}
    with tempfile.TemporaryDirectory() as folder:
        path = source
        if zipfile.is_zipfile(source):
            with zipfile.ZipFile(source) as archive:
                member = next(n for n in archive.namelist() if n.lower().endswith(".etl"))
                path = Path(folder) / Path(member).name
                path.write_bytes(archive.read(member))
        print(f"{source.name}: {path.stat().st_size:,} bytes; load before {_load()}")
        cold = _measure(
            "traceaudit.read_etl", str(path), 1, {"NUMBA_CACHE_DIR": str(Path(folder) / "jit")}
        )
        for round_ in range(args.rounds):
            order = READERS if round_ % 2 == 0 else READERS[::-1]
            for reader in order:
                if round_ and not runs[reader]:
                    continue  # not installed: said once
                result = _measure(reader, str(path), REPEATS[reader])
                if result is not None:
                    runs[reader].append(result)
    print(f"load after {_load()}; {args.rounds} rounds")
    base = (
        statistics.median(t for r in runs["dissect.etl"] for t in r["times"])
        if runs["dissect.etl"]
        else None
    )
    print(
        f"{'reader':<34}{'records':>10}{'min s':>9}{'median s':>10}{'records/s':>12}"
        f"{'speed-up':>10}{'first s':>9}"
    )
    for reader, results in runs.items():
        if not results:
            continue
        times = [t for r in results for t in r["times"]]
        median = statistics.median(times)
        records = results[0]["records"]
        ratio = f"{base / median:.1f}x" if base else "-"
        first = statistics.median(r["first"] for r in results)
        print(
            f"{reader:<34}{records:>10,}{min(times):>9.3f}{median:>10.3f}"
            f"{records / median:>12,.0f}{ratio:>10}{first:>9.2f}"
        )
    if cold is not None:
        print(
            f"traceaudit.read_etl first read with numba compiling from scratch: "
            f"{cold['first']:.2f} s (once per install; later processes load the cache)"
        )


if __name__ == "__main__":
    main()
