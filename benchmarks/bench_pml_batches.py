"""Benchmark: reading 1M, 10M and 100M-event Procmon PML logs in batches, in bounded memory.

Run ``python benchmarks/bench_pml_batches.py [--sizes 1M,10M,100M] [--source LOG.pml[.gz]]``.
The logs are tiled from a corpus capture (default ``procmon-pairs/Tests64bit.pml.gz``,
call stacks left out so that 100M events take 17 GB instead of 44; ``--keep-stacks`` keeps
them) by ``make_big_pml.py`` into ``benchmarks/data/`` (git-ignored) when missing;
``--remove`` deletes them afterwards. Each measurement runs in a fresh process:

* ``batches``: ``open_batches(path, columns=<the analysis columns>, keep=<CreateFile,
  CloseFile, CreateFileMapping, Load Image, Process Exit and lock-result rows>)``, every
  frame consumed and dropped (the reader alone), on every size;
* ``read``: the whole-file ``read_pml`` of the smallest log, its event frame kept.

Printed per run: events read and kept, file size, seconds (best of ``--repeats``),
nanoseconds per event over the whole run and over its first and last tenth of batches
(time per event must not grow along the file), peak resident set (VmHWM: the Python
interpreter and its libraries included) and its growth over the resident set right after
the imports (the reader's own memory, file pages it touches included).
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import make_big_pml  # noqa: E402  (benchmarks/ is on the path from here on)

ANALYSIS_COLUMNS = [
    "row",
    "time",
    "process",
    "pid",
    "tid",
    "operation",
    "path",
    "result",
    "event_class",
    "access_mask",
    "share_mode",
    "disposition",
    "create_options",
    "is_directory",
    "delete_on_close",
    "rename_target",
    "replace_if_exists",
    "delete_flag",
    "file_object",
    "duration",
]
KEPT_OPERATIONS = ["CreateFile", "CloseFile", "CreateFileMapping", "Load Image", "Process Exit"]


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


def child(mode: str, path: Path) -> dict:
    """Measure one run in this (fresh) process."""
    import polars as pl

    from traceaudit.analysis.rules import LOCK_RESULTS
    from traceaudit.formats.load import open_batches
    from traceaudit.formats.pml.reader import read_pml

    keep = pl.col("operation").is_in(KEPT_OPERATIONS) | pl.col("result").is_in(sorted(LOCK_RESULTS))
    _reset_peak()
    before = _status("VmRSS")
    started, cpu = time.perf_counter(), time.process_time()
    if mode == "read":
        events = read_pml(path).events
        result = {"kept": events.height, "batches": []}
    else:
        reading = open_batches(path, columns=ANALYSIS_COLUMNS, keep=keep)
        kept, steps, last = 0, [], (time.perf_counter(), time.process_time())
        for frame in reading.frames:
            kept += frame.height
            now = (time.perf_counter(), time.process_time())
            steps.append((now[0] - last[0], now[1] - last[1]))
            last = now
        result = {"kept": kept, "batches": steps}
        if reading.warnings:
            result["warnings"] = reading.warnings
    result["seconds"] = time.perf_counter() - started
    result["cpu_seconds"] = time.process_time() - cpu
    result["peak_bytes"] = _status("VmHWM")
    result["growth_bytes"] = max(_status("VmHWM") - before, 0)
    result["base_bytes"] = before
    return result


def measure(mode: str, path: Path, repeats: int) -> dict:
    """Best of ``repeats`` fresh-process runs (wall and CPU seconds each at their best;
    the batch times of the fastest run); the largest peak of them."""
    runs = []
    for _ in range(repeats):
        command = [sys.executable, __file__, "--child", mode, str(path)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.exit(f"error: {mode} {path.name}: {done.stderr.strip()}")
        runs.append(json.loads(done.stdout))
    best = dict(min(runs, key=lambda r: r["seconds"]))
    best["cpu_seconds"] = min(r["cpu_seconds"] for r in runs)
    best["peak_bytes"] = max(r["peak_bytes"] for r in runs)
    best["growth_bytes"] = max(r["growth_bytes"] for r in runs)
    return best


def events_in(path: Path) -> int:
    """The event count in a PML header."""
    with path.open("rb") as handle:
        return int(struct.unpack("<I", handle.read(0x238)[0x234:])[0])


def _tenths(steps: list[list[float]], events: int, which: int) -> str:
    """ns per event over the first and the last tenth of the batches (all batches but the
    last hold the same number of events), wall (``which`` 0) or CPU (1) time."""
    if len(steps) < 11:
        return "-"
    tenth = len(steps) // 10
    per_event = 1e9 / (tenth * events / len(steps))
    first = sum(step[which] for step in steps[:tenth]) * per_event
    last = sum(step[which] for step in steps[-tenth - 1 : -1]) * per_event
    return f"{first:.0f}/{last:.0f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1M,10M,100M", help="events per log: 1M,10M,100M")
    parser.add_argument("--source", type=Path, default=make_big_pml.DEFAULT_SOURCE)
    parser.add_argument("--keep-stacks", action="store_true", help="tile events with stacks")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--remove", action="store_true", help="delete the tiled logs after")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "PATH"))
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child[0], Path(args.child[1]))))
        return
    if not args.source.is_file():
        sys.exit(f"error: {args.source} not found; give a PML log with --source.")
    strip = not args.keep_stacks
    sizes = sorted(make_big_pml.parse_count(s) for s in args.sizes.split(","))
    logs = []
    for events in sizes:
        path = make_big_pml.default_output(args.source, events, strip)
        if not path.is_file():
            started = time.perf_counter()
            make_big_pml.build(args.source, events, path, strip_stacks=strip)
            print(f"built {path.name} in {time.perf_counter() - started:.0f} s", flush=True)
        logs.append(path)
    print(
        f"source {args.source.name}{'' if args.keep_stacks else ', stacks left out'}; Python "
        f"{sys.version.split()[0]}, {os.cpu_count()} CPUs; best of {args.repeats}",
        flush=True,
    )
    runs = [("read", logs[0])] + [("batches", log) for log in logs]
    print(
        f"{'run':8} {'log':>27} {'GB':>6} {'events':>12} {'kept':>10} {'wall s':>7} "
        f"{'CPU s':>6} {'ns/event':>8} {'CPU ns/ev':>9} {'10%:wall':>9} {'10%:CPU':>9} "
        f"{'peak MB':>7} {'growth':>6}"
    )
    for mode, path in runs:
        result = measure(mode, path, args.repeats)
        events = events_in(path)
        steps = result["batches"]
        print(
            f"{mode:8} {path.name:>27} {path.stat().st_size / 1e9:>6.2f} {events:>12,} "
            f"{result['kept']:>10,} {result['seconds']:>7.2f} {result['cpu_seconds']:>6.2f} "
            f"{result['seconds'] / events * 1e9:>8.0f} "
            f"{result['cpu_seconds'] / events * 1e9:>9.0f} {_tenths(steps, events, 0):>9} "
            f"{_tenths(steps, events, 1):>9} {result['peak_bytes'] / 1e6:>7.0f} "
            f"{result['growth_bytes'] / 1e6:>6.0f}",
            flush=True,
        )
        if result.get("warnings"):
            print(f"  warnings: {result['warnings']}")
    print(
        "wall s: best of the repeats; CPU s: all threads, best of the repeats; ns/event: "
        "wall and CPU time per event; 10%: ns per event over the first/last tenth of the "
        "batches (wall, CPU); peak MB: the process's peak resident set, interpreter and "
        "libraries included (largest of the repeats); growth: peak minus the resident set "
        "right after the imports (MB)."
    )
    if args.remove:
        for path in logs:
            path.unlink()


if __name__ == "__main__":
    main()
