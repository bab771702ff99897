"""Benchmark: reading a Procmon PML log with traceaudit, procmon-parser and procmon-reader.

Run ``python benchmarks/bench_pml_read.py [LOG.pml[.gz]]`` (default: the corpus capture
``procmon-pairs/Tests64bit.pml.gz``, 53,214 events, decompressed to a temporary file
first). Each reader runs in its own fresh process, so one reader's imports, caches and
memory do not count against another:

* ``procmon-parser`` (pure Python, MIT): iterate every event, details on, no stacks;
* ``procmon-reader`` (C++, MIT), when installed: every event as a dict of the columns
  traceaudit reads (time, process, PID, TID, operation, path, result, class, duration,
  detail);
* ``traceaudit.read_pml``: the whole event frame (schema columns, typed details, Detail).

Printed per reader: events, seconds (median of the repeats after one warm-up run),
events per second, and peak memory: the growth of the process's peak resident set during
its first read (which includes the file pages a memory-mapped reader touches).

On a shared machine the readers run ``--rounds`` times, interleaved (the order reversed
every other round), so that load hits all alike: seconds are the median over rounds of
each round's median, and the ratio to procmon-parser is given per round (median, min and
max), with the load average before and after. The cold column is the first read right
after import: for read_pml it includes importing numba and loading its compiled kernels
(from numba's cache on disk; compiling them, on a first run, takes a few seconds more).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
DEFAULT_LOG = CORPUS / "procmon-pairs" / "Tests64bit.pml.gz"
WARMUP_LOG = CORPUS / "procmon-pml" / "file-dump-renames.pml"
READERS = ("procmon-parser", "procmon-reader", "traceaudit.read_pml")
REPEATS = {"procmon-parser": 3, "procmon-reader": 5, "traceaudit.read_pml": 20}
PROCMON_READER_FIELDS = [
    "timestamp",
    "process_name",
    "pid",
    "tid",
    "operation",
    "path",
    "result",
    "event_class",
    "duration",
    "detail",
]


def _status(field: str) -> int:
    """A memory figure of this process from /proc/self/status, in bytes."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def _reset_peak() -> None:
    """Make the kernel's peak-RSS mark (VmHWM) restart from the current RSS."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def _procmon_parser(path: Path) -> int:
    from procmon_parser import ProcmonLogsReader

    with path.open("rb") as handle:
        reader = ProcmonLogsReader(handle, should_get_stacktrace=False)
        return sum(1 for _ in reader)


def _procmon_reader(path: Path) -> int:
    from procmon_reader import ProcmonReader

    reader = ProcmonReader(str(path))
    reader.apply_filters(select_fields=PROCMON_READER_FIELDS)
    count = sum(1 for _ in reader)
    reader.close()
    return count


def _read_pml(path: Path) -> int:
    from traceaudit.formats.pml.reader import read_pml

    return read_pml(path).events.height


RUNNERS = {
    "procmon-parser": _procmon_parser,
    "procmon-reader": _procmon_reader,
    "traceaudit.read_pml": _read_pml,
}


def child(reader: str, path: Path, repeats: int, warmup: Path | None) -> dict:
    """Measure one reader in this (fresh) process.

    Without ``warmup``: the first read right after the imports (cold: one-time library
    initialisation counts). With it: read ``warmup`` first (a small log), then measure
    the peak memory growth of one read of ``path`` and the time of ``repeats`` reads.
    """
    run = RUNNERS[reader]
    module = {"procmon-parser": "procmon_parser", "procmon-reader": "procmon_reader"}
    try:
        __import__(module.get(reader, "traceaudit.formats.pml.reader"))
    except ImportError as exc:
        return {"reader": reader, "missing": str(exc)}
    if warmup is not None:
        run(warmup)
        _reset_peak()
    before = _status("VmRSS")
    started = time.perf_counter()
    events = run(path)
    first = time.perf_counter() - started
    result = {
        "reader": reader,
        "events": events,
        "first_seconds": first,
        "peak_bytes": max(_status("VmHWM") - before, 0),
    }
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        run(path)
        timings.append(time.perf_counter() - started)
    result["seconds"] = statistics.median(timings) if timings else first
    return result


def measure(reader: str, path: Path, warmup: Path | None) -> dict:
    """Run :func:`child` in a fresh interpreter: cold first read, then warm figures."""
    figures: dict = {}
    for mode, log in (("cold", None), ("warm", warmup)):
        if mode == "warm" and log is None:
            continue
        command = [sys.executable, __file__, "--child", reader, str(path)]
        command += [str(REPEATS[reader] if mode == "warm" else 0), str(log or "")]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            return {"reader": reader, "missing": done.stderr.strip().splitlines()[-1:]}
        result = json.loads(done.stdout)
        if "missing" in result:
            return result
        figures.setdefault("reader", reader)
        figures.setdefault("events", result["events"])
        figures[f"{mode}_peak_bytes"] = result["peak_bytes"]
        figures[f"{mode}_first_seconds"] = result["first_seconds"]
        if mode == "warm" or "seconds" not in figures:
            figures["seconds"] = result["seconds"]
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", nargs="?", type=Path, default=DEFAULT_LOG)
    parser.add_argument(
        "--warmup", type=Path, default=WARMUP_LOG, help="small log read first (warm figures)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of warm runs")
    parser.add_argument("--child", nargs=4, metavar=("READER", "PATH", "REPEATS", "WARMUP"))
    args = parser.parse_args(argv)
    if args.child:
        reader, path, repeats, warmup = args.child
        result = child(reader, Path(path), int(repeats), Path(warmup) if warmup else None)
        print(json.dumps(result))
        return
    if not args.log.is_file():
        sys.exit(f"error: {args.log} not found; give a PML log as the first argument.")
    warmup = args.warmup if args.warmup and args.warmup.is_file() else None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / args.log.name.removesuffix(".gz")
        if args.log.suffix == ".gz":
            with gzip.open(args.log) as source, path.open("wb") as target:
                shutil.copyfileobj(source, target)
        else:
            shutil.copyfile(args.log, path)
        size = path.stat().st_size
        print(
            f"{path.name}: {size / 2**20:.1f} MiB; Python {sys.version.split()[0]}, "
            f"{os.cpu_count()} CPUs; warm-up log: {warmup.name if warmup else 'none'}"
        )
        load_before = _load()
        results = [measure(reader, path, warmup) for reader in READERS]
        rounds = {r["reader"]: [r["seconds"]] for r in results if "missing" not in r}
        for number in range(1, args.rounds):
            order = list(rounds) if number % 2 == 0 else list(reversed(rounds))
            for reader in order:
                rounds[reader].append(_warm(reader, path, warmup))
        for result in results:
            if result["reader"] in rounds:
                result["seconds"] = statistics.median(rounds[result["reader"]])
        print(f"load average before: {load_before}; after: {_load()}")
    print(
        f"{'reader':22} {'events':>8} {'seconds':>8} {'events/s':>10} "
        f"{'peak MiB':>9} {'x file':>7} {'cold MiB':>9} {'cold s':>7}"
    )
    for result in results:
        if "missing" in result:
            print(f"{result['reader']:22} not available: {result['missing']}")
            continue
        seconds = result["seconds"]
        peak = result.get("warm_peak_bytes", result["cold_peak_bytes"])
        print(
            f"{result['reader']:22} {result['events']:>8} {seconds:>8.4f} "
            f"{result['events'] / seconds:>10,.0f} {peak / 2**20:>9.1f} {peak / size:>7.2f} "
            f"{result['cold_peak_bytes'] / 2**20:>9.1f} {result['cold_first_seconds']:>7.3f}"
        )
    print(
        "seconds: median of warm repeats; peak: growth of the peak resident set during one "
        "read after the warm-up (file pages a memory-mapped reader touches included); "
        "cold: the first read right after import (one-time library set-up included)."
    )
    ours = rounds.get("traceaudit.read_pml")
    if ours:
        for reader, seconds in rounds.items():
            if reader != "traceaudit.read_pml":
                ratios = [theirs / mine for theirs, mine in zip(seconds, ours, strict=True)]
                print(
                    f"read_pml is {statistics.median(ratios):.1f}x faster than {reader} "
                    f"(median of {len(ratios)} interleaved rounds; "
                    f"min {min(ratios):.1f}x, max {max(ratios):.1f}x)"
                )


def _load() -> str:
    """The load average (1, 5, 15 minutes) of the machine, as /proc/loadavg gives it."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def _warm(reader: str, path: Path, warmup: Path | None) -> float:
    """One more warm measurement of ``reader`` in a fresh process: median seconds."""
    command = [sys.executable, __file__, "--child", reader, str(path)]
    command += [str(REPEATS[reader]), str(warmup or "")]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    seconds: float = json.loads(done.stdout)["seconds"]
    return seconds


if __name__ == "__main__":
    main()
