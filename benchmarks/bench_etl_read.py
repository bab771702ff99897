"""Benchmark: reading an ETW .etl trace with traceaudit and with dissect.etl.

Run ``python benchmarks/bench_etl_read.py [TRACE.etl[.zip]]`` (default: the corpus trace
``etl/perfview-net452-x64.etl.zip``: 179,474 records in 360 LZ77-compressed buffers,
extracted to a temporary file first). Each reader runs in its own fresh process:

* ``dissect.etl`` (AGPL, when installed; not a dependency of traceaudit): iterate every
  record and parse its payload (``record.event``), as a consumer of that library does to
  find its file events;
* ``traceaudit.read_etl``: the whole event frame (every record walked, FileIo /
  Kernel-File / process / thread records decoded and linked);
* ``traceaudit.read_etl_file_events``: the decoded FileIo / Kernel-File records only.

Printed per reader: records in the file, seconds (median of the repeats after one
warm-up run), records per second, and the speed-up over dissect.etl.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
DEFAULT_TRACE = CORPUS / "etl" / "perfview-net452-x64.etl.zip"
READERS = ("dissect.etl", "traceaudit.read_etl", "traceaudit.read_etl_file_events")
REPEATS = {"dissect.etl": 1, "traceaudit.read_etl": 5, "traceaudit.read_etl_file_events": 5}


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

    if reader == "traceaudit.read_etl":
        etl.read_etl(path)
    else:
        etl.read_etl_file_events(path)
    seconds = time.perf_counter() - start
    return etl._decode(etl.open_input(path), strict=False).decoded.records, seconds


def _child(reader: str, path: str, repeats: int) -> None:
    """Run in a fresh interpreter: one warm-up, then ``repeats`` timed reads."""
    records, _ = _run_once(reader, path)
    times = [_run_once(reader, path)[1] for _ in range(repeats)]
    print(json.dumps({"records": records, "seconds": statistics.median(times)}))


def _measure(reader: str, path: str) -> dict | None:
    command = [sys.executable, __file__, "--child", reader, path, str(REPEATS[reader])]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        print(f"{reader}: not run ({done.stderr.strip().splitlines()[-1:] or ['failed']})")
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trace", nargs="?", default=str(DEFAULT_TRACE))
    parser.add_argument(
        "--child", nargs=3, metavar=("READER", "PATH", "REPEATS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        reader, path, repeats = args.child
        _child(reader, path, int(repeats))
        return
    source = Path(args.trace)
    with tempfile.TemporaryDirectory() as folder:
        path = source
        if zipfile.is_zipfile(source):
            with zipfile.ZipFile(source) as archive:
                member = next(n for n in archive.namelist() if n.lower().endswith(".etl"))
                path = Path(folder) / Path(member).name
                path.write_bytes(archive.read(member))
        print(f"{source.name}: {path.stat().st_size:,} bytes")
        results = {reader: _measure(reader, str(path)) for reader in READERS}
    base = results.get("dissect.etl")
    print(f"{'reader':<34}{'records':>10}{'seconds':>10}{'records/s':>12}{'speed-up':>10}")
    for reader, result in results.items():
        if result is None:
            continue
        rate = result["records"] / result["seconds"]
        ratio = f"{base['seconds'] / result['seconds']:.1f}x" if base else "-"
        print(
            f"{reader:<34}{result['records']:>10,}{result['seconds']:>10.2f}{rate:>12,.0f}{ratio:>10}"
        )


if __name__ == "__main__":
    main()
